"""The alarm level of one sensor's metric, as a pure state machine (no database).

Each level is a debounced Schmitt trigger of its own: it switches on when the value has been
at or above `raise_at` for at least `raise_after`, and off when it has been below `clear_at`
(≤ raise_at) for at least `clear_after`. "Has been" is judged on reading timestamps: the
condition must hold on every reading from the first that met it to one at least the duration
later. The alarm level is the highest level switched on.

Two things stop flapping: a value moving inside the band [clear_at, raise_at) changes
nothing (hysteresis), and a brief excursion shorter than the duration changes nothing
(minimum duration). Readings older than the newest one already fed are ignored: an alarm
describes the present, while late data still counts toward rainfall and the record."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Rule:
    level: int
    raise_at: float
    clear_at: float
    raise_after: timedelta = timedelta(0)
    clear_after: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.clear_at > self.raise_at:
            raise ValueError(
                f"level {self.level}: clear_at {self.clear_at} above raise_at {self.raise_at}"
            )
        if self.raise_after < timedelta(0) or self.clear_after < timedelta(0):
            raise ValueError(f"level {self.level}: durations must not be negative")


@dataclass(slots=True)
class _Trigger:
    rule: Rule
    on: bool = False
    # When the condition that would flip this trigger started to hold; None while it does not.
    since: datetime | None = None

    def feed(self, ts: datetime, value: float) -> None:
        r = self.rule
        flipping = value < r.clear_at if self.on else value >= r.raise_at
        if not flipping:
            self.since = None
            return
        if self.since is None:
            self.since = ts
        if ts - self.since >= (r.clear_after if self.on else r.raise_after):
            self.on = not self.on
            self.since = None


@dataclass(slots=True)
class Tracker:
    """The level state of one (sensor, metric). Build it with the level of the open alarm so
    that a restarted consumer carries on where the last one stopped."""

    rules: tuple[Rule, ...]
    last_ts: datetime | None = None
    _triggers: list[_Trigger] = field(default_factory=list)

    @classmethod
    def build(
        cls, rules: Iterable[Rule], *, level: int = 0, last_ts: datetime | None = None
    ) -> Tracker:
        ordered = tuple(sorted(rules, key=lambda r: r.level))
        triggers = [_Trigger(r, on=r.level <= level) for r in ordered]
        return cls(ordered, last_ts, triggers)

    @property
    def level(self) -> int:
        return max((t.rule.level for t in self._triggers if t.on), default=0)

    def feed(self, ts: datetime, value: float) -> tuple[int, int] | None:
        """Take one reading; returns (old level, new level) when the level changed."""
        if self.last_ts is not None and ts <= self.last_ts:
            return None
        self.last_ts = ts
        before = self.level
        for trigger in self._triggers:
            trigger.feed(ts, value)
        after = self.level
        return (before, after) if after != before else None


def levels_over(rules: Sequence[Rule], series: Iterable[tuple[datetime, float]]) -> list[int]:
    """The level after each reading of a series (for tests and what-if charts)."""
    tracker = Tracker.build(rules)
    out = []
    for ts, value in series:
        tracker.feed(ts, value)
        out.append(tracker.level)
    return out
