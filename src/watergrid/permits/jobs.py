"""Statutory limits on the shared timers. While an application's clock runs, four due items
with subject ("permit_application", id):

  permits.remind    keys "remind:50", "remind:80"  -> the handling department
  permits.overdue   key "overdue" at the due time  -> the handling department
  permits.escalate  key "escalate" one working day later -> bureau leaders (督办)

A correction request cancels them (the clock stops, there is no due time); the corrections
arriving re-arm them from the recomputed due time. Handlers check the application when they
run and do nothing once the item no longer applies. Importing this module registers them;
permits.api imports it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.inspections.jobs import calendar
from watergrid.permits import flows
from watergrid.permits.models import FINAL_STATES, Application, PermitEvent, Suspension
from watergrid.timers import service as timers
from watergrid.timers.deadlines import DueResult, Paused, compute_due_suspended, fraction_point
from watergrid.timers.models import DueItem
from watergrid.timers.spans import Interval

KIND_REMIND = "permits.remind"
KIND_OVERDUE = "permits.overdue"
KIND_ESCALATE = "permits.escalate"
SUBJECT_TYPE = flows.SUBJECT_TYPE
REMIND_FRACTIONS = (0.5, 0.8)
ESCALATION_WORKDAYS = 1.0


def suspensions(db: Session, *, application_id: int) -> list[Interval]:
    return [
        (s.suspended_at, s.resumed_at)
        for s in db.scalars(
            select(Suspension)
            .where(Suspension.application_id == application_id)
            .order_by(Suspension.suspended_at)
        )
    ]


def due_of(db: Session, *, app: Application) -> DueResult | Paused:
    """The due time of the application's limit, counted in working days from submission with
    every correction period cut out; Paused while a correction request is open."""
    return compute_due_suspended(
        app.submitted_at,
        amount=app.limit_workdays,
        unit="workdays",
        calendar=calendar(db),
        suspensions=suspensions(db, application_id=app.id),
    )


def schedule(db: Session, *, app: Application, now: datetime) -> None:
    """Re-arm the timers from the stored due time (nothing while it is None)."""
    cancel(db, application_id=app.id, now=now)
    if app.due_at is None or app.state in FINAL_STATES:
        return
    payload = {"due_at": app.due_at.isoformat()}
    holes = suspensions(db, application_id=app.id)
    for fraction in REMIND_FRACTIONS:
        at = fraction_point(
            app.submitted_at,
            app.due_at,
            fraction,
            unit="workdays",
            calendar=calendar(db),
            suspensions=holes,
        )
        if at <= now:
            continue
        timers.schedule(
            db,
            kind=KIND_REMIND,
            subject_type=SUBJECT_TYPE,
            subject_id=str(app.id),
            key=f"remind:{round(fraction * 100)}",
            due_at=at,
            payload={**payload, "pct": round(fraction * 100)},
            now=now,
        )
    timers.schedule(
        db,
        kind=KIND_OVERDUE,
        subject_type=SUBJECT_TYPE,
        subject_id=str(app.id),
        key="overdue",
        due_at=app.due_at,
        payload=payload,
        now=now,
    )
    timers.schedule(
        db,
        kind=KIND_ESCALATE,
        subject_type=SUBJECT_TYPE,
        subject_id=str(app.id),
        key="escalate",
        due_at=calendar(db).add_working_days(app.due_at, ESCALATION_WORKDAYS),
        payload=payload,
        now=now,
    )


def cancel(db: Session, *, application_id: int, now: datetime) -> int:
    return timers.cancel(db, subject_type=SUBJECT_TYPE, subject_id=str(application_id), now=now)


def pending_items(db: Session, *, application_id: int) -> list[DueItem]:
    return [
        i
        for i in timers.list_for_subject(
            db, subject_type=SUBJECT_TYPE, subject_id=str(application_id)
        )
        if i.state in timers.OPEN_STATES
    ]


# -- handlers -----------------------------------------------------------------------------


def _load(db: Session, item: DueItem) -> Application:
    app = db.get(
        Application,
        int(item.subject_id),
        with_for_update=db.get_bind().dialect.name == "postgresql",
    )
    if app is None:
        raise timers.PermanentFailure(f"application {item.subject_id} does not exist")
    return app


def still_running(app: Application, due_iso: str | None) -> bool:
    return (
        app.state not in FINAL_STATES
        and app.state != "correction"
        and app.due_at is not None
        and due_iso == app.due_at.isoformat()
    )


def _cause(item: DueItem) -> str:
    return f"t:{item.key}:{item.requested_due_at.isoformat()}"


def _system_event(db: Session, *, app: Application, action: str, now: datetime) -> None:
    db.add(
        PermitEvent(
            application_id=app.id,
            at=now,
            action=action,
            from_state=app.state,
            to_state=app.state,
            actor_role="system",
            note="",
            data={"due_at": app.due_at.isoformat() if app.due_at else None},
        )
    )
    db.flush()


@timers.register(KIND_REMIND)
def handle_remind(db: Session, item: DueItem, now: datetime) -> None:
    app = _load(db, item)
    if not still_running(app, item.payload.get("due_at")):
        return
    _system_event(db, app=app, action="remind", now=now)
    flows.reminder(db, app=app, pct=int(item.payload.get("pct", 0)), cause=_cause(item), now=now)


@timers.register(KIND_OVERDUE)
def handle_overdue(db: Session, item: DueItem, now: datetime) -> None:
    app = _load(db, item)
    if not still_running(app, item.payload.get("due_at")):
        return
    app.overdue_at = app.overdue_at or now
    _system_event(db, app=app, action="overdue", now=now)
    flows.overdue(db, app=app, cause=_cause(item), now=now)


@timers.register(KIND_ESCALATE)
def handle_escalate(db: Session, item: DueItem, now: datetime) -> None:
    app = _load(db, item)
    if not still_running(app, item.payload.get("due_at")):
        return
    app.escalated_at = app.escalated_at or now
    _system_event(db, app=app, action="escalate", now=now)
    flows.escalated(db, app=app, cause=_cause(item), now=now)


def kinds() -> tuple[str, ...]:
    return (KIND_REMIND, KIND_OVERDUE, KIND_ESCALATE)
