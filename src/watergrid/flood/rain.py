"""Rainfall: 5-minute and hourly buckets per gauge, kept incrementally by ingestion, and the
rolling 1/3/6/12/24 h accumulations and chart series read from them.

A reading stamped ts carries the rain of the interval ending at ts, so it goes to the bucket
ending at ceil(ts) (kinds.BUCKET) and the hour ending at ceil(ts) (kinds.HOUR). Buckets only
ever grow by the rain of newly stored readings, in any order, so late and out-of-order data
land where they belong and a duplicate (refused by the readings' key) adds nothing.

A rolling window of h hours ending at `now` covers the buckets ending in (E − h, E], where E
is the end of the bucket holding `now`: its whole hours are read from the hourly table and
only the ragged ends from the 5-minute table, so one window reads at most ~46 rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from watergrid.flood import fastsql, kinds
from watergrid.flood.models import RainBucket, RainHour, Sensor
from watergrid.flood.schemas import AreaRain, GaugeRain, RainPoint, RainSeries
from watergrid.geo import service as geo_service

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STEPS = {"5min": kinds.BUCKET, "1h": kinds.HOUR}
MAX_SERIES_POINTS = 2000


def ceil_to(ts: datetime, step: timedelta) -> datetime:
    q, r = divmod(ts - EPOCH, step)
    return EPOCH + (q + (1 if r else 0)) * step


_BUCKET_S = int(kinds.BUCKET.total_seconds())
_HOUR_S = int(kinds.HOUR.total_seconds())
_ends: dict[int, datetime] = {}


def _end(ts: datetime, step_s: int) -> datetime:
    # The hot path's version of ceil_to: integer arithmetic, and one datetime object per
    # bucket shared by every reading in it.
    d = ts - EPOCH
    q, r = divmod(d.days * 86400 + d.seconds, step_s)
    if r or d.microseconds:
        q += 1
    sec = q * step_s
    end = _ends.get(sec)
    if end is None:
        if len(_ends) > 100_000:
            _ends.clear()
        end = _ends[sec] = EPOCH + timedelta(seconds=sec)
    return end


def bucket_end(ts: datetime) -> datetime:
    """End of the 5-minute bucket a reading stamped `ts` belongs to."""
    return _end(ts, _BUCKET_S)


def hour_end(ts: datetime) -> datetime:
    return _end(ts, _HOUR_S)


def floor_to(ts: datetime, step: timedelta) -> datetime:
    return EPOCH + ((ts - EPOCH) // step) * step


# -- writing (called by ingestion) --------------------------------------------------------


def add_buckets(db: Session, *, five: Mapping[tuple[int, datetime], float]) -> None:
    """Add rain per (sensor id, 5-minute bucket end) to the 5-minute and hourly tables."""
    hour: dict[tuple[int, datetime], float] = defaultdict(float)
    for (sid, end), mm in five.items():
        # A clock hour is made of whole buckets, so a bucket's hour is that of its readings.
        hour[(sid, hour_end(end))] += mm
    # Sorted so two writers touching the same buckets lock them in the same order.
    fastsql.add_rain(
        db, RainBucket.__tablename__, [(s, e, v) for (s, e), v in sorted(five.items())]
    )
    fastsql.add_rain(db, RainHour.__tablename__, [(s, e, v) for (s, e), v in sorted(hour.items())])


def add_rain(
    db: Session, *, amounts: Iterable[tuple[int, datetime, float]]
) -> dict[tuple[int, datetime], float]:
    """Add (sensor id, reading ts, mm) to the buckets. Returns the mm added per 5-minute
    bucket."""
    five: dict[tuple[int, datetime], float] = defaultdict(float)
    for sid, ts, mm in amounts:
        five[(sid, bucket_end(ts))] += mm
    add_buckets(db, five=five)
    return dict(five)


# -- rolling windows ------------------------------------------------------------------------


def _window_parts(
    end: datetime, hours: int
) -> tuple[tuple[datetime, datetime] | None, list[tuple[datetime, datetime]]]:
    """(hourly range, 5-minute ranges) covering (end − hours, end], each as (lo, hi] on
    bucket ends. `end` is a 5-minute bucket end."""
    start = end - timedelta(hours=hours)
    lo_h, hi_h = ceil_to(start, kinds.HOUR), floor_to(end, kinds.HOUR)
    if lo_h >= hi_h:
        return None, [(start, end)]
    return (lo_h, hi_h), [(start, lo_h), (hi_h, end)]


def window_sums(
    db: Session,
    *,
    sensor_ids: Sequence[int],
    now: datetime,
    windows: Sequence[int] = kinds.RAIN_WINDOWS_H,
) -> dict[int, dict[int, float]]:
    """Rain per gauge over each rolling window ending at `now` (hours → mm)."""
    out: dict[int, dict[int, float]] = {sid: dict.fromkeys(windows, 0.0) for sid in sensor_ids}
    if not sensor_ids:
        return out
    end = ceil_to(now, kinds.BUCKET)
    parts = {h: _window_parts(end, h) for h in windows}
    oldest = min((p[0][0] for p in parts.values() if p[0]), default=end)
    hourly = db.execute(
        select(RainHour.sensor_id, RainHour.end_at, RainHour.mm).where(
            RainHour.sensor_id.in_(sensor_ids), RainHour.end_at > oldest, RainHour.end_at <= end
        )
    ).all()
    ranges = {r for p in parts.values() for r in p[1] if r[0] < r[1]}
    five = (
        db.execute(
            select(RainBucket.sensor_id, RainBucket.end_at, RainBucket.mm).where(
                RainBucket.sensor_id.in_(sensor_ids),
                or_(*(and_(RainBucket.end_at > lo, RainBucket.end_at <= hi) for lo, hi in ranges)),
            )
        ).all()
        if ranges
        else []
    )
    for h, (hour_range, five_ranges) in parts.items():
        for sid, at, mm in hourly:
            if hour_range and hour_range[0] < at <= hour_range[1]:
                out[sid][h] += mm
        for sid, at, mm in five:
            if any(lo < at <= hi for lo, hi in five_ranges):
                out[sid][h] += mm
    return {sid: {h: round(v, 3) for h, v in w.items()} for sid, w in out.items()}


def _is_stale(s: Sensor, now: datetime) -> bool:
    return s.last_seen_at is None or now - s.last_seen_at > timedelta(minutes=s.stale_after_min)


def _gauges(db: Session, *, subdistrict_id: int | None = None) -> list[Sensor]:
    q = select(Sensor).where(Sensor.kind == "rain_gauge", Sensor.active.is_(True))
    if subdistrict_id is not None:
        q = q.where(Sensor.subdistrict_id == subdistrict_id)
    return list(db.scalars(q.order_by(Sensor.code)))


def gauge_accumulations(
    db: Session, *, now: datetime, subdistrict_id: int | None = None
) -> list[GaugeRain]:
    """Rolling accumulations of every active rain gauge (optionally of one subdistrict)."""
    gauges = _gauges(db, subdistrict_id=subdistrict_id)
    sums = window_sums(db, sensor_ids=[g.id for g in gauges], now=now)
    codes = _area_codes(db)
    return [
        GaugeRain(
            sensor_code=g.code,
            name_zh=g.name_zh,
            subdistrict_code=codes.get(g.subdistrict_id) if g.subdistrict_id else None,
            lon=g.lon,
            lat=g.lat,
            stale=_is_stale(g, now),
            last_seen_at=g.last_seen_at,
            mm={f"{h}h": v for h, v in sums[g.id].items()},
        )
        for g in gauges
    ]


def subdistrict_accumulations(db: Session, *, now: datetime) -> list[AreaRain]:
    """Area mean of the rolling accumulations per subdistrict: the arithmetic mean over its
    active gauges that are not stale (a silent gauge would otherwise read as dry). The
    wettest gauge is given too, since a storm cell can hit one gauge only."""
    gauges = _gauges(db)
    sums = window_sums(db, sensor_ids=[g.id for g in gauges], now=now)
    by_area: dict[int, list[Sensor]] = defaultdict(list)
    for g in gauges:
        if g.subdistrict_id is not None:
            by_area[g.subdistrict_id].append(g)
    out = []
    for area in geo_service.get_all(db, kind="subdistrict"):
        members = by_area.get(area.id, [])
        fresh = [g for g in members if not _is_stale(g, now)]
        mean = {
            f"{h}h": round(sum(sums[g.id][h] for g in fresh) / len(fresh), 2) if fresh else None
            for h in kinds.RAIN_WINDOWS_H
        }
        peak = {
            f"{h}h": max((sums[g.id][h] for g in fresh), default=None) for h in kinds.RAIN_WINDOWS_H
        }
        out.append(
            AreaRain(
                subdistrict_code=area.code,
                name_zh=area.name_zh,
                gauges_total=len(members),
                gauges_used=len(fresh),
                mean_mm=mean,
                max_mm=peak,
            )
        )
    return out


# -- chart series ---------------------------------------------------------------------------


def _series_bounds(
    start: datetime, end: datetime, step: str
) -> tuple[timedelta, datetime, datetime]:
    if step not in STEPS:
        raise ValueError(f"step must be one of {sorted(STEPS)}")
    size = STEPS[step]
    lo, hi = ceil_to(start, size), ceil_to(end, size)
    if (hi - lo) / size > MAX_SERIES_POINTS:
        lo = hi - size * MAX_SERIES_POINTS
    return size, lo, hi


def _fill(
    size: timedelta, lo: datetime, hi: datetime, values: dict[datetime, float]
) -> list[RainPoint]:
    points, total, at = [], 0.0, lo
    while at <= hi:
        mm = round(values.get(at, 0.0), 3)
        total += mm
        points.append(RainPoint(end_at=at, mm=mm, cumulative_mm=round(total, 3)))
        at += size
    return points


def _bucket_rows(
    db: Session, *, sensor_ids: list[int], size: timedelta, lo: datetime, hi: datetime
) -> list[tuple[int, datetime, float]]:
    table = RainBucket if size == kinds.BUCKET else RainHour
    return [
        (sid, at, mm)
        for sid, at, mm in db.execute(
            select(table.sensor_id, table.end_at, table.mm).where(
                table.sensor_id.in_(sensor_ids), table.end_at >= lo, table.end_at <= hi
            )
        )
    ]


def gauge_series(
    db: Session, *, sensor: Sensor, start: datetime, end: datetime, step: str = "1h"
) -> RainSeries:
    """Rain per bucket of one gauge over [start, end], zeros where nothing fell (or nothing
    was received), with the running total for a cumulative line."""
    size, lo, hi = _series_bounds(start, end, step)
    values = {
        at: mm for _, at, mm in _bucket_rows(db, sensor_ids=[sensor.id], size=size, lo=lo, hi=hi)
    }
    return RainSeries(
        key=sensor.code,
        name_zh=sensor.name_zh,
        step=step,
        gauges=1,
        points=_fill(size, lo, hi, values),
    )


def subdistrict_series(
    db: Session, *, subdistrict_id: int, start: datetime, end: datetime, step: str = "1h"
) -> RainSeries:
    """Area-mean rain per bucket over a subdistrict's active gauges (a bucket a gauge has
    no row for counts as dry for that gauge)."""
    area = next(a for a in geo_service.get_all(db, kind="subdistrict") if a.id == subdistrict_id)
    gauges = _gauges(db, subdistrict_id=subdistrict_id)
    size, lo, hi = _series_bounds(start, end, step)
    totals: dict[datetime, float] = defaultdict(float)
    if gauges:
        for _, at, mm in _bucket_rows(
            db, sensor_ids=[g.id for g in gauges], size=size, lo=lo, hi=hi
        ):
            totals[at] += mm / len(gauges)
    return RainSeries(
        key=area.code,
        name_zh=area.name_zh,
        step=step,
        gauges=len(gauges),
        points=_fill(size, lo, hi, totals),
    )


def _area_codes(db: Session) -> dict[int, str]:
    return {a.id: a.code for a in geo_service.get_all(db, kind="subdistrict")}
