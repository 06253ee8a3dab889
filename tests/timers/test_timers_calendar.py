"""The calendar as data: seeded from chinesecalendar, extended by an administrator."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from zoneinfo import ZoneInfo

import chinese_calendar as cc
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watergrid.timers.calendar import (
    WorkCalendar,
    clear_day,
    seed_calendar,
    set_day,
    set_year_complete,
)
from watergrid.timers.deadlines import compute_due
from watergrid.timers.models import CalendarDay, CalendarYear

SH = ZoneInfo("Asia/Shanghai")


def count_rows(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(CalendarDay)) or 0)


def test_seeded_calendar_agrees_with_the_package_on_every_date(db: Session) -> None:
    result = seed_calendar(db)
    assert result.years == tuple(range(2004, 2027)) and result.skipped_years == ()
    cal = WorkCalendar.load(db)
    assert cal.known_years == set(range(2004, 2027))
    day = dt.date(2004, 1, 1)
    while day.year <= 2026:
        assert cal.is_workday(day) == cc.is_workday(day), day
        day += timedelta(days=1)
    # Only departures (and named holiday weekends) are stored, not every date.
    assert count_rows(db) == result.inserted < 1000


def test_seeding_is_idempotent(db: Session) -> None:
    first = seed_calendar(db, years=[2025, 2026])
    rows = count_rows(db)
    again = seed_calendar(db, years=[2025, 2026])
    assert first.inserted > 0
    assert (again.inserted, again.updated, again.removed) == (0, 0, 0)
    assert count_rows(db) == rows


def test_years_the_package_does_not_know_are_skipped_not_guessed(db: Session) -> None:
    result = seed_calendar(db, years=[2026, 2027])
    assert result.years == (2026,) and result.skipped_years == (2027,)
    assert db.get(CalendarYear, 2027) is None


def test_make_up_days_and_holidays_of_2025_and_2026(db: Session) -> None:
    seed_calendar(db, years=[2025, 2026])
    cal = WorkCalendar.load(db)
    make_up_days = [
        dt.date(2025, 1, 26),
        dt.date(2025, 2, 8),
        dt.date(2025, 9, 28),
        dt.date(2025, 10, 11),
        dt.date(2026, 2, 14),
        dt.date(2026, 2, 28),
    ]
    for day in make_up_days:
        assert day.weekday() >= 5
        assert cal.is_workday(day)
        assert (cal.day_name(day) or "").endswith("调休上班")
    assert not any(cal.is_workday(dt.date(2025, 10, d)) for d in range(1, 9))
    assert cal.day_name(dt.date(2025, 1, 29)) == "春节"
    assert cal.day_name(dt.date(2025, 10, 4)) == "国庆节"  # a Saturday inside the holiday
    assert cal.is_workday(dt.date(2025, 3, 5)) and cal.day_name(dt.date(2025, 3, 5)) is None
    # An instant is judged by its Shanghai date: 16:30 UTC on Friday 31 Jan is already 1 Feb.
    assert not cal.is_workday(dt.datetime(2025, 1, 31, 16, 30, tzinfo=dt.UTC))


def test_an_administrators_day_survives_reseeding(db: Session) -> None:
    seed_calendar(db, years=[2025])
    # A typhoon closure declared a day off, and a corrected make-up day.
    set_day(db, day=dt.date(2025, 10, 9), is_workday=False, name="台风停工", by="admin1")
    set_day(db, day=dt.date(2025, 10, 11), is_workday=False, name="调整", by="admin1")
    result = seed_calendar(db, years=[2025])
    assert result.updated == 0
    cal = WorkCalendar.load(db)
    assert not cal.is_workday(dt.date(2025, 10, 9))
    assert not cal.is_workday(dt.date(2025, 10, 11))
    row = db.scalar(select(CalendarDay).where(CalendarDay.date == dt.date(2025, 10, 11)))
    assert row is not None and row.source == "admin" and row.updated_by == "admin1"
    assert clear_day(db, day=dt.date(2025, 10, 9))
    assert WorkCalendar.load(db).is_workday(dt.date(2025, 10, 9))  # a Thursday again


def test_a_later_year_is_entered_by_an_administrator(db: Session) -> None:
    seed_calendar(db, years=[2026])
    start = dt.datetime(2026, 12, 31, 10, tzinfo=SH)

    before = compute_due(start, amount=1, unit="workdays", calendar=WorkCalendar.load(db))
    assert before.warnings == ("2027年节假日未录入，按周一至周五计算",)
    assert before.due_at == dt.datetime(2027, 1, 1, 10, tzinfo=SH)  # Friday, by the fallback

    # Half entered: the holiday already counts, but the warning stays until declared complete.
    set_day(db, day=dt.date(2027, 1, 1), is_workday=False, name="元旦")
    partial = compute_due(start, amount=1, unit="workdays", calendar=WorkCalendar.load(db))
    assert partial.due_at == dt.datetime(2027, 1, 4, 10, tzinfo=SH)
    assert partial.unknown_years == {2027}

    set_year_complete(db, year=2027, by="admin1")
    done = compute_due(start, amount=1, unit="workdays", calendar=WorkCalendar.load(db))
    assert done.due_at == dt.datetime(2027, 1, 4, 10, tzinfo=SH)
    assert done.warnings == ()

    set_year_complete(db, year=2027, complete=False)
    assert 2027 not in WorkCalendar.load(db).known_years


def test_set_day_refuses_a_datetime(db: Session) -> None:
    with pytest.raises(TypeError):
        set_day(db, day=dt.datetime(2027, 1, 1, tzinfo=SH), is_workday=False, name="元旦")


def test_add_working_days_and_working_time_between() -> None:
    cal = WorkCalendar.from_package(years=[2025])
    friday = dt.datetime(2025, 1, 24, 15, tzinfo=SH)
    assert cal.add_working_days(friday, 1) == dt.datetime(2025, 1, 26, 15, tzinfo=SH)
    assert cal.working_time_between(friday, dt.datetime(2025, 2, 5, 15, tzinfo=SH)) == timedelta(
        days=3
    )
    assert cal.working_days_between(friday, dt.datetime(2025, 1, 27, 3, tzinfo=SH)) == 1.5
    # Reversed arguments give a negative span rather than a silent zero.
    assert cal.working_time_between(dt.datetime(2025, 2, 5, 15, tzinfo=SH), friday) == -timedelta(
        days=3
    )


def test_a_calendar_without_working_days_fails_loudly() -> None:
    start = dt.date(2030, 1, 1)
    closed = {start + timedelta(days=i): False for i in range(800)}
    cal = WorkCalendar(closed, known_years=[2030, 2031, 2032])
    with pytest.raises(ValueError, match="no working day"):
        cal.add_working_days(dt.datetime(2030, 1, 1, tzinfo=SH), 1)
