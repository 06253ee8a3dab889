"""The work-order state machine: the one place that says which action leads from which state
to which, who may take it and over which orders. service.transition() applies it; the pages
ask allowed_actions(); docs/state-machine.md is drawn from it (a test keeps them in step).

A grant is (role, scope). Scopes:
  any      – everywhere (bureau leader, administrator, duty officer)
  desk     – a member of the bureau dispatch desk (department DISPATCH): every order
  lead     – a member of the order's lead department
  handler  – a member of the lead or of a co-handling department
  grid     – a grid member whose grids include the order's grid
  zone     – a chain leader or liaison of the order's zone
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from watergrid.auth.principal import Principal

STATES: tuple[str, ...] = (
    "submitted",
    "accepted",
    "rejected",
    "dispatched",
    "returned",
    "responded",
    "in_progress",
    "suspended",
    "resolved",
    "verified",
    "closed",
    "merged",
)
STATE_LABELS: dict[str, tuple[str, str]] = {
    "submitted": ("已受理待审核", "Submitted"),
    "accepted": ("已受理", "Accepted"),
    "rejected": ("不予受理", "Rejected"),
    "dispatched": ("已派单", "Dispatched"),
    "returned": ("已退回待改派", "Returned for re-dispatch"),
    "responded": ("已响应", "Responded"),
    "in_progress": ("处置中", "In progress"),
    "suspended": ("已挂起", "Suspended"),
    "resolved": ("已办结待核实", "Resolved"),
    "verified": ("已核实", "Verified"),
    "closed": ("已关闭", "Closed"),
    "merged": ("已合并", "Merged"),
}
# No more work will be done: the clocks are off, lists of open work leave them out.
FINAL_STATES = frozenset({"rejected", "closed", "merged"})
# Work is finished (for the reporter and the handling clock), though it may still reopen.
DONE_STATES = frozenset({"resolved", "verified", "closed"})
OPEN_STATES = frozenset(STATES) - FINAL_STATES
# A duplicate found at intake must still be live for the reporter to care.
DUPLICATE_CANDIDATE_STATES = OPEN_STATES - {"resolved", "verified"}
WORKING_STATES = ("dispatched", "responded", "in_progress")

REJECT_REASONS: dict[str, tuple[str, str]] = {
    "not_water_affairs": ("非水务事项", "Not a water-affairs matter"),
    "invalid": ("信息无效", "Invalid report"),
    "duplicate": ("重复诉求", "Duplicate"),
}

Scope = Literal["any", "desk", "lead", "handler", "grid", "zone"]
Grant = tuple[str, Scope]

GLOBAL: tuple[Grant, ...] = (("admin", "any"), ("bureau_leader", "any"), ("duty_officer", "any"))
DESK: tuple[Grant, ...] = (("dept_handler", "desk"),)
LEAD: tuple[Grant, ...] = (("dept_handler", "lead"),)
HANDLERS: tuple[Grant, ...] = (("dept_handler", "handler"),)
GRID: tuple[Grant, ...] = (("grid_member", "grid"),)
ZONE: tuple[Grant, ...] = (("chain_leader", "zone"), ("liaison", "zone"))
CHAIN: tuple[Grant, ...] = (("chain_leader", "zone"),)
# Extensions are approved by a leader: the zone's chain leader or a bureau leader.
APPROVERS: tuple[Grant, ...] = (
    ("admin", "any"),
    ("bureau_leader", "any"),
    ("chain_leader", "zone"),
)

# Special targets: stay in the same state; go back to where a suspension started.
STAY = "="
RESTORE = "<suspended_from>"


@dataclass(frozen=True)
class Transition:
    action: str
    sources: tuple[str, ...]
    target: str
    grants: tuple[Grant, ...]
    label_zh: str
    label_en: str
    # ActionRequest fields the action must carry.
    requires: tuple[str, ...] = ()
    # The note is addressed to the reporter and shown on the public timeline.
    public_note: bool = False
    # Notes are mandatory where the why matters later (rejections, returns, suspensions).
    note_required: bool = False
    extra_doc: str = field(default="", compare=False)


TRANSITIONS: tuple[Transition, ...] = (
    Transition("accept", ("submitted",), "accepted", GLOBAL + DESK + LEAD, "受理", "Accept"),
    Transition(
        "reject",
        ("submitted", "accepted", "returned"),
        "rejected",
        GLOBAL + DESK + LEAD,
        "不予受理",
        "Reject",
        requires=("reason",),
        public_note=True,
    ),
    Transition(
        "dispatch",
        ("accepted", "returned"),
        "dispatched",
        GLOBAL + DESK + LEAD + CHAIN,
        "派单",
        "Dispatch",
        extra_doc="department_code (default: the routed department), co_department_codes, "
        "priority; computes the handling deadline on the first dispatch",
    ),
    Transition(
        "reassign",
        ("dispatched", "responded", "in_progress"),
        "dispatched",
        GLOBAL + DESK + CHAIN,
        "改派",
        "Reassign",
        requires=("department_code",),
        note_required=True,
    ),
    Transition(
        "return",
        ("dispatched", "responded", "in_progress"),
        "returned",
        GLOBAL + LEAD,
        "退回",
        "Return (wrong department)",
        note_required=True,
        extra_doc="the order goes back to the dispatch desk",
    ),
    Transition(
        "respond",
        ("dispatched",),
        "responded",
        GLOBAL + HANDLERS + GRID + ZONE,
        "响应",
        "Respond",
        requires=("mode",),
        extra_doc="mode on_site (到场) or contacted (已联系诉求人)",
    ),
    Transition(
        "check_in",
        ("dispatched",),
        "responded",
        GLOBAL + HANDLERS + GRID + ZONE,
        "党员报到",
        "Report in on site",
        extra_doc="a party member reporting in on site also answers the response deadline",
    ),
    Transition(
        "check_in",
        ("responded", "in_progress"),
        STAY,
        GLOBAL + HANDLERS + GRID + ZONE,
        "党员报到",
        "Report in on site",
    ),
    Transition("start", ("responded",), "in_progress", GLOBAL + HANDLERS, "开始处置", "Start work"),
    Transition(
        "resolve",
        ("responded", "in_progress"),
        "resolved",
        GLOBAL + HANDLERS,
        "办结",
        "Resolve",
        public_note=True,
        note_required=True,
    ),
    Transition("verify", ("resolved",), "verified", GLOBAL + DESK + GRID + ZONE, "核实", "Verify"),
    Transition("close", ("verified",), "closed", GLOBAL + DESK + CHAIN, "关闭", "Close"),
    Transition(
        "reopen",
        ("resolved", "verified", "closed"),
        "dispatched",
        GLOBAL + DESK + CHAIN,
        "重新打开",
        "Reopen",
        note_required=True,
        public_note=True,
        extra_doc="back to the lead department with a fresh handling deadline",
    ),
    Transition(
        "suspend",
        ("dispatched", "responded", "in_progress"),
        "suspended",
        GLOBAL + DESK + LEAD,
        "挂起",
        "Suspend",
        note_required=True,
        public_note=True,
        extra_doc="the clocks stop",
    ),
    Transition(
        "resume",
        ("suspended",),
        RESTORE,
        GLOBAL + DESK + LEAD,
        "恢复",
        "Resume",
        extra_doc="back to the state before the suspension; deadlines recomputed",
    ),
    Transition(
        "request_extension",
        ("dispatched", "responded", "in_progress"),
        STAY,
        GLOBAL + LEAD,
        "申请延期",
        "Request extension",
        requires=("amount",),
        note_required=True,
    ),
    Transition(
        "approve_extension",
        ("dispatched", "responded", "in_progress", "suspended"),
        STAY,
        APPROVERS,
        "批准延期",
        "Approve extension",
        extra_doc="the handling deadline moves by the requested amount",
    ),
    Transition(
        "refuse_extension",
        ("dispatched", "responded", "in_progress", "suspended"),
        STAY,
        APPROVERS,
        "驳回延期",
        "Refuse extension",
    ),
    Transition(
        "merge",
        (
            "submitted",
            "accepted",
            "returned",
            "dispatched",
            "responded",
            "in_progress",
            "suspended",
        ),
        "merged",
        GLOBAL + DESK + LEAD + CHAIN,
        "合并",
        "Merge into another order",
        requires=("into_number",),
        public_note=True,
    ),
    Transition(
        "supervise",
        tuple(s for s in STATES if s not in FINAL_STATES),
        STAY,
        (("admin", "any"), ("bureau_leader", "any"), ("chain_leader", "zone")),
        "督办",
        "Supervise",
        note_required=True,
    ),
    Transition(
        "comment",
        STATES,
        STAY,
        GLOBAL + DESK + HANDLERS + GRID + ZONE,
        "备注",
        "Comment",
        note_required=True,
    ),
)

# Actions that are not transitions but still write history (service writes them).
SYSTEM_ACTIONS: dict[str, tuple[str, str]] = {
    "create": ("提交诉求", "Submitted"),
    "rate": ("诉求人评价", "Rated by the reporter"),
    "merged_in": ("合并了重复诉求", "A duplicate was merged in"),
    "overdue": ("超时", "Deadline missed"),
    "escalate": ("升级督办", "Escalated for supervision"),
}

ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(t.action for t in TRANSITIONS))
_BY_KEY: dict[tuple[str, str], Transition] = {}
for _t in TRANSITIONS:
    for _s in _t.sources:
        assert (_s, _t.action) not in _BY_KEY, f"two transitions for {_s} --{_t.action}->"
        _BY_KEY[(_s, _t.action)] = _t


def find(state: str, action: str) -> Transition | None:
    return _BY_KEY.get((state, action))


def label(action: str) -> tuple[str, str]:
    if action in SYSTEM_ACTIONS:
        return SYSTEM_ACTIONS[action]
    t = next((t for t in TRANSITIONS if t.action == action), None)
    return (t.label_zh, t.label_en) if t else (action, action)


def target_state(t: Transition, *, state: str, suspended_from: str | None) -> str:
    if t.target == STAY:
        return state
    if t.target == RESTORE:
        return suspended_from or "dispatched"
    return t.target


@dataclass(frozen=True)
class OrderScope:
    """What the scope rules need to know about an order."""

    department_id: int | None
    co_department_ids: frozenset[int]
    grid_id: int | None
    zone_id: int | None
    desk_department_id: int | None
    follower_person_ids: frozenset[int] = frozenset()


def _in_scope(p: Principal, scope: Scope, o: OrderScope) -> bool:
    if scope == "any":
        return True
    if scope == "desk":
        return o.desk_department_id is not None and o.desk_department_id in p.department_ids
    if scope == "lead":
        return o.department_id is not None and o.department_id in p.department_ids
    if scope == "handler":
        depts = set(o.co_department_ids)
        if o.department_id is not None:
            depts.add(o.department_id)
        return bool(depts & p.department_ids)
    if scope == "grid":
        return o.grid_id is not None and (o.grid_id in p.grid_ids or o.grid_id in p.reach_grid_ids)
    if scope == "zone":
        return o.zone_id is not None and o.zone_id in p.zone_ids
    return False


def grant_for(p: Principal, t: Transition, o: OrderScope) -> str | None:
    """The role under which `p` may take `t` on the order, or None."""
    for role, scope in t.grants:
        if role in p.roles and _in_scope(p, scope, o):
            return role
    return None


def allowed_actions(p: Principal, *, state: str, scope: OrderScope) -> list[str]:
    out = []
    for action in ACTIONS:
        t = find(state, action)
        if t is not None and grant_for(p, t, scope) is not None:
            out.append(action)
    return out


def can_read(p: Principal, o: OrderScope) -> bool:
    """Staff read an order when some role of theirs reaches it, or when they follow it."""
    if p.district or p.roles & {"admin", "bureau_leader", "duty_officer"}:
        return True
    if "dept_handler" in p.roles and (_in_scope(p, "desk", o) or _in_scope(p, "handler", o)):
        return True
    if "grid_member" in p.roles and _in_scope(p, "grid", o):
        return True
    if p.roles & {"chain_leader", "liaison"} and _in_scope(p, "zone", o):
        return True
    return p.person_id is not None and p.person_id in o.follower_person_ids


def primary_role(p: Principal) -> str | None:
    """The role shown when a change was not made under a specific grant (comments by many)."""
    for role in (
        "admin",
        "bureau_leader",
        "duty_officer",
        "chain_leader",
        "liaison",
        "dept_handler",
        "grid_member",
    ):
        if role in p.roles:
            return role
    return None
