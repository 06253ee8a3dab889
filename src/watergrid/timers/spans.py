"""Arithmetic on streams of half-open time windows [start, end) in UTC.

A deadline is "the earliest instant by which a given amount of counted time has passed".
What counts differs (every hour; only hours inside working dates; either of those minus
suspensions), so the unit decides the windows and these few functions walk them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

# end None: the window never closes.
Window = tuple[datetime, datetime | None]
# resumed_at None: still suspended.
Interval = tuple[datetime, datetime | None]

ZERO = timedelta(0)


def require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got naive {value.isoformat()})")


def advance(windows: Iterable[Window], amount: timedelta) -> tuple[datetime | None, timedelta]:
    """The earliest instant at which `amount` (> 0) of window time has been used, and ZERO;
    or (None, what is left) when the windows stop first (an open suspension)."""
    if amount <= ZERO:
        raise ValueError("advance needs a positive amount")
    remaining = amount
    for start, end in windows:
        # `>=` gives the earliest instant: a deadline that uses up a working day exactly is
        # that day's 24:00, not the start of the next working day.
        if end is None or end - start >= remaining:
            return start + remaining, ZERO
        remaining -= end - start
    return None, remaining


def measure(windows: Iterable[Window], until: datetime) -> timedelta:
    """Window time before `until`."""
    total = ZERO
    for start, end in windows:
        if start >= until:
            break
        stop = until if end is None or end > until else end
        total += stop - start
    return total


def merge(intervals: Iterable[Interval], *, not_before: datetime | None = None) -> list[Interval]:
    """Sorted, non-overlapping copies of `intervals`, clipped to start no earlier than
    `not_before`; empty ones dropped. Overlapping suspensions count once."""
    cleaned: list[Interval] = []
    for begin, end in intervals:
        require_aware(begin, "suspended_at")
        if end is not None:
            require_aware(end, "resumed_at")
            if end < begin:
                raise ValueError(f"resumed_at {end.isoformat()} is before {begin.isoformat()}")
        if not_before is not None:
            if end is not None and end <= not_before:
                continue
            begin = max(begin, not_before)
        if end is not None and end <= begin:
            continue
        cleaned.append((begin, end))
    cleaned.sort(key=lambda iv: iv[0])
    out: list[Interval] = []
    for begin, end in cleaned:
        if out:
            last_begin, last_end = out[-1]
            if last_end is None:
                break  # an open interval swallows everything after it
            if begin <= last_end:
                out[-1] = (last_begin, None if end is None else max(last_end, end))
                continue
        out.append((begin, end))
    return out


def subtract(windows: Iterable[Window], holes: Sequence[Interval]) -> Iterator[Window]:
    """`windows` with `holes` (from merge()) cut out. Ends at an open hole."""
    i = 0
    for start, end in windows:
        cur = start
        while True:
            # Skip holes that closed before the cursor.
            while i < len(holes):
                closes = holes[i][1]
                if closes is None or closes > cur:
                    break
                i += 1
            if i == len(holes):
                yield cur, end
                break
            h_start, h_end = holes[i]
            if end is not None and h_start >= end:
                yield cur, end
                break
            if h_start > cur:
                yield cur, h_start
            if h_end is None:
                return
            cur = max(cur, h_end)
            if end is not None and cur >= end:
                break
