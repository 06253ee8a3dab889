"""Flood API: assets and thresholds, sensors and their health, HTTP batch ingestion, rain
accumulations and chart series, alarms. Thin routes: fetch, 404, call the service."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from sqlalchemy import event
from sqlalchemy.orm import Session

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError
from watergrid.flood import alarms, assets, rain, sensors
from watergrid.flood.ingest import ingest
from watergrid.flood.parse import Limits, parse_items
from watergrid.flood.schemas import (
    AlarmAction,
    AlarmRead,
    AreaRain,
    AssetCreate,
    AssetKind,
    AssetRead,
    AssetUpdate,
    DeadLetterSummary,
    GaugeRain,
    IngestResult,
    ManualAlarmIn,
    RainSeries,
    ReadingBatchIn,
    ReadingRead,
    SensorCreate,
    SensorKind,
    SensorRead,
    SensorUpdate,
    ThresholdIn,
    ThresholdRead,
)
from watergrid.flood.settings import get_flood_settings
from watergrid.flood.state import default_state
from watergrid.geo import service as geo_service

router = APIRouter(prefix="/api/v1/flood", tags=["flood"])
# Type aliases (not staff(...) calls) so type checkers see the Principal behind each gate.
Reader = Annotated[Principal, Depends(allow("flood.read"))]
Writer = Annotated[Principal, Depends(allow("flood.write"))]
Feeder = Annotated[Principal, Depends(allow("flood.ingest"))]
LOCAL = ZoneInfo("Asia/Shanghai")


def _instant(value: datetime | None, default: datetime) -> datetime:
    """Query times: with an offset as given; without one, read as Asia/Shanghai wall time
    (what a person typing a date in Shenzhen means)."""
    if value is None:
        return default
    return value.replace(tzinfo=LOCAL) if value.tzinfo is None else value


def _span(
    start: datetime | None, end: datetime | None, hours: int = 24
) -> tuple[datetime, datetime]:
    hi = _instant(end, utcnow())
    lo = _instant(start, hi - timedelta(hours=hours))
    if lo >= hi:
        raise AppError(422, "bad_span", "start must be before end", "开始时间须早于结束时间")
    return lo, hi


def _subdistrict_id(db: Session, code: str | None) -> int | None:
    return geo_service.get_or_404(db, code=code, kind="subdistrict").id if code else None


def _directory_changed(db: Session) -> None:
    # The HTTP ingester reloads on its next batch; consumers in other processes within
    # WATERGRID_FLOOD_DIRECTORY_REFRESH_S.
    default_state(db).loaded_at = -1e9


# -- assets ---------------------------------------------------------------------------------


@router.get("/assets", response_model=list[AssetRead])
def list_assets(
    db: SessionDep, _: Reader, kind: AssetKind | None = None, subdistrict: str | None = None
) -> list[AssetRead]:
    return assets.to_read(
        db, assets.get_all(db, kind=kind, subdistrict_id=_subdistrict_id(db, subdistrict))
    )


@router.get("/assets.geojson")
def assets_geojson(db: SessionDep, _: Reader, kind: AssetKind | None = None) -> dict[str, Any]:
    return assets.geojson(db, kind=kind)


@router.get("/assets/{code}", response_model=AssetRead)
def get_asset(db: SessionDep, _: Reader, code: str) -> AssetRead:
    return assets.to_read(db, [assets.get_or_404(db, code=code)])[0]


@router.post("/assets", response_model=AssetRead, status_code=201)
def create_asset(db: SessionDep, _: Writer, body: AssetCreate) -> AssetRead:
    return assets.to_read(db, [assets.create(db, data=body)])[0]


@router.patch("/assets/{code}", response_model=AssetRead)
def update_asset(db: SessionDep, _: Writer, code: str, body: AssetUpdate) -> AssetRead:
    asset = assets.update(db, asset=assets.get_or_404(db, code=code), data=body)
    return assets.to_read(db, [asset])[0]


@router.get("/assets/{code}/thresholds", response_model=list[ThresholdRead])
def get_thresholds(db: SessionDep, _: Reader, code: str) -> list[ThresholdRead]:
    return assets.threshold_reads(
        assets.thresholds(db, asset_id=assets.get_or_404(db, code=code).id)
    )


@router.put("/assets/{code}/thresholds", response_model=list[ThresholdRead])
def put_thresholds(
    db: SessionDep, _: Writer, code: str, body: list[ThresholdIn]
) -> list[ThresholdRead]:
    rows = assets.set_thresholds(db, asset=assets.get_or_404(db, code=code), items=body)
    _directory_changed(db)
    return assets.threshold_reads(rows)


# -- sensors and readings -------------------------------------------------------------------


@router.get("/sensors", response_model=list[SensorRead])
def list_sensors(
    db: SessionDep,
    _: Reader,
    kind: SensorKind | None = None,
    subdistrict: str | None = None,
    status: Literal["ok", "stale", "never_seen", "inactive"] | None = None,
) -> list[SensorRead]:
    now = utcnow()
    out = sensors.to_read(
        db, sensors.get_all(db, kind=kind, subdistrict_id=_subdistrict_id(db, subdistrict)), now=now
    )
    return [s for s in out if status is None or s.health.status == status]


@router.get("/sensors/{code}", response_model=SensorRead)
def get_sensor(db: SessionDep, _: Reader, code: str) -> SensorRead:
    return sensors.to_read(db, [sensors.get_or_404(db, code=code)], now=utcnow())[0]


@router.post("/sensors", response_model=SensorRead, status_code=201)
def create_sensor(db: SessionDep, _: Writer, body: SensorCreate) -> SensorRead:
    sensor = sensors.create(db, data=body, stale_after_min=get_flood_settings().stale_after_min)
    _directory_changed(db)
    return sensors.to_read(db, [sensor], now=utcnow())[0]


@router.patch("/sensors/{code}", response_model=SensorRead)
def update_sensor(db: SessionDep, _: Writer, code: str, body: SensorUpdate) -> SensorRead:
    sensor = sensors.update(db, sensor=sensors.get_or_404(db, code=code), data=body)
    _directory_changed(db)
    return sensors.to_read(db, [sensor], now=utcnow())[0]


@router.get("/sensors/{code}/readings", response_model=list[ReadingRead])
def sensor_readings(
    db: SessionDep, _: Reader, code: str, start: datetime | None = None, end: datetime | None = None
) -> list[ReadingRead]:
    lo, hi = _span(start, end)
    return sensors.readings(db, sensor=sensors.get_or_404(db, code=code), start=lo, end=hi)


@router.post("/readings", response_model=IngestResult)
def post_readings(db: SessionDep, _: Feeder, body: ReadingBatchIn) -> IngestResult:
    """Batch ingestion for gateways that speak HTTP rather than MQTT. Each reading is judged
    on its own like an MQTT payload: good ones are stored, bad ones dead-lettered, and the
    answer says which and why. Sending the same batch again stores nothing new."""
    settings = get_flood_settings()
    if len(body.readings) > settings.max_batch_readings:
        raise AppError(
            413,
            "batch_too_large",
            f"At most {settings.max_batch_readings} readings per request",
            f"每次最多提交 {settings.max_batch_readings} 条读数",
        )
    now = utcnow()
    limits = Limits(
        future_tolerance=timedelta(seconds=settings.future_tolerance_s),
        late_limit=timedelta(days=settings.late_limit_days),
    )
    good, bad = parse_items(body.readings, sensor_code=None, now=now, limits=limits, topic="http")
    state = default_state(db)
    # The request's transaction commits after this returns; should it roll back, the
    # ingester's memory would be ahead of the database.
    event.listen(db, "after_rollback", lambda _s: state.invalidate(), once=True)
    return ingest(db, readings=good, rejected=bad, source="http", state=state, now=now).as_result()


@router.get("/dead-letters", response_model=DeadLetterSummary)
def dead_letters(
    db: SessionDep, _: Writer, reason: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> DeadLetterSummary:
    return sensors.dead_letters(db, reason=reason, limit=limit)


# -- rain -----------------------------------------------------------------------------------


@router.get("/rain/gauges", response_model=list[GaugeRain])
def rain_gauges(
    db: SessionDep, _: Reader, subdistrict: str | None = None, at: datetime | None = None
) -> list[GaugeRain]:
    """Rolling 1/3/6/12/24 h rain per gauge, ending at `at` (default now)."""
    return rain.gauge_accumulations(
        db, now=_instant(at, utcnow()), subdistrict_id=_subdistrict_id(db, subdistrict)
    )


@router.get("/rain/subdistricts", response_model=list[AreaRain])
def rain_subdistricts(db: SessionDep, _: Reader, at: datetime | None = None) -> list[AreaRain]:
    return rain.subdistrict_accumulations(db, now=_instant(at, utcnow()))


@router.get("/rain/gauges/{code}/series", response_model=RainSeries)
def gauge_series(
    db: SessionDep,
    _: Reader,
    code: str,
    start: datetime | None = None,
    end: datetime | None = None,
    step: Literal["5min", "1h"] = "1h",
) -> RainSeries:
    sensor = sensors.get_or_404(db, code=code)
    if sensor.kind != "rain_gauge":
        raise AppError(422, "not_a_rain_gauge", f"{code} is not a rain gauge", f"{code} 不是雨量计")
    lo, hi = _span(start, end)
    return rain.gauge_series(db, sensor=sensor, start=lo, end=hi, step=step)


@router.get("/rain/subdistricts/{code}/series", response_model=RainSeries)
def subdistrict_series(
    db: SessionDep,
    _: Reader,
    code: str,
    start: datetime | None = None,
    end: datetime | None = None,
    step: Literal["5min", "1h"] = "1h",
) -> RainSeries:
    area = geo_service.get_or_404(db, code=code, kind="subdistrict")
    lo, hi = _span(start, end)
    return rain.subdistrict_series(db, subdistrict_id=area.id, start=lo, end=hi, step=step)


# -- alarms ---------------------------------------------------------------------------------


@router.get("/alarms", response_model=list[AlarmRead])
def list_alarms(
    db: SessionDep,
    _: Reader,
    state: Literal["raised", "acknowledged", "cleared"] | None = None,
    open_only: bool = Query(False, alias="open"),
    asset: str | None = None,
    subdistrict: str | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[AlarmRead]:
    asset_id = assets.get_or_404(db, code=asset).id if asset else None
    rows = alarms.get_all(
        db,
        state=state,
        open_only=open_only,
        asset_id=asset_id,
        subdistrict_id=_subdistrict_id(db, subdistrict),
        limit=limit,
    )
    return alarms.to_read(db, rows)


@router.get("/alarms/{alarm_id}", response_model=AlarmRead)
def get_alarm(db: SessionDep, _: Reader, alarm_id: int) -> AlarmRead:
    return alarms.to_read(db, [alarms.get_or_404(db, alarm_id=alarm_id)], with_history=True)[0]


@router.post("/alarms", response_model=AlarmRead, status_code=201)
def raise_alarm(db: SessionDep, principal: Writer, body: ManualAlarmIn) -> AlarmRead:
    """Raise an alarm by hand: a patrol's report, or a drill (`exercise`)."""
    asset = assets.get_or_404(db, code=body.asset_code)
    alarm = alarms.raise_manual(
        db,
        asset_id=asset.id,
        metric=body.metric,
        level=body.level,
        user_id=principal.user_id,
        reason=body.reason,
        now=utcnow(),
        exercise=body.exercise,
    )
    return alarms.to_read(db, [alarm], with_history=True)[0]


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmRead)
def acknowledge_alarm(
    db: SessionDep, principal: Writer, alarm_id: int, body: AlarmAction
) -> AlarmRead:
    alarm = alarms.acknowledge(
        db, alarm_id=alarm_id, user_id=principal.user_id, now=utcnow(), reason=body.reason
    )
    return alarms.to_read(db, [alarm], with_history=True)[0]


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmRead)
def clear_alarm(db: SessionDep, principal: Writer, alarm_id: int, body: AlarmAction) -> AlarmRead:
    alarm = alarms.clear(
        db, alarm_id=alarm_id, user_id=principal.user_id, now=utcnow(), reason=body.reason
    )
    return alarms.to_read(db, [alarm], with_history=True)[0]
