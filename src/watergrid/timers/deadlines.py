"""Deadline arithmetic: pure functions, no database, no clock.

A deadline is the earliest instant by which `amount` of *counted time* has passed since
`start`. What counts depends on the unit:

- "hours": every instant (emergencies run on the clock);
- "workdays": every instant inside a working date in Asia/Shanghai, one working day = 24 h.

Suspensions (挂起) are cut out of counted time in both units: while an item is suspended its
clock stands still. Reminder points (50 %, 80 %) are fractions of counted time, so a reminder
never falls on a holiday for a working-day limit. The rules are written out in
docs/deadlines.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from watergrid.timers.calendar import WorkCalendar, check_amount, unknown_year_warning
from watergrid.timers.spans import (
    ZERO,
    Interval,
    Window,
    advance,
    measure,
    merge,
    require_aware,
    subtract,
)

Unit = Literal["hours", "workdays"]
UNITS: tuple[Unit, ...] = ("hours", "workdays")


@dataclass(frozen=True)
class DueResult:
    due_at: datetime
    # Shown to whoever set the deadline, e.g. "2027年节假日未录入，按周一至周五计算".
    warnings: tuple[str, ...] = ()
    unknown_years: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Paused:
    """The clock is stopped by a suspension that has not been resumed: there is no due time
    until it is. `remaining` counted time will be left when it resumes."""

    since: datetime
    remaining: timedelta
    warnings: tuple[str, ...] = ()
    unknown_years: frozenset[int] = field(default_factory=frozenset)


def amount_delta(amount: float, unit: Unit) -> timedelta:
    """The counted time a limit stands for."""
    check_amount(amount)
    if unit == "hours":
        return timedelta(hours=amount)
    if unit == "workdays":
        return timedelta(days=amount)
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")


def counted_windows(
    start: datetime,
    *,
    unit: Unit,
    calendar: WorkCalendar | None = None,
    suspensions: Iterable[Interval] = (),
) -> Iterator[Window]:
    """The windows of counted time from `start` on, in UTC."""
    require_aware(start, "start")
    start = start.astimezone(UTC)
    base: Iterator[Window]
    if unit == "hours":
        base = iter([(start, None)])
    elif unit == "workdays":
        base = _need_calendar(calendar).working_windows(start)
    else:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    holes = merge(
        ((s.astimezone(UTC), None if r is None else r.astimezone(UTC)) for s, r in suspensions),
        not_before=start,
    )
    return subtract(base, holes) if holes else base


def compute_due(
    start: datetime, *, amount: float, unit: Unit, calendar: WorkCalendar | None = None
) -> DueResult:
    """Due time of a limit of `amount` `unit` running from `start`. `calendar` is needed for
    "workdays" only."""
    result = compute_due_suspended(
        start, amount=amount, unit=unit, calendar=calendar, suspensions=()
    )
    assert isinstance(result, DueResult)  # nothing can pause a clock without suspensions
    return result


def compute_due_suspended(
    start: datetime,
    *,
    amount: float,
    unit: Unit,
    suspensions: Iterable[Interval],
    calendar: WorkCalendar | None = None,
) -> DueResult | Paused:
    """Due time when the clock stood still during `suspensions` — (suspended_at,
    resumed_at or None) pairs, in any order, overlaps counted once, parts before `start`
    ignored. Paused when an open suspension stops the clock before the limit is used up."""
    delta = amount_delta(amount, unit)
    require_aware(start, "start")
    start = start.astimezone(UTC)
    holes = list(suspensions)
    if delta == ZERO:
        return DueResult(start)
    due, remaining = advance(
        counted_windows(start, unit=unit, calendar=calendar, suspensions=holes), delta
    )
    if due is None:
        since = _open_since(holes, start)
        years = _unknown(calendar, unit, start, since)
        return Paused(since, remaining, _warnings(years), years)
    years = _unknown(calendar, unit, start, due)
    return DueResult(due, _warnings(years), years)


def counted_time(
    start: datetime,
    end: datetime,
    *,
    unit: Unit,
    calendar: WorkCalendar | None = None,
    suspensions: Iterable[Interval] = (),
) -> timedelta:
    """Counted time between start and end: what a limit has used up by `end`."""
    require_aware(end, "end")
    if end <= start:
        return ZERO
    windows = counted_windows(start, unit=unit, calendar=calendar, suspensions=suspensions)
    return measure(windows, end.astimezone(UTC))


def fraction_point(
    start: datetime,
    due: datetime,
    fraction: float,
    *,
    unit: Unit,
    calendar: WorkCalendar | None = None,
    suspensions: Iterable[Interval] = (),
) -> datetime:
    """The earliest instant by which `fraction` of the counted time from start to due has
    passed — the moment for a 50 % or 80 % reminder. For "workdays" it lies in working
    time, so it never falls on a holiday; fraction 1 gives `due` (or the end of the last
    working date before it)."""
    check_amount(fraction)
    if fraction > 1:
        raise ValueError(f"fraction must be within [0, 1], got {fraction!r}")
    holes = list(suspensions)
    total = counted_time(start, due, unit=unit, calendar=calendar, suspensions=holes)
    target = total * fraction
    start = start.astimezone(UTC)
    if target <= ZERO:
        return start
    point, _ = advance(
        counted_windows(start, unit=unit, calendar=calendar, suspensions=holes), target
    )
    assert point is not None  # the target lies inside time already counted before `due`
    return point


def _need_calendar(calendar: WorkCalendar | None) -> WorkCalendar:
    if calendar is None:
        raise ValueError('unit "workdays" needs a WorkCalendar')
    return calendar


def _unknown(calendar: WorkCalendar | None, unit: Unit, a: datetime, b: datetime) -> frozenset[int]:
    if unit != "workdays" or calendar is None:
        return frozenset()
    years = calendar.unknown_years_between(a, b)
    calendar.unknown_years_touched.update(years)
    return years


def _warnings(years: frozenset[int]) -> tuple[str, ...]:
    return tuple(unknown_year_warning(y) for y in sorted(years))


def _open_since(holes: list[Interval], start: datetime) -> datetime:
    merged = merge(
        ((s.astimezone(UTC), None if r is None else r.astimezone(UTC)) for s, r in holes),
        not_before=start,
    )
    for begin, end in merged:
        if end is None:
            return begin
    raise AssertionError("paused without an open suspension")
