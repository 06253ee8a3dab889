"""Reference data every deployment needs, demo or not: the working-day calendar (from the
chinese-calendar package, extended by administrators) and the default service categories.
`watergrid migrate` and `watergrid demo` both call it; it never overwrites an edit."""

from __future__ import annotations

from sqlalchemy.orm import Session


def seed_reference(db: Session) -> None:
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories

    seed_calendar(db)
    seed_categories(db)
