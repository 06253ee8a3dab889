"""Rolling accumulations kept in buckets equal a recomputation from the stored readings,
whatever the order and repetition of the data; area means, series and window arithmetic."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.flood.helpers import GONGMING, GUANGMING, put, raw, sensor

from watergrid.flood import kinds, rain
from watergrid.flood.models import Reading
from watergrid.flood.state import IngestState
from watergrid.geo import service as geo_service

M = timedelta(minutes=1)


def recompute(db: Session, sensor_id: int, now: datetime, hours: int) -> float:
    """The definition: good readings stamped within (E − h, E], E the end of now's bucket."""
    end = rain.ceil_to(now, kinds.BUCKET)
    rows = db.execute(
        select(Reading.value).where(
            Reading.sensor_id == sensor_id,
            Reading.flag == 0,
            Reading.ts > end - timedelta(hours=hours),
            Reading.ts <= end,
        )
    ).scalars()
    return round(sum(rows), 3)


def test_windows_match_a_recomputation(sf: sessionmaker[Session], tag: str, t0: datetime) -> None:
    rng = random.Random(tag)
    with sf() as db:
        ids = [sensor(db, f"RG-{tag}-{k}", "rain_gauge", at=GONGMING).id for k in range(3)]
        db.commit()
    start = t0 - timedelta(hours=30)
    readings = [
        raw(
            f"RG-{tag}-{k}",
            start + timedelta(seconds=rng.randrange(0, 31 * 3600)),
            round(rng.uniform(0, 4), 1),
        )
        for k in range(3)
        for _ in range(400)
    ]
    rng.shuffle(readings)
    readings += rng.sample(readings, 150)  # redelivered
    now = t0 + timedelta(hours=1)
    states = [IngestState(), IngestState()]  # two writers with separate memories
    for i in range(0, len(readings), 97):
        put(sf, readings[i : i + 97], state=states[i % 2], now=now)
    with sf() as db:
        for at in (
            t0 - timedelta(hours=7, minutes=3),
            t0 - timedelta(minutes=1),
            t0,
            t0 + timedelta(minutes=42),
        ):
            sums = rain.window_sums(db, sensor_ids=ids, now=at)
            for sid in ids:
                for h in kinds.RAIN_WINDOWS_H:
                    assert sums[sid][h] == pytest.approx(recompute(db, sid, at, h), abs=1e-6), (
                        at,
                        h,
                    )


def test_area_mean_over_fresh_gauges(fresh_sf: sessionmaker[Session], t0: datetime) -> None:
    sf = fresh_sf
    with sf() as db:
        a = sensor(db, "RG-A", "rain_gauge", at=GONGMING)
        sensor(db, "RG-B", "rain_gauge", at=(GONGMING[0] + 0.005, GONGMING[1]))
        sensor(db, "RG-C", "rain_gauge", at=(GONGMING[0] - 0.005, GONGMING[1]))  # silent: stale
        sensor(db, "RG-D", "rain_gauge", at=GUANGMING)
        gongming = geo_service.get_or_404(db, code="440311002").id
        assert a.subdistrict_id == gongming
        db.commit()
    state = IngestState()
    put(
        sf,
        [raw("RG-A", t0 + i * 5 * M, 2.0) for i in range(1, 13)]
        + [raw("RG-B", t0 + i * 5 * M, 1.0) for i in range(1, 13)]
        + [raw("RG-D", t0 + i * 5 * M, 0.5) for i in range(1, 13)],
        state=state,
        now=t0 + 60 * M,
    )
    put(sf, [raw("RG-C", t0 - 5 * 60 * M, 30.0)], state=state, now=t0 - 5 * 60 * M)
    with sf() as db:
        areas = {x.subdistrict_code: x for x in rain.subdistrict_accumulations(db, now=t0 + 60 * M)}
        gm = areas["440311002"]
        assert (gm.gauges_total, gm.gauges_used) == (3, 2)
        assert gm.mean_mm["1h"] == pytest.approx(
            18.0
        )  # (24 + 12) / 2; the stale gauge's 30 mm left out
        assert gm.max_mm["1h"] == pytest.approx(24.0)
        assert areas["440311001"].mean_mm["1h"] == pytest.approx(6.0)
        assert areas["440311004"].mean_mm["1h"] is None  # no gauge at all: unknown, not dry
        gauges = {g.sensor_code: g for g in rain.gauge_accumulations(db, now=t0 + 60 * M)}
        assert gauges["RG-C"].stale and gauges["RG-A"].mm["3h"] == pytest.approx(24.0)
        series = rain.subdistrict_series(
            db, subdistrict_id=gongming, start=t0, end=t0 + 60 * M, step="5min"
        )
        assert series.gauges == 3  # history averages over every active gauge of the area
        assert [p.mm for p in series.points[1:]] == [pytest.approx(1.0)] * 12
        one = rain.gauge_series(
            db, sensor=db.get(type(a), a.id), start=t0 - 2 * 60 * M, end=t0 + 60 * M, step="1h"
        )  # type: ignore[arg-type]
        assert sum(p.mm for p in one.points) == pytest.approx(24.0)  # spread over clock hours
        assert one.points[-1].cumulative_mm == pytest.approx(24.0)
        assert all(p.end_at.minute == 0 for p in one.points)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**7), st.sampled_from(kinds.RAIN_WINDOWS_H))
def test_window_parts_tile_the_window_exactly(offset_5min: int, hours: int) -> None:
    end = datetime(2020, 1, 1, tzinfo=UTC) + offset_5min * kinds.BUCKET
    hour_range, five_ranges = rain._window_parts(end, hours)
    covered = []
    if hour_range:
        lo, hi = hour_range
        assert lo.minute == hi.minute == 0
        covered.append((lo, hi))
    covered += [r for r in five_ranges if r[0] < r[1]]
    covered.sort()
    assert covered[0][0] == end - timedelta(hours=hours) and covered[-1][1] == end
    for (_, a_hi), (b_lo, _) in zip(covered, covered[1:], strict=False):
        assert a_hi == b_lo  # no gap, no overlap
    assert sum(((hi - lo) // kinds.BUCKET for lo, hi in five_ranges if lo < hi), 0) <= 22


def test_bucket_ends() -> None:
    t = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert rain.bucket_end(t) == t  # a reading stamped 12:00 holds the rain of 11:55–12:00
    assert rain.bucket_end(t + timedelta(microseconds=1)) == t + 5 * M
    assert rain.bucket_end(t + 4 * M) == t + 5 * M
    assert rain.hour_end(t + M) == t + 60 * M
