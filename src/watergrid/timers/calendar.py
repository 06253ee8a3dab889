"""The working calendar: which local dates are working days (工作日).

The project keeps the calendar as data (tables work_calendar and work_calendar_year). It is
seeded from the chinesecalendar package, which knows 2004–2026, and an administrator enters
later years when the State Council publishes them. A date without a row is a working day
exactly when it falls Monday–Friday; a year not marked complete still works that way, but
every deadline that touches it carries a warning the pages show.

Counting rule (docs/deadlines.md): N working days is N × 24 h of time spent inside working
dates, judged in Asia/Shanghai. From a working day at local clock time t that ends at t on
the Nth working day after; from a non-working day it ends at 24:00 of the Nth working day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from watergrid.timers.models import CalendarDay, CalendarYear
from watergrid.timers.spans import ZERO, Window, advance, measure, require_aware

DEFAULT_TZ = "Asia/Shanghai"
# Years chinesecalendar 1.11 has data for; asking it about others raises NotImplementedError.
PACKAGE_YEARS = range(2004, 2027)
MAKEUP_SUFFIX = "调休上班"
# No real calendar has a year without working days; a longer run means broken data, and
# failing loudly beats looping for ever.
MAX_NON_WORKING_RUN = 366

# chinesecalendar names holidays in English ("Spring Festival"); pages want the Chinese.
_HOLIDAY_ZH = {
    "new year's day": "元旦",
    "spring festival": "春节",
    "tomb-sweeping day": "清明节",
    "labour day": "劳动节",
    "dragon boat festival": "端午节",
    "national day": "国庆节",
    "mid-autumn festival": "中秋节",
    "anti-fascist 70th day": "抗战胜利70周年纪念日",
}


def unknown_year_warning(year: int) -> str:
    return f"{year}年节假日未录入，按周一至周五计算"


@dataclass(frozen=True)
class PackageDay:
    date: dt.date
    is_workday: bool
    name: str


def package_days(year: int) -> list[PackageDay]:
    """The rows chinesecalendar implies for `year`: every holiday date (weekend ones too, so
    that pages can name them) and every make-up working day. Raises NotImplementedError for a
    year the package has no data for."""
    import chinese_calendar as cc

    # The package answers dict look-ups for any year with silence; only its functions know
    # which years it covers, and they raise for the others.
    cc.is_workday(dt.date(year, 1, 1))
    days: list[PackageDay] = []
    for day, holiday in cc.holidays.items():
        if day.year == year:
            days.append(PackageDay(day, False, _zh(holiday)))
    for day, holiday in cc.workdays.items():
        # A weekday listed as a working day changes nothing; only weekend make-up days do.
        if day.year == year and day.weekday() >= 5:
            days.append(PackageDay(day, True, _zh(holiday) + MAKEUP_SUFFIX))
    days.sort(key=lambda d: d.date)
    return days


def _zh(holiday: object) -> str:
    # The package's dicts hold the English name; its Holiday enum carries it as the value.
    english = str(getattr(holiday, "value", holiday))
    return _HOLIDAY_ZH.get(english.strip().lower(), english)[:48]


@dataclass(frozen=True)
class SeedResult:
    years: tuple[int, ...]
    skipped_years: tuple[int, ...]
    inserted: int
    updated: int
    removed: int


def seed_calendar(db: Session, years: Iterable[int] = PACKAGE_YEARS) -> SeedResult:
    """Fill the calendar from chinesecalendar. Idempotent: a second run changes nothing.
    Rows an administrator entered or corrected are left alone. Years the package does not
    know are skipped and reported, not guessed. Does not commit."""
    seeded: list[int] = []
    skipped: list[int] = []
    inserted = updated = removed = 0
    for year in years:
        try:
            wanted = {d.date: d for d in package_days(year)}
        except NotImplementedError:
            skipped.append(year)
            continue
        existing = {
            row.date: row
            for row in db.scalars(
                select(CalendarDay).where(
                    CalendarDay.date >= dt.date(year, 1, 1),
                    CalendarDay.date <= dt.date(year, 12, 31),
                )
            )
        }
        for day, want in wanted.items():
            row = existing.get(day)
            if row is None:
                db.add(
                    CalendarDay(
                        date=day,
                        is_workday=want.is_workday,
                        name=want.name,
                        source="chinese_calendar",
                    )
                )
                inserted += 1
            elif row.source == "chinese_calendar" and (row.is_workday, row.name) != (
                want.is_workday,
                want.name,
            ):
                row.is_workday, row.name = want.is_workday, want.name
                updated += 1
        # A newer package may have corrected a date; keep the seeded rows exactly its data.
        for day, row in existing.items():
            if row.source == "chinese_calendar" and day not in wanted:
                db.delete(row)
                removed += 1
        if db.get(CalendarYear, year) is None:
            db.add(CalendarYear(year=year, source="chinese_calendar"))
        seeded.append(year)
    db.flush()
    return SeedResult(tuple(seeded), tuple(skipped), inserted, updated, removed)


def set_day(
    db: Session, *, day: dt.date, is_workday: bool, name: str, by: str | None = None
) -> CalendarDay:
    """Enter or correct one date (a holiday, or a make-up working day with is_workday true).
    The row is marked as the administrator's, so re-seeding never undoes it. Does not commit."""
    if isinstance(day, datetime):
        raise TypeError("set_day takes a local date, not a datetime")
    name = name.strip()
    if len(name) > 64:
        raise ValueError("name longer than 64 characters")
    row = db.scalar(select(CalendarDay).where(CalendarDay.date == day))
    if row is None:
        row = CalendarDay(date=day, is_workday=is_workday, name=name, source="admin", updated_by=by)
        db.add(row)
    else:
        row.is_workday, row.name, row.source, row.updated_by = is_workday, name, "admin", by
    db.flush()
    return row


def clear_day(db: Session, *, day: dt.date) -> bool:
    """Remove a date's row, so it follows Monday–Friday again. Does not commit."""
    result = db.execute(delete(CalendarDay).where(CalendarDay.date == day))
    return bool(getattr(result, "rowcount", 0))


def set_year_complete(
    db: Session, *, year: int, complete: bool = True, by: str | None = None
) -> None:
    """Declare that all of `year`'s holidays and make-up days are entered (or withdraw that).
    Until then deadlines touching the year carry the 未录入 warning. Does not commit."""
    row = db.get(CalendarYear, year)
    if complete and row is None:
        db.add(CalendarYear(year=year, source="admin", updated_by=by))
    elif complete and row is not None:
        row.updated_by = by
    elif not complete and row is not None:
        db.delete(row)
    db.flush()


class WorkCalendar:
    """An in-memory snapshot of the calendar. Cheap to load (a few hundred rows); load a new
    one after an administrator's change.

    `unknown_years_touched` collects, over the object's life, the years without complete
    data that a computation had to fall back to Monday–Friday for; deadlines.compute_due
    reports the same per call, which is what callers should normally use."""

    def __init__(
        self,
        days: Mapping[dt.date, bool] | None = None,
        *,
        known_years: Iterable[int] = (),
        names: Mapping[dt.date, str] | None = None,
        tz: str = DEFAULT_TZ,
    ) -> None:
        self._days: dict[dt.date, bool] = dict(days or {})
        self._names: dict[dt.date, str] = dict(names or {})
        self.known_years: frozenset[int] = frozenset(known_years)
        self.tz = ZoneInfo(tz)
        self.unknown_years_touched: set[int] = set()

    @classmethod
    def load(cls, db: Session, *, tz: str = DEFAULT_TZ) -> WorkCalendar:
        rows = db.execute(select(CalendarDay.date, CalendarDay.is_workday, CalendarDay.name)).all()
        years = db.scalars(select(CalendarYear.year)).all()
        return cls(
            {r.date: r.is_workday for r in rows},
            known_years=years,
            names={r.date: r.name for r in rows if r.name},
            tz=tz,
        )

    @classmethod
    def from_package(
        cls, years: Iterable[int] = PACKAGE_YEARS, *, tz: str = DEFAULT_TZ
    ) -> WorkCalendar:
        """The calendar straight from chinesecalendar, without a database (tools, tests)."""
        days: dict[dt.date, bool] = {}
        names: dict[dt.date, str] = {}
        known: list[int] = []
        for year in years:
            try:
                rows = package_days(year)
            except NotImplementedError:
                continue
            known.append(year)
            for d in rows:
                days[d.date], names[d.date] = d.is_workday, d.name
        return cls(days, known_years=known, names=names, tz=tz)

    # -- single dates -------------------------------------------------------------------

    def is_workday(self, day: dt.date) -> bool:
        if isinstance(day, datetime):
            day = self.local_date(day)
        explicit = self._days.get(day)
        if explicit is not None:
            return explicit
        return day.weekday() < 5

    def day_name(self, day: dt.date) -> str | None:
        return self._names.get(day)

    def is_known(self, day: dt.date) -> bool:
        return day.year in self.known_years

    def next_workday(self, day: dt.date) -> dt.date:
        """The first working day on or after `day`."""
        for _ in range(MAX_NON_WORKING_RUN + 1):
            if self.is_workday(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"no working day within {MAX_NON_WORKING_RUN} days of {day}")

    # -- instants -----------------------------------------------------------------------

    def _zone(self, tz: str | None) -> ZoneInfo:
        return self.tz if tz is None else ZoneInfo(tz)

    def local_date(self, instant: datetime, tz: str | None = None) -> dt.date:
        require_aware(instant, "instant")
        return instant.astimezone(self._zone(tz)).date()

    def day_bounds(self, day: dt.date, tz: str | None = None) -> tuple[datetime, datetime]:
        """The UTC instants at which local date `day` starts and ends."""
        zone = self._zone(tz)
        start = datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(UTC)
        return start, end

    def working_windows(self, start: datetime, tz: str | None = None) -> Iterator[Window]:
        """Working time from `start` on, as UTC windows, one per working date. Endless."""
        require_aware(start, "start")
        day = self.local_date(start, tz)
        run = 0
        while True:
            if self.is_workday(day):
                run = 0
                lo, hi = self.day_bounds(day, tz)
                lo = max(lo, start)
                if hi > lo:
                    yield lo, hi
            else:
                run += 1
                if run > MAX_NON_WORKING_RUN:
                    raise ValueError(f"calendar has no working day for {run} days from {day}")
            day += timedelta(days=1)

    def add_working_days(self, start: datetime, days: float, tz: str | None = None) -> datetime:
        """The instant `days` working days after `start` (fractions allowed: 0.5 is 12 h of
        working-date time). From a non-working day counting begins at 00:00 of the next
        working day. Result in UTC."""
        amount = workdays_delta(days)
        start = start.astimezone(UTC)
        if amount == ZERO:
            return start
        due, _ = advance(self.working_windows(start, tz), amount)
        assert due is not None  # working windows never run out
        self._note_unknown(start, due, tz)
        return due

    def working_time_between(self, a: datetime, b: datetime, tz: str | None = None) -> timedelta:
        """Time inside working dates between a and b (negative when b is before a)."""
        require_aware(a, "a")
        require_aware(b, "b")
        if b < a:
            return -self.working_time_between(b, a, tz)
        self._note_unknown(a, b, tz)
        return measure(self.working_windows(a.astimezone(UTC), tz), b.astimezone(UTC))

    def working_days_between(self, a: datetime, b: datetime, tz: str | None = None) -> float:
        return self.working_time_between(a, b, tz) / timedelta(days=1)

    def unknown_years_between(
        self, a: datetime, b: datetime, tz: str | None = None
    ) -> frozenset[int]:
        """Years, among the local dates from a up to (not including) b, that lack complete
        calendar data. An interval ending exactly at local midnight does not touch the
        next date."""
        if b < a:
            a, b = b, a
        first = self.local_date(a, tz)
        last = self.local_date(b - timedelta(microseconds=1), tz) if b > a else first
        return frozenset(y for y in range(first.year, last.year + 1) if y not in self.known_years)

    def warnings_between(self, a: datetime, b: datetime, tz: str | None = None) -> list[str]:
        return [unknown_year_warning(y) for y in sorted(self.unknown_years_between(a, b, tz))]

    def _note_unknown(self, a: datetime, b: datetime, tz: str | None) -> None:
        self.unknown_years_touched.update(self.unknown_years_between(a, b, tz))


def workdays_delta(days: float) -> timedelta:
    """Working days as an amount of working-date time (one working day = 24 h)."""
    return timedelta(days=check_amount(days))


def check_amount(amount: float) -> float:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise TypeError(f"amount must be a number, got {type(amount).__name__}")
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"amount must be a finite number >= 0, got {amount!r}")
    return amount
