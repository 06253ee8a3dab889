"""Rectification deadlines on the shared timers. For every round that is running, three due
items with subject ("insp_rectification", round id):

  inspections.remind    key "remind:80"  at 80 % of the counted working time
                        -> the responsible party (SMS) and the grid's inspectors
  inspections.overdue   key "overdue"    at the due time -> the office and the inspectors
  inspections.escalate  key "escalate"   the campaign's escalation_workdays later
                        -> bureau leaders and the zone's chain leader (督办)

Handlers look at the round when they run and do nothing once it no longer stands (reported
rectified, verified, withdrawn, or its due time has moved), so a late cancel never produces a
wrong notice. Importing this module registers them; inspections.api imports it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from watergrid.inspections import flows, history
from watergrid.inspections.models import Campaign, Finding, Rectification, Target
from watergrid.timers import service as timers
from watergrid.timers.calendar import WorkCalendar
from watergrid.timers.deadlines import fraction_point
from watergrid.timers.models import DueItem

KIND_REMIND = "inspections.remind"
KIND_OVERDUE = "inspections.overdue"
KIND_ESCALATE = "inspections.escalate"
SUBJECT_TYPE = flows.SUBJECT_TYPE
REMIND_FRACTION = 0.8


# Loading the calendar is a few hundred rows; a request must not pay that for every round it
# opens. An administrator's change is picked up within the TTL, or at once through
# reset_calendar_cache().
CALENDAR_TTL_S = 300.0
_cal_lock = threading.Lock()
_cal_cache: dict[str, tuple[float, WorkCalendar]] = {}


def calendar(db: Session) -> WorkCalendar:
    """The working calendar (timers.calendar), cached per database for CALENDAR_TTL_S."""
    # A session may be bound to an engine or to a connection (tests); both know the engine.
    key = str(db.get_bind().engine.url)
    hit = _cal_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CALENDAR_TTL_S:
        return hit[1]
    with _cal_lock:
        cal = WorkCalendar.load(db)
        _cal_cache[key] = (time.monotonic(), cal)
        return cal


def reset_calendar_cache() -> None:
    with _cal_lock:
        _cal_cache.clear()


def escalation_time(db: Session, *, campaign: Campaign, due_at: datetime) -> datetime:
    return calendar(db).add_working_days(due_at, float(campaign.escalation_workdays))


def schedule_round(db: Session, *, rect: Rectification, campaign: Campaign, now: datetime) -> None:
    """Arm the reminder, the overdue notice and the escalation of a round from its stored due
    time. A reminder point already past is not armed (no "80 %" notice after the fact)."""
    cancel_round(db, rect_id=rect.id, now=now)
    payload = {"due_at": rect.due_at.isoformat()}
    at = fraction_point(
        rect.started_at, rect.due_at, REMIND_FRACTION, unit="workdays", calendar=calendar(db)
    )
    if at > now:
        timers.schedule(
            db,
            kind=KIND_REMIND,
            subject_type=SUBJECT_TYPE,
            subject_id=str(rect.id),
            key=f"remind:{round(REMIND_FRACTION * 100)}",
            due_at=at,
            payload=payload,
            now=now,
        )
    timers.schedule(
        db,
        kind=KIND_OVERDUE,
        subject_type=SUBJECT_TYPE,
        subject_id=str(rect.id),
        key="overdue",
        due_at=rect.due_at,
        payload=payload,
        now=now,
    )
    timers.schedule(
        db,
        kind=KIND_ESCALATE,
        subject_type=SUBJECT_TYPE,
        subject_id=str(rect.id),
        key="escalate",
        due_at=escalation_time(db, campaign=campaign, due_at=rect.due_at),
        payload=payload,
        now=now,
    )


def cancel_round(db: Session, *, rect_id: int, now: datetime) -> int:
    return timers.cancel(db, subject_type=SUBJECT_TYPE, subject_id=str(rect_id), now=now)


def pending_items(db: Session, *, rect_id: int) -> list[DueItem]:
    return [
        i
        for i in timers.list_for_subject(db, subject_type=SUBJECT_TYPE, subject_id=str(rect_id))
        if i.state in timers.OPEN_STATES
    ]


# -- handlers -----------------------------------------------------------------------------


def _pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _load(db: Session, item: DueItem) -> tuple[Rectification, Finding, Target, Campaign]:
    rect = db.get(Rectification, int(item.subject_id), with_for_update=_pg(db))
    if rect is None:
        raise timers.PermanentFailure(f"rectification {item.subject_id} does not exist")
    finding = db.get(Finding, rect.finding_id, with_for_update=_pg(db))
    target = db.get(Target, finding.target_id) if finding else None
    campaign = db.get(Campaign, finding.campaign_id) if finding else None
    if finding is None or target is None or campaign is None:
        raise timers.PermanentFailure(f"rectification {rect.id} has lost its finding")
    return rect, finding, target, campaign


def still_running(rect: Rectification, finding: Finding, due_iso: str | None) -> bool:
    return (
        finding.state == "rectifying"
        and finding.rectification_id == rect.id
        and rect.closed_at is None
        and rect.rectified_at is None
        and due_iso == rect.due_at.isoformat()
    )


def _cause(item: DueItem) -> str:
    # Stable for this item and due time: a retried run finds the outbox rows it wrote.
    return f"t:{item.key}:{item.requested_due_at.isoformat()}"


def _step(
    db: Session,
    item: DueItem,
    now: datetime,
    *,
    action: str,
    tell: Callable[..., None],
    mark: str | None = None,
) -> None:
    """One step of a rectification's deadline chain: unless the rectification is over (or
    its deadline moved), stamp `mark` once, write the history row and tell people."""
    rect, finding, target, campaign = _load(db, item)
    if not still_running(rect, finding, item.payload.get("due_at")):
        return
    if mark is not None and getattr(rect, mark) is None:
        setattr(rect, mark, now)
    history.record(
        db,
        finding=finding,
        action=action,
        from_state=finding.state,
        to_state=finding.state,
        actor=None,
        now=now,
        data={"due_at": rect.due_at.isoformat()},
        rectification_id=rect.id,
    )
    tell(
        db,
        campaign=campaign,
        target=target,
        rect=rect,
        item_text=finding.item_text,
        cause=_cause(item),
        now=now,
    )


@timers.register(KIND_REMIND)
def handle_remind(db: Session, item: DueItem, now: datetime) -> None:
    _step(db, item, now, action="remind", tell=flows.reminder)


@timers.register(KIND_OVERDUE)
def handle_overdue(db: Session, item: DueItem, now: datetime) -> None:
    _step(db, item, now, action="overdue", tell=flows.overdue, mark="overdue_at")


@timers.register(KIND_ESCALATE)
def handle_escalate(db: Session, item: DueItem, now: datetime) -> None:
    _step(db, item, now, action="escalate", tell=flows.escalated, mark="escalated_at")


def kinds() -> tuple[str, ...]:
    return (KIND_REMIND, KIND_OVERDUE, KIND_ESCALATE)
