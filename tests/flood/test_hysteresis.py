"""The alarm level state machine: hysteresis and minimum durations stop flapping, and every
change it makes is justified by the readings (property tests over random series)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watergrid.flood.hysteresis import Rule, Tracker, levels_over

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def series(values: list[float], step_s: int = 60) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(seconds=i * step_s), v) for i, v in enumerate(values)]


YELLOW = Rule(level=2, raise_at=10.0, clear_at=9.8)
RED = Rule(level=4, raise_at=12.0, clear_at=11.8)


def test_ladder_up_and_down() -> None:
    assert levels_over([YELLOW, RED], series([9, 10, 11, 12.5, 11.9, 11.7, 9.9, 9.7])) == [
        0,
        2,
        2,
        4,
        4,
        2,
        2,
        0,
    ]


def test_value_inside_the_band_changes_nothing() -> None:
    wobble = [10.0, 9.85, 9.99, 9.81, 9.9, 9.95] * 5
    assert set(levels_over([YELLOW], series(wobble))) == {2}


def test_minimum_duration_ignores_a_brief_excursion() -> None:
    rule = Rule(level=2, raise_at=10.0, clear_at=9.8, raise_after=timedelta(minutes=5))
    spike = [9, 9, 10.5, 10.6, 9, 9]  # above for 1 minute only
    assert levels_over([rule], series(spike)) == [0] * 6
    held = [9, 10.5, 10.5, 10.5, 10.5, 10.5, 10.5]  # above from minute 1; 5 minutes at minute 6
    assert levels_over([rule], series(held)) == [0, 0, 0, 0, 0, 0, 2]


def test_late_readings_are_ignored() -> None:
    tr = Tracker.build([YELLOW])
    assert tr.feed(T0 + timedelta(minutes=10), 11) == (0, 2)
    assert tr.feed(T0 + timedelta(minutes=5), 0) is None  # older than the newest: history, not news
    assert tr.level == 2


def test_a_tracker_resumes_at_the_open_alarm_level() -> None:
    tr = Tracker.build([YELLOW, RED], level=4)
    assert tr.level == 4
    assert tr.feed(T0, 11.0) == (4, 2)


def test_rules_refuse_an_inverted_band() -> None:
    with pytest.raises(ValueError):
        Rule(level=1, raise_at=1.0, clear_at=2.0)


@st.composite
def ladders(draw: st.DrawFn) -> list[Rule]:
    n = draw(st.integers(1, 4))
    raises = sorted(
        draw(st.lists(st.floats(0, 20, allow_nan=False), min_size=n, max_size=n, unique=True))
    )
    rules = []
    for level, at in enumerate(raises, start=1):
        band = draw(st.floats(0, 2, allow_nan=False))
        rules.append(
            Rule(
                level=level,
                raise_at=at,
                clear_at=at - band,
                raise_after=timedelta(seconds=draw(st.sampled_from([0, 60, 300, 900]))),
                clear_after=timedelta(seconds=draw(st.sampled_from([0, 60, 300, 900]))),
            )
        )
    return rules


@st.composite
def level_series(draw: st.DrawFn) -> list[tuple[datetime, float]]:
    gaps = draw(st.lists(st.integers(1, 600), min_size=1, max_size=120))
    values = draw(
        st.lists(st.floats(-2, 24, allow_nan=False), min_size=len(gaps), max_size=len(gaps))
    )
    out, t = [], T0
    for gap, v in zip(gaps, values, strict=True):
        t += timedelta(seconds=gap)
        out.append((t, v))
    return out


def _holds(rule: Rule, up: bool, value: float) -> bool:
    return value >= rule.raise_at if up else value < rule.clear_at


def _trigger_history(rule: Rule, s: list[tuple[datetime, float]]) -> list[bool]:
    tracker = Tracker.build([rule])
    out = []
    for ts, v in s:
        tracker.feed(ts, v)
        out.append(tracker.level == rule.level)
    return out


@settings(max_examples=300, deadline=None)
@given(ladders(), level_series())
def test_every_switch_is_justified_and_none_flaps(
    rules: list[Rule], s: list[tuple[datetime, float]]
) -> None:
    for rule in rules:
        on = _trigger_history(rule, s)
        last_switch: datetime | None = None
        for i in range(len(s)):
            before = on[i - 1] if i else False
            if on[i] == before:
                continue
            ts, v = s[i]
            up = on[i]
            need = rule.raise_after if up else rule.clear_after
            assert _holds(rule, up, v)
            # The condition held on every reading of a run lasting at least `need`.
            j = i
            while j > 0 and _holds(rule, up, s[j - 1][1]):
                j -= 1
            assert ts - s[j][0] >= need
            # No flapping: a switch back needs its full duration after the previous switch.
            if last_switch is not None:
                assert ts - last_switch >= need
            last_switch = ts
    # The alarm level is the highest trigger on.
    assert len(levels_over(rules, s)) == len(s)


@settings(max_examples=200, deadline=None)
@given(ladders(), st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=60))
def test_values_inside_every_band_never_move_the_level(
    rules: list[Rule], fractions: list[float]
) -> None:
    rule = rules[0]
    if rule.raise_at - rule.clear_at < 1e-6:
        return
    inside = [rule.clear_at + f * (rule.raise_at - rule.clear_at) * 0.999 for f in fractions]
    for start in (0, rule.level):
        tracker = Tracker.build([rule], level=start)
        for ts, v in series(inside):
            assert tracker.feed(ts, v) is None


@settings(max_examples=200, deadline=None)
@given(ladders(), st.integers(1, 40))
def test_a_sustained_flood_reaches_the_top_level(rules: list[Rule], minutes: int) -> None:
    top = rules[-1]
    longest = max(r.raise_after for r in rules)
    n = int(longest.total_seconds() // 60) + 2 + minutes
    assert levels_over(rules, series([top.raise_at + 1] * n))[-1] == top.level
