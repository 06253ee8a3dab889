"""The ingestion core shared by the MQTT consumer and the HTTP batch endpoint: one call takes
a batch of raw readings into the caller's transaction — readings (de-duplicated by sensor
and timestamp), rain buckets, threshold checks and alarms, sensor health and dead letters —
in a fixed handful of multi-row statements whatever the batch size.

Judgement per reading, in this order:
  impossible (dead letter): unknown or inactive sensor, unit that does not convert, negative
    rain, value outside the sensor's [min_value, max_value];
  implausible (stored, flagged, left out of rain sums, alarms and warnings): more than
    `max_rate` mm of rain in one 5-minute bucket; a level moving faster than `max_rate` per
    minute from the last good reading;
  good: everything else.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.orm import Session

from watergrid.flood import alarms, fastsql, kinds, rain
from watergrid.flood.models import DeadLetter
from watergrid.flood.parse import RawReading, Rejected, dump_item
from watergrid.flood.schemas import IngestRejection, IngestResult
from watergrid.flood.state import IngestState, SensorInfo

READINGS = Counter("watergrid_flood_readings_total", "Sensor readings by outcome", ["outcome"])
DEAD_LETTERS = Counter(
    "watergrid_flood_dead_letters_total", "Refused sensor data by reason", ["reason"]
)
REJECTIONS_SHOWN = 100  # an HTTP answer lists this many refusals at most
RAIN_CACHE_MAX = 50_000  # 5-minute buckets kept in memory for the rain-rate check


@dataclass(slots=True)
class _Row:
    info: SensorInfo
    ts: datetime
    value: float
    seq: int | None
    flag: int = kinds.FLAG_OK
    bucket: datetime | None = None  # rain: end of its 5-minute bucket


@dataclass
class Outcome:
    """What a batch did; `notices` are the alarm changes hooks were told about."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    flagged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    notices: list[alarms.AlarmNotice] = field(default_factory=list)

    def as_result(self) -> IngestResult:
        return IngestResult(
            received=self.received,
            stored=self.stored,
            duplicates=self.duplicates,
            flagged=self.flagged,
            dead_letters=len(self.rejected),
            alarms_changed=len(self.notices),
            rejections=[
                IngestRejection(reason=r.reason, detail=r.detail, sensor_code=r.sensor_code)
                for r in self.rejected[:REJECTIONS_SHOWN]
            ],
        )


def ingest(
    db: Session,
    *,
    readings: Sequence[RawReading],
    rejected: Sequence[Rejected] = (),
    source: str,
    state: IngestState,
    now: datetime,
) -> Outcome:
    """Store a batch. Does not commit; if the caller rolls back it must call
    `state.invalidate()` (the memory would be ahead of the database)."""
    with state.lock:
        out = Outcome(
            received=len(readings) + sum(1 for r in rejected if r.reason not in _MESSAGE_LEVEL)
        )
        out.rejected.extend(rejected)
        rows = _accept(db, readings, state, out)
        # Trackers start from what was stored before this batch, so build them before
        # _flag moves the in-memory latest reading forward.
        state.load_trackers(db, {r.info for r in rows if r.info.rules})
        _flag(db, rows, state)
        inserted = _store(db, rows)
        out.stored = len(inserted)
        out.duplicates += len(rows) - len(inserted)
        out.flagged = sum(1 for r in inserted if r.flag)
        _add_rain(db, inserted, state)
        if len(state.rain) > RAIN_CACHE_MAX:
            # Late data for an evicted bucket reads it back from the database.
            state.forget_rain_before(now - timedelta(hours=1))
        out.notices = _check_alarms(db, inserted, state, now)
        _update_health(db, inserted, now)
        _dead_letter(db, out.rejected, source, now)
        alarms.run_hooks(db, out.notices)
        # Counted before the caller commits: a batch rolled back and retried counts twice,
        # which a rate graph survives; the tables are the record.
        _count(out)
        return out


# Refusals of a whole message before any reading could be read from it.
_MESSAGE_LEVEL = {"malformed_json", "bad_shape", "bad_topic", "payload_too_large"}


def _reject(out: Outcome, reason: str, detail: str, r: RawReading) -> None:
    out.rejected.append(Rejected(reason, detail, r.sensor_code, dump_item(r.item), r.topic))


def _accept(
    db: Session, readings: Sequence[RawReading], state: IngestState, out: Outcome
) -> list[_Row]:
    infos = state.resolve(db, {r.sensor_code for r in readings})
    seen: dict[tuple[int, datetime], _Row] = {}
    for r in readings:
        info = infos.get(r.sensor_code)
        if info is None:
            _reject(out, "unknown_sensor", f"no sensor {r.sensor_code}", r)
            continue
        if not info.active:
            _reject(out, "inactive_sensor", f"sensor {r.sensor_code} is inactive", r)
            continue
        value = r.value
        if r.unit is not None:
            factor = kinds.UNIT_FACTORS[info.metric].get(r.unit.strip().lower())
            if factor is None:
                _reject(out, "bad_unit", f"{r.unit!r} for {info.metric}", r)
                continue
            value *= factor
        if info.metric == "rainfall" and value < 0:
            _reject(out, "negative_rain", f"{value} mm", r)
            continue
        if (info.min_value is not None and value < info.min_value) or (
            info.max_value is not None and value > info.max_value
        ):
            _reject(out, "out_of_range", f"{value} outside [{info.min_value}, {info.max_value}]", r)
            continue
        key = (info.id, r.ts)
        if key in seen:  # the same reading twice in one batch: the first one stands
            out.duplicates += 1
            continue
        seen[key] = _Row(info, r.ts, value, r.seq)
    return [seen[k] for k in sorted(seen)]


def _flag(db: Session, rows: list[_Row], state: IngestState) -> None:
    """Mark implausible readings. Rows arrive sorted by sensor and time."""
    rain_keys: set[tuple[int, datetime]] = set()
    for r in rows:
        if r.info.metric == "rainfall":
            r.bucket = end = rain.bucket_end(r.ts)
            rain_keys.add((r.info.id, end))
    state.load_rain(db, rain_keys)
    state.load_runtime(db, {r.info.id for r in rows if r.info.metric != "rainfall"})
    pending: dict[tuple[int, datetime], float] = defaultdict(float)
    for r in rows:
        limit = r.info.max_rate
        if r.bucket is not None:
            key = (r.info.id, r.bucket)
            if limit is not None and state.rain[key] + pending[key] + r.value > limit:
                r.flag = kinds.FLAG_RAIN_RATE
            else:
                pending[key] += r.value
            continue
        rt = state.runtime[r.info.id]
        if rt.last_ts is not None and r.ts <= rt.last_ts:
            continue  # late: no neighbour in memory to judge a jump against
        rt.last_ts = r.ts
        if limit is not None and rt.ref_value is not None and rt.ref_ts is not None:
            minutes = max((r.ts - rt.ref_ts).total_seconds() / 60.0, 1.0)
            if abs(r.value - rt.ref_value) > limit * minutes:
                rt.jumps_in_row += 1
                r.flag = kinds.FLAG_LEVEL_JUMP
                if rt.jumps_in_row < kinds.JUMP_RESET_AFTER:
                    continue
        rt.ref_value, rt.ref_ts, rt.jumps_in_row = r.value, r.ts, 0


def _store(db: Session, rows: list[_Row]) -> list[_Row]:
    fresh = fastsql.insert_readings(db, [(r.info.id, r.ts, r.value, r.flag, r.seq) for r in rows])
    if fresh is None:
        return rows
    return [r for r in rows if (r.info.id, r.ts) in fresh]


def _add_rain(db: Session, rows: list[_Row], state: IngestState) -> None:
    five: dict[tuple[int, datetime], float] = defaultdict(float)
    for r in rows:
        if r.bucket is not None and not r.flag:
            five[(r.info.id, r.bucket)] += r.value
    if not five:
        return
    rain.add_buckets(db, five=five)
    for key, mm in five.items():
        state.rain[key] = state.rain.get(key, 0.0) + mm


def _check_alarms(
    db: Session, rows: list[_Row], state: IngestState, now: datetime
) -> list[alarms.AlarmNotice]:
    watched = [r for r in rows if r.info.rules and not r.flag]
    notices: list[alarms.AlarmNotice] = []
    for r in watched:
        change = state.trackers[r.info.id].feed(r.ts, r.value)
        if change is None or r.info.asset_id is None:
            continue
        notice = alarms.apply_level_change(
            db,
            asset_id=r.info.asset_id,
            sensor_id=r.info.id,
            metric=r.info.metric,
            new_level=change[1],
            value=r.value,
            reading_at=r.ts,
            subdistrict_id=r.info.subdistrict_id,
            grid_id=r.info.grid_id,
            now=now,
        )
        if notice is not None:
            notices.append(notice)
    if notices:
        db.flush()
    return notices


def _update_health(db: Session, rows: list[_Row], now: datetime) -> None:
    """Last seen, newest reading and flag counts: one row per sensor, whatever the number
    of readings."""
    per: dict[int, list[Any]] = {}
    for r in rows:  # sorted by sensor, then time: the last row of a sensor is its newest
        h = per.get(r.info.id)
        if h is None:
            h = per[r.info.id] = [r.info.id, r.ts, r.value, 0, 0]
        h[1], h[2] = r.ts, r.value
        if r.flag:
            h[3] += 1
            h[4] = r.flag
    fastsql.update_health(db, now=now, rows=[tuple(per[k]) for k in sorted(per)])


def _dead_letter(db: Session, rejected: list[Rejected], source: str, now: datetime) -> None:
    if not rejected:
        return
    db.execute(
        DeadLetter.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                "received_at": now,
                "source": source,
                "topic": r.topic[:300],
                "sensor_code": r.sensor_code,
                "reason": r.reason,
                "detail": r.detail[:500],
                "payload": r.payload,
            }
            for r in rejected
        ],
    )


def _count(out: Outcome) -> None:
    READINGS.labels("stored").inc(out.stored - out.flagged)
    READINGS.labels("flagged").inc(out.flagged)
    READINGS.labels("duplicate").inc(out.duplicates)
    by_reason: dict[str, int] = defaultdict(int)
    for r in out.rejected:
        by_reason[r.reason] += 1
    for reason, n in by_reason.items():
        DEAD_LETTERS.labels(reason).inc(n)
