"""Shapes of flood requests and answers. Times are UTC on the wire (ISO 8601 with offset);
pages convert to Asia/Shanghai for display."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AssetKind = Literal[
    "reservoir",
    "river",
    "river_section",
    "waterlogging_point",
    "pumping_station",
    "pump_truck",
    "team",
    "shelter",
    "flood_barrier",
]
SensorKind = Literal["rain_gauge", "level_gauge", "ponding_sensor"]
AlarmMetric = Literal["water_level", "ponding_depth"]
AlarmState = Literal["raised", "acknowledged", "cleared"]
CODE_PATTERN = r"^[A-Za-z0-9_.\-]{1,40}$"


class Levels(BaseModel):
    """Characteristic levels in metres (1985 national height datum)."""

    flood_limit_level_m: float | None = Field(None, description="汛限水位 (reservoirs)")
    normal_level_m: float | None = Field(None, description="正常蓄水位 (reservoirs)")
    check_level_m: float | None = Field(None, description="校核洪水位 (reservoirs)")
    warning_level_m: float | None = Field(None, description="警戒水位 (rivers, sections)")
    guaranteed_level_m: float | None = Field(None, description="保证水位 (rivers, sections)")


class AssetBase(Levels):
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field("", max_length=100)
    lon: float = Field(ge=-180, le=180, description="WGS84 longitude")
    lat: float = Field(ge=-90, le=90, description="WGS84 latitude")
    parent_code: str | None = Field(None, description="the river of a river section")
    base_code: str | None = Field(None, description="home base of a pump truck or team")
    capacity: float | None = Field(None, ge=0, description="m³/h (pumps), people (shelters, teams)")
    attrs: dict[str, Any] = Field(default_factory=dict)
    synthetic: bool = False
    active: bool = True


class AssetCreate(AssetBase):
    code: str = Field(pattern=CODE_PATTERN)
    kind: AssetKind


class AssetUpdate(Levels):
    """Fields to change; omitted fields stay as they are."""

    name_zh: str | None = Field(None, min_length=1, max_length=100)
    name_en: str | None = Field(None, max_length=100)
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    capacity: float | None = Field(None, ge=0)
    attrs: dict[str, Any] | None = None
    active: bool | None = None


class AssetRead(AssetCreate):
    id: int
    subdistrict_code: str | None
    grid_code: str | None


class ThresholdIn(BaseModel):
    metric: AlarmMetric
    level: int = Field(ge=1, le=4, description="1 blue, 2 yellow, 3 orange, 4 red")
    raise_at: float
    clear_at: float = Field(description="≤ raise_at; the gap is the hysteresis band")
    raise_after_s: int = Field(0, ge=0, le=86400, description="minimum duration before raising")
    clear_after_s: int = Field(0, ge=0, le=86400, description="minimum duration before clearing")
    note: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _band(self) -> ThresholdIn:
        if self.clear_at > self.raise_at:
            raise ValueError("clear_at must not exceed raise_at")
        return self


class ThresholdRead(ThresholdIn):
    model_config = ConfigDict(from_attributes=True)


class SensorCreate(BaseModel):
    code: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="as used in the MQTT topic")
    kind: SensorKind
    name_zh: str = Field(min_length=1, max_length=100)
    asset_code: str | None = Field(None, description="the asset it watches; its place by default")
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    min_value: float | None = None
    max_value: float | None = None
    max_rate: float | None = Field(None, gt=0)
    stale_after_min: int | None = Field(None, ge=1, le=10080)
    synthetic: bool = False
    active: bool = True


class SensorUpdate(BaseModel):
    name_zh: str | None = Field(None, min_length=1, max_length=100)
    min_value: float | None = None
    max_value: float | None = None
    max_rate: float | None = Field(None, gt=0)
    stale_after_min: int | None = Field(None, ge=1, le=10080)
    active: bool | None = None


class SensorRead(BaseModel):
    id: int
    code: str
    kind: SensorKind
    name_zh: str
    unit: str
    asset_code: str | None
    lon: float
    lat: float
    subdistrict_code: str | None
    grid_code: str | None
    min_value: float | None
    max_value: float | None
    max_rate: float | None
    stale_after_min: int
    active: bool
    synthetic: bool
    health: SensorHealth


class SensorHealth(BaseModel):
    status: Literal["ok", "stale", "never_seen", "inactive"]
    last_seen_at: datetime | None = Field(
        None, description="server time of the last stored reading"
    )
    last_reading_at: datetime | None = Field(None, description="timestamp of the newest reading")
    last_value: float | None
    flagged_count: int
    last_flagged_at: datetime | None
    last_flag: str


class IngestRejection(BaseModel):
    reason: str
    detail: str
    sensor_code: str | None


class IngestResult(BaseModel):
    received: int = Field(description="readings offered, after unpacking")
    stored: int = Field(description="new readings stored (flagged ones included)")
    duplicates: int = Field(description="already stored for that sensor and timestamp")
    flagged: int = Field(description="stored but implausible, kept out of sums and alarms")
    dead_letters: int
    alarms_changed: int
    rejections: list[IngestRejection] = []


class ReadingBatchIn(BaseModel):
    """HTTP batch: each reading names its sensor. Items are checked one by one like MQTT
    payloads: bad ones go to the dead-letter table, good ones are stored."""

    readings: list[dict[str, Any]] = Field(
        description='[{"sensor": "RG-GM-01", "ts": "2025-06-01T14:05:00+08:00", "value": 2.5, '
        '"unit": "mm", "seq": 1}, ...]',
    )


class ReadingRead(BaseModel):
    ts: datetime
    value: float
    flag: str
    seq: int | None


class GaugeRain(BaseModel):
    sensor_code: str
    name_zh: str
    subdistrict_code: str | None
    lon: float
    lat: float
    stale: bool
    last_seen_at: datetime | None
    mm: dict[str, float] = Field(description='{"1h": …, "3h": …, "6h": …, "12h": …, "24h": …}')


class AreaRain(BaseModel):
    subdistrict_code: str
    name_zh: str
    gauges_total: int
    gauges_used: int = Field(description="active gauges that are not stale")
    mean_mm: dict[str, float | None] = Field(
        description="area mean per window; None without gauges"
    )
    max_mm: dict[str, float | None]


class RainPoint(BaseModel):
    end_at: datetime
    mm: float
    cumulative_mm: float


class RainSeries(BaseModel):
    key: str
    name_zh: str
    step: str
    gauges: int
    points: list[RainPoint]


class AlarmEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    actor_id: int | None
    action: str
    from_state: str | None
    to_state: str
    from_level: int | None
    to_level: int
    value: float | None
    reading_at: datetime | None
    reason: str


class AlarmRead(BaseModel):
    id: int
    asset_code: str
    asset_name_zh: str
    asset_kind: str
    sensor_code: str | None
    metric: str
    level: int
    level_name: str
    peak_level: int
    state: AlarmState
    exercise: bool
    subdistrict_code: str | None
    grid_code: str | None
    raised_at: datetime
    reading_at: datetime | None
    value: float | None
    last_value: float | None
    acknowledged_at: datetime | None
    cleared_at: datetime | None
    clear_reason: str
    history: list[AlarmEventRead] = []


class AlarmAction(BaseModel):
    reason: str = Field("", max_length=300)


class ManualAlarmIn(BaseModel):
    asset_code: str
    metric: AlarmMetric
    level: int = Field(ge=1, le=4)
    reason: str = Field(min_length=1, max_length=300)
    exercise: bool = Field(False, description="a drill: downstream work is marked as exercise")


class DeadLetterRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    received_at: datetime
    source: str
    topic: str
    sensor_code: str | None
    reason: str
    detail: str
    payload: str


class DeadLetterSummary(BaseModel):
    counts: dict[str, int]
    latest: list[DeadLetterRead]


SensorRead.model_rebuild()
