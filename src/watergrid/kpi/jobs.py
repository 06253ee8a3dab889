"""Scheduled KPI work, on the shared timers module: the catch-up that carries order changes
into the rollups (rollups.catch_up), every CATCH_UP_EVERY. It is one due item that re-arms
itself each time it runs, so any number of workers share it without running it twice.
Importing this module registers the handler (kpi.api imports it, as the web app and
`watergrid worker` load the API modules)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from watergrid.kpi import rollups
from watergrid.timers import service as timers
from watergrid.timers.models import DueItem

KIND_CATCH_UP = "kpi.catch_up"
SUBJECT = ("kpi", "rollups")
# How far the dashboards may trail the orders when no work-order hook refreshes them.
CATCH_UP_EVERY = timedelta(seconds=30)


def ensure_scheduled(db: Session, *, now: datetime) -> None:
    """Arm the catch-up item unless it is armed already (idempotent)."""
    item = timers.get(db, kind=KIND_CATCH_UP, subject_type=SUBJECT[0], subject_id=SUBJECT[1])
    if item is not None and item.state in timers.OPEN_STATES:
        return
    timers.schedule(
        db,
        kind=KIND_CATCH_UP,
        subject_type=SUBJECT[0],
        subject_id=SUBJECT[1],
        due_at=now + CATCH_UP_EVERY,
        now=now,
    )


@timers.register(KIND_CATCH_UP)
def handle_catch_up(db: Session, item: DueItem, now: datetime) -> None:
    rollups.catch_up(db, now=now)
    timers.schedule(
        db,
        kind=KIND_CATCH_UP,
        subject_type=SUBJECT[0],
        subject_id=SUBJECT[1],
        due_at=now + CATCH_UP_EVERY,
        now=now,
    )


def kinds() -> tuple[str, ...]:
    return (KIND_CATCH_UP,)
