"""What one work order contributes to the KPIs: its fact row, and the rollup counters that
fact adds to. Pure functions of the order, its history and nothing else — in particular not
of the clock: an open deadline is stored as `open` on its due day, and the query layer
decides at read time whether it is overdue yet (kpi.service). That is what lets the rollups
be maintained by differences (new contribution minus old) and rebuilt to the same numbers.

The rules are docs/kpi.md's; each branch below names the rule it implements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from watergrid.kpi.definitions import (
    COUNTED,
    MET,
    MISSED,
    NONE,
    OPEN,
    PAUSED,
    SATISFIED_MIN_SCORE,
    SELF_DISCOVERED_SOURCES,
    bucket_of,
)
from watergrid.settings import get_settings

# The order_event actions a fact depends on (everything else is left unread).
FACT_ACTIONS: tuple[str, ...] = (
    "create",
    "respond",
    "check_in",
    "reject",
    "merge",
    "reopen",
    "resolve",
    "approve_extension",
    "suspend",
    "resume",
)
DONE_STATES = frozenset({"resolved", "verified", "closed"})

Key = tuple[str, str, date]  # (dim, key, day)
Deltas = dict[Key, dict[str, int]]


@lru_cache(maxsize=4)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(instant: datetime) -> date:
    """The bureau's calendar day of an instant (Asia/Shanghai by default)."""
    return instant.astimezone(_zone(get_settings().timezone)).date()


@dataclass(frozen=True)
class Ev:
    """The part of an order_event row a fact needs."""

    action: str
    at: datetime
    actor_role: str | None = None
    actor_person_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OrderRow:
    """The part of a work_order row a fact needs."""

    id: int
    state: str
    source: str
    group_code: str
    category_code: str
    created_at: datetime
    subdistrict_id: int | None
    grid_id: int | None
    zone_id: int | None
    department_id: int | None
    response_due_at: datetime | None
    responded_at: datetime | None
    handling_started_at: datetime | None
    handling_due_at: datetime | None
    resolved_at: datetime | None
    rating: int | None
    rated_at: datetime | None


ORDER_COLUMNS: tuple[str, ...] = tuple(OrderRow.__dataclass_fields__)


def _suspended_seconds(
    spans: Sequence[tuple[datetime, datetime | None]], a: datetime, b: datetime
) -> int:
    """Seconds of [a, b] spent suspended (an unresumed suspension runs to b)."""
    total = 0.0
    for s, e in spans:
        lo, hi = max(a, s), min(b, e or b)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return int(total)


def _elapsed(spans: Sequence[tuple[datetime, datetime | None]], a: datetime, b: datetime) -> int:
    """Counted seconds from a to b: wall-clock time less time suspended, whole seconds."""
    return max(0, int((b - a).total_seconds()) - _suspended_seconds(spans, a, b))


def build_fact(order: OrderRow, events: Iterable[Ev]) -> dict[str, Any]:
    """The kpi_order_fact row of an order (as a dict of its columns). `events` are the
    order's history in order (only FACT_ACTIONS are looked at)."""
    creator: int | None = None
    responder: int | None = None
    responder_seen = False
    reject_at: datetime | None = None
    rejecter: int | None = None
    merge_at: datetime | None = None
    reworks = extensions = 0
    resolves: list[Ev] = []
    spans: list[tuple[datetime, datetime | None]] = []
    for e in events:
        a = e.action
        if a == "create":
            # Staff who register an order are credited with it; reporters are nobody.
            if e.actor_role not in (None, "reporter", "system"):
                creator = e.actor_person_id
        elif a in ("respond", "check_in"):
            if not responder_seen:  # the first one is the one that answered the deadline
                responder, responder_seen = e.actor_person_id, True
        elif a == "reject":
            reject_at, rejecter = e.at, e.actor_person_id
        elif a == "merge":
            merge_at = e.at
        elif a == "reopen":
            reworks += 1
        elif a == "resolve":
            resolves.append(e)
        elif a == "approve_extension":
            extensions += 1
        elif a == "suspend":
            spans.append((e.at, None))
        elif a == "resume" and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], e.at)

    state = order.state
    suspended_at = spans[-1][0] if state == "suspended" and spans and spans[-1][1] is None else None
    left_at = reject_at if state == "rejected" else merge_at if state == "merged" else None

    # -- response deadline (rules R1–R5 of docs/kpi.md) -----------------------------------
    r_due = order.response_due_at
    r_done = order.responded_at
    if r_done is None and state == "rejected" and reject_at is not None:
        r_done = reject_at  # R2: a rejection is the bureau's answer to the reporter
        responder, responder_seen = rejecter, True
    r_secs: int | None = None
    if r_due is None:
        r_out = NONE
    elif r_done is not None:  # R1
        r_out = MET if r_done <= r_due else MISSED
        r_secs = _elapsed(spans, order.created_at, r_done)
    elif state == "merged":  # R3: missed before it left the flow stays missed
        r_out = MISSED if merge_at is not None and r_due < merge_at else NONE
    elif state == "suspended":  # R4: the clock stands still unless already past due
        r_out = MISSED if suspended_at is not None and r_due < suspended_at else PAUSED
    elif state in DONE_STATES or state == "rejected":
        r_out = NONE  # inconsistent history (done without a response): nothing to judge
    else:  # R5: still to answer
        r_out = OPEN

    # -- handling deadline (rules H1–H6) ------------------------------------------------
    h_due = order.handling_due_at
    # Every resolution but the current one belongs to an earlier round (a reopen followed).
    current_round_done = state in DONE_STATES and order.resolved_at is not None
    prior = resolves[:-1] if current_round_done else resolves
    prior_late = any(not bool(e.data.get("handling_on_time", True)) for e in prior)
    h_secs: int | None = None
    resolved = False
    resolver = resolves[-1].actor_person_id if resolves else None
    if order.handling_started_at is None or h_due is None:  # H1: never dispatched
        h_out = NONE
    elif current_round_done:  # H2 (+H5: a late earlier round keeps it late)
        assert order.resolved_at is not None
        resolved = True
        h_out = MET if order.resolved_at <= h_due and not prior_late else MISSED
        h_secs = _elapsed(spans, order.handling_started_at, order.resolved_at)
    elif left_at is not None:  # H3: left the flow (rejected after a return, or merged)
        h_out = MISSED if (h_due < left_at or prior_late) else NONE
    elif state == "suspended":  # H4
        late = suspended_at is not None and h_due < suspended_at
        h_out = MISSED if (late or prior_late) else PAUSED
    else:  # H6: still to finish (decided already when an earlier round was late)
        h_out = MISSED if prior_late else OPEN

    valid = state not in ("rejected", "merged")
    return {
        "order_id": order.id,
        "state": state,
        "created_day": local_day(order.created_at),
        "subdistrict_id": order.subdistrict_id,
        "grid_id": order.grid_id,
        "zone_id": order.zone_id,
        "department_id": order.department_id,
        "group_code": order.group_code,
        "category_code": order.category_code,
        "source": order.source,
        "creator_person_id": creator,
        "responder_person_id": responder if r_out in (MET, MISSED) and r_secs is not None else None,
        "resolver_person_id": resolver if resolved else None,
        "valid": valid,
        "self_discovered": order.source in SELF_DISCOVERED_SOURCES,
        "resp_outcome": r_out,
        "resp_due_at": r_due if r_out in COUNTED else None,
        "resp_due_day": local_day(r_due) if r_due is not None and r_out in COUNTED else None,
        "resp_seconds": r_secs,
        "resp_bucket": bucket_of(r_secs) if r_secs is not None else None,
        "hand_outcome": h_out,
        "hand_due_at": h_due if h_out in COUNTED else None,
        "hand_due_day": local_day(h_due) if h_due is not None and h_out in COUNTED else None,
        "hand_seconds": h_secs,
        "hand_bucket": bucket_of(h_secs) if h_secs is not None else None,
        "resolved": resolved,
        "reworks": reworks,
        "extensions": extensions,
        "rating": order.rating,
        "rated_day": local_day(order.rated_at)
        if order.rating is not None and order.rated_at
        else None,
    }


# -- contributions -------------------------------------------------------------------------


def _keys(f: dict[str, Any], person: int | None) -> list[tuple[str, str]]:
    out = [("all", "")]
    for dim, col in (
        ("subdistrict", "subdistrict_id"),
        ("grid", "grid_id"),
        ("zone", "zone_id"),
        ("department", "department_id"),
    ):
        if f[col] is not None:
            out.append((dim, str(f[col])))
    out.append(("category", f["group_code"]))
    out.append(("subcategory", f["category_code"]))
    out.append(("source", f["source"]))
    if person is not None:
        out.append(("person", str(person)))
    return out


def contributions(f: dict[str, Any] | None) -> Deltas:
    """The rollup counters a fact adds, per (dim, key, day). None adds nothing."""
    out: Deltas = defaultdict(dict)
    if f is None:
        return out

    def add(day: date, person: int | None, counters: dict[str, int]) -> None:
        for dim, key in _keys(f, person):
            slot = out[(dim, key, day)]
            for c, v in counters.items():
                if v:
                    slot[c] = slot.get(c, 0) + v

    valid = bool(f["valid"])
    add(
        f["created_day"],
        f["creator_person_id"],
        {
            "created": 1,
            "valid": int(valid),
            "patrol": int(valid and bool(f["self_discovered"])),
            "rejected": int(f["state"] == "rejected"),
            "merged": int(f["state"] == "merged"),
        },
    )
    if f["resp_outcome"] in COUNTED and f["resp_due_day"] is not None:
        c = {
            "r_met": int(f["resp_outcome"] == MET),
            "r_missed": int(f["resp_outcome"] == MISSED),
            "r_open": int(f["resp_outcome"] == OPEN),
        }
        if f["resp_seconds"] is not None:
            c.update(r_secs=int(f["resp_seconds"]), r_timed=1)
            c[f"r_b{int(f['resp_bucket']):02d}"] = 1
        add(f["resp_due_day"], f["responder_person_id"], c)
    if f["hand_outcome"] in COUNTED and f["hand_due_day"] is not None:
        c = {
            "h_met": int(f["hand_outcome"] == MET),
            "h_missed": int(f["hand_outcome"] == MISSED),
            "h_open": int(f["hand_outcome"] == OPEN),
            "h_resolved": int(bool(f["resolved"])),
            "reworks": int(f["reworks"]),
            "extensions": int(f["extensions"]),
        }
        if f["hand_seconds"] is not None:
            c.update(h_secs=int(f["hand_seconds"]), h_timed=1)
            c[f"h_b{int(f['hand_bucket']):02d}"] = 1
        add(f["hand_due_day"], f["resolver_person_id"], c)
    if f["rating"] is not None and f["rated_day"] is not None:
        add(
            f["rated_day"],
            f["resolver_person_id"],
            {
                "rated": 1,
                "rating_sum": int(f["rating"]),
                "rating_good": int(int(f["rating"]) >= SATISFIED_MIN_SCORE),
            },
        )
    return out


def diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> Deltas:
    """new contribution minus old, without the zero entries."""
    out: Deltas = {}
    a, b = contributions(old), contributions(new)
    for k in set(a) | set(b):
        x, y = a.get(k, {}), b.get(k, {})
        d = {c: y.get(c, 0) - x.get(c, 0) for c in set(x) | set(y)}
        d = {c: v for c, v in d.items() if v}
        if d:
            out[k] = d
    return out


def merge_into(total: Deltas, more: Deltas) -> None:
    for k, d in more.items():
        slot = total.setdefault(k, {})
        for c, v in d.items():
            slot[c] = slot.get(c, 0) + v
