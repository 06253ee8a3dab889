"""Where "now" comes from. Code that decides what is due takes `now` as an argument; loops
take a Clock, so tests move time forward instead of sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from watergrid.timers.spans import require_aware


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to. Safe to move from one thread while a sweeper
    thread reads it."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None:
            require_aware(start, "start")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        require_aware(when, "when")
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, /, **parts: float) -> datetime:
        """Move forward by `delta` or by timedelta keyword parts (minutes=5); returns the new
        time. Moving backwards is refused: nothing in the timers expects time to run back."""
        step = (delta or timedelta(0)) + timedelta(**parts)
        if step < timedelta(0):
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += step
            return self._now
