"""Deadline arithmetic, checked against chinesecalendar itself as an independent oracle."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar as cc
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from watergrid.timers.calendar import WorkCalendar, unknown_year_warning
from watergrid.timers.deadlines import (
    UNITS,
    DueResult,
    Paused,
    Unit,
    compute_due,
    compute_due_suspended,
    counted_time,
    fraction_point,
)

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar.from_package()
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def due_days(start: datetime, n: float) -> datetime:
    return compute_due(start, amount=n, unit="workdays", calendar=CAL).due_at


# -- the oracle: counting working days with chinesecalendar, the way a clerk would ---------


def oracle(start: datetime, n: int) -> datetime:
    """From a working day at clock time t (not midnight): t on the nth working day after.
    From a non-working day: 24:00 of the nth working day from the next working day on."""
    s = start.astimezone(SH)
    day = s.date()
    if cc.is_workday(day):
        assert s.time() != dt.time(0)
        found = 0
        while found < n:
            day += DAY
            found += cc.is_workday(day)
        return datetime.combine(day, s.time(), tzinfo=SH)
    found = 0
    while True:
        day += DAY
        if cc.is_workday(day):
            found += 1
            if found == n:
                return datetime.combine(day + DAY, dt.time(0), tzinfo=SH)


# Start times are drawn around the holidays that matter most, plus anywhere in 2025–2026.
HOLIDAY_WINDOWS = [
    (dt.date(2025, 1, 10), dt.date(2025, 2, 15)),  # Spring Festival 2025
    (dt.date(2026, 1, 25), dt.date(2026, 3, 5)),  # Spring Festival 2026
    (dt.date(2025, 9, 15), dt.date(2025, 10, 15)),  # National Day 2025
    (dt.date(2024, 12, 1), dt.date(2026, 10, 31)),  # anywhere
]


@st.composite
def starts(draw: st.DrawFn, *, midnight_ok: bool = False) -> datetime:
    lo, hi = draw(st.sampled_from(HOLIDAY_WINDOWS))
    day = draw(st.dates(min_value=lo, max_value=hi))
    minute = draw(st.integers(min_value=0 if midnight_ok else 1, max_value=24 * 60 - 1))
    second = draw(st.integers(0, 59))
    return datetime.combine(day, dt.time(minute // 60, minute % 60, second), tzinfo=SH)


def lands_in_working_time(instant: datetime) -> bool:
    """Inside a working date, or exactly at the 24:00 that closes one."""
    loc = instant.astimezone(SH)
    if loc.time() == dt.time(0):
        return bool(cc.is_workday(loc.date() - DAY))
    return bool(cc.is_workday(loc.date()))


# -- the calendar facts the tests lean on --------------------------------------------------


def test_package_facts_used_below() -> None:
    assert cc.is_workday(dt.date(2025, 1, 26)) and dt.date(2025, 1, 26).weekday() == 6
    assert cc.is_workday(dt.date(2025, 2, 8)) and dt.date(2025, 2, 8).weekday() == 5
    assert all(not cc.is_workday(dt.date(2025, 1, d)) for d in range(28, 32))
    assert all(not cc.is_workday(dt.date(2025, 2, d)) for d in range(1, 5))
    assert all(not cc.is_workday(dt.date(2025, 10, d)) for d in range(1, 9))
    assert cc.is_workday(dt.date(2025, 9, 28)) and cc.is_workday(dt.date(2025, 10, 11))
    assert cc.is_workday(dt.date(2026, 2, 14)) and cc.is_workday(dt.date(2026, 2, 28))
    assert all(not cc.is_workday(dt.date(2026, 2, d)) for d in range(15, 24))


def test_calendar_from_package_is_exact_for_every_known_date() -> None:
    day = dt.date(2004, 1, 1)
    while day.year <= 2026:
        assert CAL.is_workday(day) == cc.is_workday(day), day
        day += DAY
    assert CAL.day_name(dt.date(2025, 1, 26)) == "春节调休上班"
    assert CAL.day_name(dt.date(2025, 10, 1)) == "国庆节"


# -- worked examples (also in docs/deadlines.md) ---------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        # Friday before Spring Festival 2025: Sunday 26 Jan is a make-up working day.
        (local(2025, 1, 24, 15), 1, local(2025, 1, 26, 15)),
        (local(2025, 1, 24, 15), 2, local(2025, 1, 27, 15)),
        (local(2025, 1, 24, 15), 3, local(2025, 2, 5, 15)),
        (local(2025, 1, 24, 15), 5, local(2025, 2, 7, 15)),
        (local(2025, 1, 24, 15), 6, local(2025, 2, 8, 15)),  # Saturday, make-up day
        # Submitted during the holiday: counting starts at 00:00 of 5 Feb.
        (local(2025, 1, 30, 10), 1, local(2025, 2, 6)),
        # National Day 2025: Sunday 28 Sep and Saturday 11 Oct are make-up working days.
        (local(2025, 9, 26, 15), 1, local(2025, 9, 28, 15)),
        (local(2025, 9, 26, 15), 3, local(2025, 9, 30, 15)),
        (local(2025, 9, 26, 15), 4, local(2025, 10, 9, 15)),
        (local(2025, 9, 26, 15), 6, local(2025, 10, 11, 15)),
        (local(2025, 9, 26, 15), 7, local(2025, 10, 13, 15)),
        # Spring Festival 2026: Saturday 14 Feb is a make-up day, 15–23 Feb off.
        (local(2026, 2, 13, 9, 30), 1, local(2026, 2, 14, 9, 30)),
        (local(2026, 2, 13, 9, 30), 2, local(2026, 2, 24, 9, 30)),
        # Half a working day from Friday 20:00 is 12 h of working time: Friday 4 h,
        # then 8 h into Monday.
        (local(2025, 3, 7, 20), 0.5, local(2025, 3, 10, 8)),
    ],
)
def test_worked_examples(start: datetime, n: float, expected: datetime) -> None:
    result = due_days(start, n)
    assert result == expected.astimezone(UTC)
    assert result.tzinfo is UTC


def test_a_count_ending_at_the_end_of_a_working_day_is_that_days_2400() -> None:
    # Starts Saturday 27 Sep 2025; first working day is Sunday 28 (make-up); three working
    # days end at 24:00 on Tuesday 30 Sep, even though 1 Oct is a holiday.
    assert due_days(local(2025, 9, 27, 10), 3) == local(2025, 10, 1).astimezone(UTC)
    # From midnight of a working day, one working day is that day's 24:00.
    assert due_days(local(2025, 9, 30), 1) == local(2025, 10, 1).astimezone(UTC)


def test_hours_are_plain_clock_time_even_across_holidays() -> None:
    start = local(2025, 1, 28, 22)  # New Year's Eve of Spring Festival 2025
    result = compute_due(start, amount=4, unit="hours")
    assert result == DueResult(start.astimezone(UTC) + timedelta(hours=4))


def test_zero_amount_is_the_start() -> None:
    start = local(2025, 10, 3, 12)
    assert due_days(start, 0) == start.astimezone(UTC)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_amounts_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        compute_due(local(2025, 3, 3, 9), amount=bad, unit="workdays", calendar=CAL)


def test_naive_start_and_unknown_unit_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_due(datetime(2025, 3, 3, 9), amount=1, unit="hours")
    with pytest.raises(ValueError, match="unit"):
        compute_due(local(2025, 3, 3, 9), amount=1, unit="weeks")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="WorkCalendar"):
        compute_due(local(2025, 3, 3, 9), amount=1, unit="workdays")


# -- properties ------------------------------------------------------------------------------


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(start=starts(), n=st.integers(min_value=1, max_value=25))
def test_matches_a_clerks_count(start: datetime, n: int) -> None:
    assert due_days(start, n) == oracle(start, n).astimezone(UTC)


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(start=starts(midnight_ok=True), n=st.integers(min_value=1, max_value=25))
def test_due_lands_in_working_time_and_never_in_a_holiday(start: datetime, n: int) -> None:
    due = due_days(start, n)
    assert lands_in_working_time(due)
    loc = due.astimezone(SH)
    inside = loc.date() - DAY if loc.time() == dt.time(0) else loc.date()
    assert inside not in cc.holidays


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(
    start=starts(midnight_ok=True),
    a=st.floats(min_value=0, max_value=20, allow_nan=False),
    b=st.floats(min_value=0, max_value=20, allow_nan=False),
)
def test_more_days_is_later(start: datetime, a: float, b: float) -> None:
    assume(timedelta(days=a) < timedelta(days=b))  # distinct after microsecond rounding
    assert due_days(start, a) < due_days(start, b)


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(start=starts(midnight_ok=True), n=st.floats(min_value=0.01, max_value=25))
def test_counted_working_time_equals_the_amount(start: datetime, n: float) -> None:
    due = due_days(start, n)
    assert CAL.working_time_between(start, due) == timedelta(days=n)


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(
    start=starts(midnight_ok=True),
    x=st.integers(min_value=1, max_value=12),
    y=st.integers(min_value=1, max_value=12),
)
def test_days_add_up(start: datetime, x: int, y: int) -> None:
    assert due_days(due_days(start, x), y) == due_days(start, x + y)


# -- years the calendar does not know --------------------------------------------------------


def test_2027_falls_back_to_monday_to_friday_with_a_warning() -> None:
    cal = WorkCalendar.from_package()
    result = compute_due(local(2026, 12, 25, 10), amount=10, unit="workdays", calendar=cal)
    # 28–31 Dec, then 1 Jan 2027 (a Friday: counted, since 2027 is not entered), 4–8 Jan.
    assert result.due_at == local(2027, 1, 8, 10).astimezone(UTC)
    assert result.unknown_years == {2027}
    assert result.warnings == ("2027年节假日未录入，按周一至周五计算",)
    assert cal.unknown_years_touched == {2027}
    with pytest.raises(NotImplementedError):
        cc.is_workday(dt.date(2027, 1, 4))  # why the project keeps its own calendar


def test_a_count_ending_at_midnight_on_31_december_does_not_touch_the_next_year() -> None:
    # Saturday 26 Dec 2026: four working days are 28–31 Dec, ending at 24:00 on the 31st.
    result = compute_due(local(2026, 12, 26, 10), amount=4, unit="workdays", calendar=CAL)
    assert result.due_at == local(2027, 1, 1).astimezone(UTC)
    assert result.warnings == ()


def test_entering_the_year_removes_the_warning_and_moves_the_deadline() -> None:
    days = {dt.date(2027, 1, 1): False}
    cal = WorkCalendar(days, known_years=[*range(2004, 2027), 2027])
    result = compute_due(local(2026, 12, 31, 10), amount=1, unit="workdays", calendar=cal)
    assert result.due_at == local(2027, 1, 4, 10).astimezone(UTC)
    assert result.warnings == ()
    assert (
        unknown_year_warning(2027)
        in compute_due(local(2026, 12, 31, 10), amount=1, unit="workdays", calendar=CAL).warnings
    )


def test_hours_never_warn() -> None:
    result = compute_due(local(2026, 12, 31, 20), amount=48, unit="hours", calendar=CAL)
    assert result.warnings == ()


# -- suspension ------------------------------------------------------------------------------


@st.composite
def suspensions(draw: st.DrawFn, start: datetime) -> list[tuple[datetime, datetime | None]]:
    """Non-overlapping suspensions in minutes from `start` (some may begin before it); the
    last may still be open."""
    out: list[tuple[datetime, datetime | None]] = []
    cursor = start + timedelta(minutes=draw(st.integers(-3000, 3000)))
    for _ in range(draw(st.integers(0, 4))):
        length = timedelta(minutes=draw(st.integers(1, 6000)))
        out.append((cursor, cursor + length))
        cursor += length + timedelta(minutes=draw(st.integers(1, 6000)))
    if draw(st.booleans()):
        out.append((cursor, None))
    return out


def overlap(a: datetime, b: datetime, holes: list[tuple[datetime, datetime | None]]) -> timedelta:
    total = timedelta(0)
    for s, r in holes:
        lo, hi = max(s, a), min(r or b, b)
        if hi > lo:
            total += hi - lo
    return total


@settings(max_examples=200, deadline=None)
@given(data=st.data(), start=starts(midnight_ok=True), hours=st.integers(1, 200))
def test_suspended_hours_push_the_due_time_by_the_suspended_time(
    data: st.DataObject, start: datetime, hours: int
) -> None:
    start = start.astimezone(UTC)
    holes = data.draw(suspensions(start))
    result = compute_due_suspended(start, amount=hours, unit="hours", suspensions=holes)
    plain = start + timedelta(hours=hours)
    if isinstance(result, DueResult):
        assert result.due_at == plain + overlap(start, result.due_at, holes)
    else:
        # The clock is stopped: the open suspension began before the time ran out.
        since = result.since
        assert since - start - overlap(start, since, holes) + result.remaining == timedelta(
            hours=hours
        )
        assert result.remaining > timedelta(0)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), start=starts(midnight_ok=True), n=st.integers(1, 15))
def test_suspended_workdays_count_only_unsuspended_working_time(
    data: st.DataObject, start: datetime, n: int
) -> None:
    start = start.astimezone(UTC)
    holes = data.draw(suspensions(start))
    result = compute_due_suspended(
        start, amount=n, unit="workdays", suspensions=holes, calendar=CAL
    )
    if isinstance(result, Paused):
        used = CAL.working_time_between(start, result.since)
        used -= _suspended_working_time(start, result.since, holes)
        assert used + result.remaining == timedelta(days=n)
        return
    due = result.due_at
    counted = CAL.working_time_between(start, due) - _suspended_working_time(start, due, holes)
    assert counted == timedelta(days=n)
    assert lands_in_working_time(due)
    assert due >= due_days(start, n)


def _suspended_working_time(
    a: datetime, b: datetime, holes: list[tuple[datetime, datetime | None]]
) -> timedelta:
    total = timedelta(0)
    for s, r in holes:
        lo, hi = max(s, a), min(r or b, b)
        if hi > lo:
            total += CAL.working_time_between(lo, hi)
    return total


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(
    start=starts(),
    n=st.integers(1, 10),
    unit=st.sampled_from(UNITS),
    pause_after=st.integers(1, 600),
    pause_for=st.integers(1, 20_000),
)
def test_resuming_restarts_the_clock_with_what_was_left(
    start: datetime, n: int, unit: Unit, pause_after: int, pause_for: int
) -> None:
    start = start.astimezone(UTC)
    suspended = start + timedelta(minutes=pause_after)
    resumed = suspended + timedelta(minutes=pause_for)
    plain = compute_due(start, amount=n, unit=unit, calendar=CAL).due_at
    paused = compute_due_suspended(
        start, amount=n, unit=unit, calendar=CAL, suspensions=[(suspended, None)]
    )
    holes: list[tuple[datetime, datetime | None]] = [(suspended, resumed)]
    after = compute_due_suspended(start, amount=n, unit=unit, calendar=CAL, suspensions=holes)
    assert isinstance(after, DueResult)
    if plain <= suspended:
        # Suspended after the time ran out: nothing changes.
        assert isinstance(paused, DueResult) and paused.due_at == plain
        assert after.due_at == plain
        return
    assert isinstance(paused, Paused) and paused.since == suspended
    if unit == "hours":
        assert after.due_at == resumed + paused.remaining
    else:
        assert abs(after.due_at - CAL.add_working_days(resumed, paused.remaining / DAY)) <= 2 * US
    counted = counted_time(start, after.due_at, unit=unit, calendar=CAL, suspensions=holes)
    assert counted == timedelta(hours=n) * (24 if unit == "workdays" else 1)


def test_overlapping_suspensions_count_once_and_earlier_ones_are_ignored() -> None:
    start = local(2025, 3, 3, 9)  # Monday
    holes: list[tuple[datetime, datetime | None]] = [
        (local(2025, 3, 3, 10), local(2025, 3, 3, 14)),
        (local(2025, 3, 3, 12), local(2025, 3, 3, 16)),  # overlaps the first
        (local(2025, 2, 1), local(2025, 2, 2)),  # before the start
    ]
    result = compute_due_suspended(
        start, amount=1, unit="workdays", suspensions=holes, calendar=CAL
    )
    assert isinstance(result, DueResult)
    assert result.due_at == local(2025, 3, 4, 15).astimezone(UTC)


def test_a_suspension_over_a_holiday_costs_nothing_extra() -> None:
    # Suspended across the whole National Day holiday 2025: no working time was suspended.
    start = local(2025, 9, 30, 9)
    hole = [(local(2025, 10, 1), local(2025, 10, 9))]
    a = compute_due_suspended(start, amount=2, unit="workdays", suspensions=hole, calendar=CAL)
    assert isinstance(a, DueResult)
    assert a.due_at == due_days(start, 2) == local(2025, 10, 10, 9).astimezone(UTC)


def test_resumed_before_suspended_is_refused() -> None:
    with pytest.raises(ValueError, match="before"):
        compute_due_suspended(
            local(2025, 3, 3, 9),
            amount=1,
            unit="hours",
            suspensions=[(local(2025, 3, 3, 10), local(2025, 3, 3, 9))],
        )


# -- reminder points -------------------------------------------------------------------------


def test_reminder_points_for_a_working_day_limit_skip_the_weekend() -> None:
    start = local(2025, 1, 24, 15)  # Friday
    due = due_days(start, 1)  # Sunday 26 Jan 15:00, a make-up working day
    # 9 h on Friday, then 3 h into Sunday (Saturday is not counted).
    assert fraction_point(start, due, 0.5, unit="workdays", calendar=CAL) == local(
        2025, 1, 26, 3
    ).astimezone(UTC)
    assert fraction_point(start, due, 0.25, unit="workdays", calendar=CAL) == local(
        2025, 1, 24, 21
    ).astimezone(UTC)


def test_reminder_points_for_hours_are_linear() -> None:
    start = local(2025, 6, 1, 8)
    due = start + timedelta(hours=4)
    assert fraction_point(start, due, 0.8, unit="hours") == (
        start + timedelta(hours=3.2)
    ).astimezone(UTC)


@settings(deadline=None)  # timing varies on a shared CI machine; results do not
@given(
    start=starts(midnight_ok=True),
    n=st.integers(1, 15),
    f1=st.floats(0, 1),
    f2=st.floats(0, 1),
)
def test_reminder_points_are_fractions_of_counted_time(
    start: datetime, n: int, f1: float, f2: float
) -> None:
    due = due_days(start, n)
    p1 = fraction_point(start, due, f1, unit="workdays", calendar=CAL)
    p2 = fraction_point(start, due, f2, unit="workdays", calendar=CAL)
    total = timedelta(days=n)
    assert abs(CAL.working_time_between(start, p1) - total * f1) <= US
    assert start.astimezone(UTC) <= p1 <= due
    if f1 < f2:
        assert p1 <= p2
    if total * f1 > timedelta(0):  # a fraction too small for a microsecond is the start
        assert lands_in_working_time(p1)


def test_reminder_points_with_a_suspension_skip_the_suspension() -> None:
    start = local(2025, 6, 2, 8)  # Monday
    holes: list[tuple[datetime, datetime | None]] = [(local(2025, 6, 2, 9), local(2025, 6, 2, 11))]
    result = compute_due_suspended(start, amount=4, unit="hours", suspensions=holes)
    assert isinstance(result, DueResult) and result.due_at == local(2025, 6, 2, 14).astimezone(UTC)
    # Two counted hours: 8–9, then 11–12.
    half = fraction_point(start, result.due_at, 0.5, unit="hours", suspensions=holes)
    assert half == local(2025, 6, 2, 12).astimezone(UTC)
