"""Sensors: registration, health (last seen, stale, flagged values), their readings and the
dead-letter table of what they sent that could not be stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watergrid.errors import AppError, FieldError, invalid, not_found
from watergrid.flood import assets as asset_service
from watergrid.flood import kinds
from watergrid.flood.models import DeadLetter, FloodAsset, Reading, Sensor
from watergrid.flood.schemas import (
    DeadLetterRead,
    DeadLetterSummary,
    ReadingRead,
    SensorCreate,
    SensorHealth,
    SensorRead,
    SensorUpdate,
)
from watergrid.geo import service as geo_service


def get(db: Session, *, code: str) -> Sensor | None:
    return db.scalar(select(Sensor).where(Sensor.code == code))


def get_or_404(db: Session, *, code: str) -> Sensor:
    sensor = get(db, code=code)
    if sensor is None:
        raise not_found("sensor", "监测设备", code)
    return sensor


def get_all(
    db: Session,
    *,
    kind: str | None = None,
    subdistrict_id: int | None = None,
    asset_id: int | None = None,
) -> list[Sensor]:
    q = select(Sensor).order_by(Sensor.kind, Sensor.code)
    if kind is not None:
        q = q.where(Sensor.kind == kind)
    if subdistrict_id is not None:
        q = q.where(Sensor.subdistrict_id == subdistrict_id)
    if asset_id is not None:
        q = q.where(Sensor.asset_id == asset_id)
    return list(db.scalars(q))


def create(db: Session, *, data: SensorCreate, stale_after_min: int = 15) -> Sensor:
    """Register a sensor. Bound to an asset it stands at the asset's point unless given its
    own; limits not given come from kinds.DEFAULT_LIMITS for its kind."""
    if get(db, code=data.code) is not None:
        raise AppError(
            409, "sensor_exists", f"Sensor {data.code} exists", f"监测设备 {data.code} 已存在"
        )
    asset: FloodAsset | None = None
    if data.asset_code is not None:
        asset = asset_service.get(db, code=data.asset_code)
        if asset is None:
            raise invalid(
                [
                    FieldError(
                        "asset_code",
                        f"no asset {data.asset_code}",
                        f"未找到防汛设施：{data.asset_code}",
                    )
                ]
            )
    lon = data.lon if data.lon is not None else (asset.lon if asset else None)
    lat = data.lat if data.lat is not None else (asset.lat if asset else None)
    if lon is None or lat is None:
        raise invalid([FieldError("lon", "give a point or an asset", "请提供位置或所属设施")])
    lo, hi, rate = kinds.DEFAULT_LIMITS[data.kind]
    min_value = data.min_value if data.min_value is not None else lo
    max_value = data.max_value if data.max_value is not None else hi
    if min_value is not None and max_value is not None and min_value >= max_value:
        raise invalid(
            [FieldError("max_value", "max_value must exceed min_value", "量程上限须大于下限")]
        )
    sub_id, grid_id = asset_service.resolve_place(db, lon=lon, lat=lat)
    sensor = Sensor(
        code=data.code,
        kind=data.kind,
        name_zh=data.name_zh,
        asset_id=asset.id if asset else None,
        lon=lon,
        lat=lat,
        subdistrict_id=sub_id,
        grid_id=grid_id,
        min_value=min_value,
        max_value=max_value,
        max_rate=data.max_rate if data.max_rate is not None else rate,
        stale_after_min=data.stale_after_min or stale_after_min,
        active=data.active,
        synthetic=data.synthetic,
    )
    db.add(sensor)
    db.flush()
    return sensor


def update(db: Session, *, sensor: Sensor, data: SensorUpdate) -> Sensor:
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(sensor, name, value)
    if (
        sensor.min_value is not None
        and sensor.max_value is not None
        and sensor.min_value >= sensor.max_value
    ):
        raise invalid(
            [FieldError("max_value", "max_value must exceed min_value", "量程上限须大于下限")]
        )
    db.flush()
    return sensor


def health(sensor: Sensor, *, now: datetime) -> SensorHealth:
    if not sensor.active:
        status = "inactive"
    elif sensor.last_seen_at is None:
        status = "never_seen"
    elif now - sensor.last_seen_at > timedelta(minutes=sensor.stale_after_min):
        status = "stale"
    else:
        status = "ok"
    return SensorHealth(
        status=status,
        last_seen_at=sensor.last_seen_at,
        last_reading_at=sensor.last_reading_at,
        last_value=sensor.last_value,
        flagged_count=sensor.flagged_count,
        last_flagged_at=sensor.last_flagged_at,
        last_flag=kinds.FLAG_REASONS.get(sensor.last_flag, str(sensor.last_flag)),
    )


def stale(db: Session, *, now: datetime) -> list[Sensor]:
    """Active sensors that have been silent longer than their stale_after_min (or never
    spoke). Compared in Python: the limit differs per sensor and the list is short."""
    return [
        s for s in get_all(db) if s.active and health(s, now=now).status in ("stale", "never_seen")
    ]


def to_read(db: Session, sensors: Sequence[Sensor], *, now: datetime) -> list[SensorRead]:
    codes = {i: v[1] for i, v in geo_service.area_links(db).by_id.items()}
    asset_ids = {s.asset_id for s in sensors if s.asset_id}
    asset_codes = (
        dict(
            db.execute(
                select(FloodAsset.id, FloodAsset.code).where(FloodAsset.id.in_(asset_ids))
            ).all()
        )
        if asset_ids
        else {}
    )
    return [
        SensorRead(
            id=s.id,
            code=s.code,
            kind=s.kind,
            name_zh=s.name_zh,
            unit=kinds.METRIC_UNIT[kinds.SENSOR_METRIC[s.kind]],
            asset_code=asset_codes.get(s.asset_id) if s.asset_id else None,
            lon=s.lon,
            lat=s.lat,
            subdistrict_code=codes.get(s.subdistrict_id) if s.subdistrict_id else None,
            grid_code=codes.get(s.grid_id) if s.grid_id else None,
            min_value=s.min_value,
            max_value=s.max_value,
            max_rate=s.max_rate,
            stale_after_min=s.stale_after_min,
            active=s.active,
            synthetic=s.synthetic,
            health=health(s, now=now),
        )
        for s in sensors
    ]


def readings(
    db: Session, *, sensor: Sensor, start: datetime, end: datetime, limit: int = 5000
) -> list[ReadingRead]:
    rows = db.execute(
        select(Reading.ts, Reading.value, Reading.flag, Reading.seq)
        .where(Reading.sensor_id == sensor.id, Reading.ts >= start, Reading.ts <= end)
        .order_by(Reading.ts)
        .limit(limit)
    )
    return [
        ReadingRead(ts=ts, value=value, flag=kinds.FLAG_REASONS.get(flag, str(flag)), seq=seq)
        for ts, value, flag, seq in rows
    ]


def dead_letters(db: Session, *, reason: str | None = None, limit: int = 100) -> DeadLetterSummary:
    counts = dict(
        db.execute(select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)).all()
    )
    q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if reason is not None:
        q = q.where(DeadLetter.reason == reason)
    return DeadLetterSummary(
        counts={str(k): int(v) for k, v in counts.items()},
        latest=[DeadLetterRead.model_validate(d) for d in db.scalars(q)],
    )
