"""Reference data every deployment needs, demo or not: the working-day calendar (from the
chinese-calendar package, extended by administrators), the default service categories and
the rainstorm warning criteria. `watergrid migrate` and `watergrid demo` both call it; it
never overwrites an edit."""

from __future__ import annotations

from sqlalchemy.orm import Session


def seed_reference(db: Session) -> None:
    from watergrid.db import utcnow
    from watergrid.flood.warnings import seed_criteria
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories

    seed_calendar(db)
    seed_categories(db)
    seed_criteria(db, now=utcnow())
