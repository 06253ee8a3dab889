"""What ingestion keeps in memory between batches, so a batch of thousands of readings costs a
handful of statements: the sensor directory (code → id, kind, limits, alarm rules), each
sensor's latest reading (for level-jump checks), the alarm trackers and recent rain buckets.

Everything here is a cache of the database. It is rebuilt from the database on start, after
a rolled-back batch (`invalidate`), and the directory every `refresh` seconds so changes
made through the API reach a running consumer."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from watergrid.flood import kinds
from watergrid.flood.hysteresis import Rule, Tracker
from watergrid.flood.models import Alarm, AlarmThreshold, RainBucket, Sensor


@dataclass(frozen=True, slots=True)
class SensorInfo:
    id: int
    code: str
    kind: str
    metric: str
    active: bool
    asset_id: int | None
    subdistrict_id: int | None
    grid_id: int | None
    min_value: float | None
    max_value: float | None
    max_rate: float | None
    rules: tuple[Rule, ...]  # alarm rules of its asset for its metric; empty for none


@dataclass(slots=True)
class Runtime:
    """A sensor's latest reading and the reference a level jump is judged against."""

    last_ts: datetime | None = None
    ref_value: float | None = None
    ref_ts: datetime | None = None
    jumps_in_row: int = 0


@dataclass
class IngestState:
    refresh: float = 60.0
    directory: dict[str, SensorInfo] = field(default_factory=dict)
    runtime: dict[int, Runtime] = field(default_factory=dict)
    trackers: dict[int, Tracker] = field(default_factory=dict)
    rain: dict[tuple[int, datetime], float] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    lock: threading.RLock = field(default_factory=threading.RLock)
    loaded_at: float = -1e9

    # -- directory ----------------------------------------------------------------------

    def resolve(self, db: Session, codes: Iterable[str]) -> dict[str, SensorInfo]:
        """The known sensors among `codes`; unknown codes are looked up in the database at
        once (a sensor created a second ago must not be refused)."""
        if time.monotonic() - self.loaded_at > self.refresh:
            self.reload(db)
        wanted = set(codes)
        missing = wanted - self.directory.keys()
        if missing:
            self._load(db, codes=missing)
        return {c: self.directory[c] for c in wanted if c in self.directory}

    def reload(self, db: Session) -> None:
        old = self.directory
        self.directory = {}
        self._load(db, codes=None)
        self.loaded_at = time.monotonic()
        # A tracker built on rules that have since changed would judge with stale limits.
        for code, info in self.directory.items():
            before = old.get(code)
            if before is not None and before.rules != info.rules:
                self.trackers.pop(info.id, None)

    def _load(self, db: Session, *, codes: set[str] | None) -> None:
        q = select(Sensor)
        if codes is not None:
            q = q.where(Sensor.code.in_(sorted(codes)))
        sensors = list(db.scalars(q))
        asset_ids = {s.asset_id for s in sensors if s.asset_id is not None}
        rules: dict[tuple[int, str], list[Rule]] = {}
        if asset_ids:
            for t in db.scalars(
                select(AlarmThreshold).where(AlarmThreshold.asset_id.in_(asset_ids))
            ):
                rules.setdefault((t.asset_id, t.metric), []).append(
                    Rule(
                        level=t.level,
                        raise_at=t.raise_at,
                        clear_at=t.clear_at,
                        raise_after=timedelta(seconds=t.raise_after_s),
                        clear_after=timedelta(seconds=t.clear_after_s),
                    )
                )
        for s in sensors:
            metric = kinds.SENSOR_METRIC[s.kind]
            own = rules.get((s.asset_id, metric), []) if s.asset_id is not None else []
            self.directory[s.code] = SensorInfo(
                id=s.id,
                code=s.code,
                kind=s.kind,
                metric=metric,
                active=s.active,
                asset_id=s.asset_id,
                subdistrict_id=s.subdistrict_id,
                grid_id=s.grid_id,
                min_value=s.min_value,
                max_value=s.max_value,
                max_rate=s.max_rate,
                rules=tuple(sorted(own, key=lambda r: r.level)),
            )
            if s.id not in self.runtime:
                self.runtime[s.id] = Runtime(
                    last_ts=s.last_reading_at, ref_value=s.last_value, ref_ts=s.last_reading_at
                )

    # -- per-sensor caches --------------------------------------------------------------

    def load_runtime(self, db: Session, sensor_ids: set[int]) -> None:
        missing = sensor_ids - self.runtime.keys()
        if not missing:
            return
        rows = db.execute(
            select(Sensor.id, Sensor.last_reading_at, Sensor.last_value).where(
                Sensor.id.in_(missing)
            )
        )
        for sid, ts, value in rows:
            self.runtime[sid] = Runtime(last_ts=ts, ref_value=value, ref_ts=ts)

    def load_trackers(self, db: Session, infos: Iterable[SensorInfo]) -> None:
        """Trackers for sensors with alarm rules, starting at their open alarm's level."""
        need = {i.id: i for i in infos if i.rules and i.id not in self.trackers}
        if not need:
            return
        open_levels = dict(
            db.execute(
                select(Alarm.sensor_id, Alarm.level).where(
                    Alarm.sensor_id.in_(need), Alarm.state.in_(kinds.OPEN_STATES)
                )
            ).all()
        )
        for sid, info in need.items():
            rt = self.runtime.get(sid)
            self.trackers[sid] = Tracker.build(
                info.rules, level=int(open_levels.get(sid, 0)), last_ts=rt.last_ts if rt else None
            )

    def load_rain(self, db: Session, keys: set[tuple[int, datetime]]) -> None:
        missing = keys - self.rain.keys()
        if not missing:
            return
        # A range query per day touched rather than thousands of (sensor, bucket) pairs in
        # an IN list, which PostgreSQL plans slowly; the few extra rows cost nothing.
        by_day: dict[object, list[tuple[int, datetime]]] = {}
        for key in missing:
            by_day.setdefault(key[1].date(), []).append(key)
        found: dict[tuple[int, datetime], float] = {}
        for keys_of_day in by_day.values():
            ends = [end for _, end in keys_of_day]
            rows = db.execute(
                select(RainBucket.sensor_id, RainBucket.end_at, RainBucket.mm).where(
                    RainBucket.sensor_id.in_(sorted({sid for sid, _ in keys_of_day})),
                    RainBucket.end_at >= min(ends),
                    RainBucket.end_at <= max(ends),
                )
            )
            found.update(((sid, end), mm) for sid, end, mm in rows)
        for key in missing:
            self.rain[key] = found.get(key, 0.0)

    def forget_rain_before(self, cutoff: datetime) -> None:
        for key in [k for k in self.rain if k[1] < cutoff]:
            del self.rain[key]

    def invalidate(self) -> None:
        """Drop every cache; the next batch reloads from the database (after a rollback the
        memory may be ahead of what was committed)."""
        with self.lock:
            self.directory.clear()
            self.runtime.clear()
            self.trackers.clear()
            self.rain.clear()
            self.loaded_at = -1e9


_defaults: dict[str, IngestState] = {}
_default_lock = threading.Lock()


def default_state(db: Session) -> IngestState:
    """The process-wide state of the HTTP batch endpoint, one per database (ids and caches
    of one database mean nothing in another)."""
    bind = db.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    key = engine.url.render_as_string(hide_password=True)
    with _default_lock:
        state = _defaults.get(key)
        if state is None:
            from watergrid.flood.settings import get_flood_settings

            state = _defaults[key] = IngestState(refresh=get_flood_settings().directory_refresh_s)
        return state
