"""Writing the history of findings and rectifications (insp_event), shared by the service and
the timer handlers so that a person's change and the system's read alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.inspections.models import Finding, InspEvent

# Actions that appear in the history, with their labels (zh, en).
ACTIONS: dict[str, tuple[str, str]] = {
    "create": ("发现问题", "Fault found"),
    "assign": ("交办整改", "Rectification assigned"),
    "letter": ("发函提醒", "Reminder letter issued"),
    "report_done": ("报告已整改", "Reported rectified"),
    "verify": ("复查合格", "Verified at re-inspection"),
    "verify_failed": ("复查不合格", "Failed re-inspection"),
    "void": ("撤销", "Withdrawn"),
    "remind": ("整改期限提醒", "Deadline reminder"),
    "overdue": ("整改超期", "Deadline missed"),
    "escalate": ("超期升级督办", "Escalated"),
}

# The role a change is recorded under when the actor holds several.
_ROLE_ORDER = (
    "admin",
    "bureau_leader",
    "duty_officer",
    "chain_leader",
    "liaison",
    "dept_handler",
    "grid_member",
)


def primary_role(actor: Principal) -> str | None:
    return next((r for r in _ROLE_ORDER if r in actor.roles), None)


def actor_fields(actor: Principal | None) -> dict[str, Any]:
    if actor is None:
        return {"actor_role": "system"}
    return {
        "actor_user_id": actor.user_id,
        "actor_person_id": actor.person_id,
        "actor_role": primary_role(actor),
        "actor_name": actor.display_name[:64],
    }


def record(
    db: Session,
    *,
    finding: Finding,
    action: str,
    from_state: str | None,
    to_state: str,
    actor: Principal | None,
    now: datetime,
    note: str = "",
    data: dict[str, Any] | None = None,
    rectification_id: int | None = None,
    inspection_id: int | None = None,
    letter_id: int | None = None,
) -> InspEvent:
    """Append one history row; the caller has already changed the finding."""
    if action not in ACTIONS:
        raise ValueError(f"unknown history action {action!r}")
    ev = InspEvent(
        campaign_id=finding.campaign_id,
        target_id=finding.target_id,
        finding_id=finding.id,
        rectification_id=rectification_id,
        inspection_id=inspection_id,
        letter_id=letter_id,
        at=now,
        action=action,
        from_state=from_state,
        to_state=to_state,
        note=note.strip(),
        data=data or {},
        **actor_fields(actor),
    )
    db.add(ev)
    db.flush()
    return ev


def label(action: str, lang: str = "zh_CN") -> str:
    zh, en = ACTIONS.get(action, (action, action))
    return en if lang == "en" else zh
