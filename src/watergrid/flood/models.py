"""Flood tables: assets, sensors, readings, rain buckets, thresholds, alarms and their
history, and the dead-letter table of refused sensor data.

Readings are keyed by (sensor, ts): the primary key is what de-duplicates a message that
arrives twice, on SQLite and PostgreSQL alike (insert … ON CONFLICT DO NOTHING)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow


class FloodAsset(Base):
    """Anything the flood board shows on the map: water bodies with their characteristic
    levels, waterlogging points, and the means to fight a flood (stations, trucks, teams,
    shelters, barriers). Levels are metres on the 1985 national height datum."""

    __tablename__ = "flood_asset"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100), default="")
    # A river section's river; otherwise empty.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"), index=True)
    # Where a pump truck or team is based (a pumping station, a depot); otherwise empty.
    base_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    subdistrict_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    # Reservoirs: 汛限水位, 正常蓄水位, 校核洪水位.
    flood_limit_level_m: Mapped[float | None] = mapped_column(Float)
    normal_level_m: Mapped[float | None] = mapped_column(Float)
    check_level_m: Mapped[float | None] = mapped_column(Float)
    # Rivers and sections: 警戒水位, 保证水位.
    warning_level_m: Mapped[float | None] = mapped_column(Float)
    guaranteed_level_m: Mapped[float | None] = mapped_column(Float)
    # m³/h for pumping stations and pump trucks, people for shelters and teams.
    capacity: Mapped[float | None] = mapped_column(Float)
    # Facts that have no column of their own (source, length, storage, notes).
    attrs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Sensor(Base):
    """A rain gauge, level gauge or ponding sensor, bound to an asset or standing at a place
    of its own. The health columns at the end are kept by ingestion, not by people."""

    __tablename__ = "flood_sensor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Appears in the MQTT topic, so limited to [A-Za-z0-9_.-].
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("flood_asset.id"), index=True)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    subdistrict_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    # Values outside [min_value, max_value] are impossible: dead-lettered, never stored.
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)
    # Implausibility limit: rain mm per 5-minute bucket; level m per minute; ponding cm per
    # minute. Readings beyond it are stored flagged.
    max_rate: Mapped[float | None] = mapped_column(Float)
    stale_after_min: Mapped[int] = mapped_column(Integer, default=15)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_value: Mapped[float | None] = mapped_column(Float)
    flagged_count: Mapped[int] = mapped_column(Integer, default=0)
    last_flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_flag: Mapped[int] = mapped_column(SmallInteger, default=0)


class Reading(Base):
    __tablename__ = "flood_reading"
    # On SQLite the rows live in the primary-key b-tree itself: one index to maintain per
    # insert instead of two (rowid table + key index), which ingestion throughput feels.
    __table_args__ = {"sqlite_with_rowid": False}

    # No foreign key, on purpose: PostgreSQL checks one with a trigger per inserted row, which
    # measured as half the insert time of a batch. Ingestion only writes ids it just read
    # from the sensor table, and sensors are deactivated, never deleted.
    sensor_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    # Canonical unit of the sensor's metric (kinds.METRIC_UNIT).
    value: Mapped[float] = mapped_column(Float)
    # kinds.FLAG_*: 0 good, otherwise implausible and left out of everything derived.
    flag: Mapped[int] = mapped_column(SmallInteger, default=0)
    seq: Mapped[int | None] = mapped_column(Integer)


class RainBucket(Base):
    """Rain per gauge per 5 minutes, keyed by the bucket's end; grows by addition as
    readings arrive, in whatever order."""

    __tablename__ = "flood_rain_5min"

    sensor_id: Mapped[int] = mapped_column(ForeignKey("flood_sensor.id"), primary_key=True)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    mm: Mapped[float] = mapped_column(Float, default=0.0)


class RainHour(Base):
    """Rain per gauge per clock hour, keyed by the hour's end; same rule as RainBucket."""

    __tablename__ = "flood_rain_hour"

    sensor_id: Mapped[int] = mapped_column(ForeignKey("flood_sensor.id"), primary_key=True)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    mm: Mapped[float] = mapped_column(Float, default=0.0)


class AlarmThreshold(Base):
    """One alarm level of one asset for one metric: raise when the value has stayed at or
    above `raise_at` for `raise_after_s`, drop the level when it has stayed below
    `clear_at` (≤ raise_at, the hysteresis band) for `clear_after_s`."""

    __tablename__ = "flood_threshold"
    __table_args__ = (UniqueConstraint("asset_id", "metric", "level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("flood_asset.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(24))
    level: Mapped[int] = mapped_column(SmallInteger)
    raise_at: Mapped[float] = mapped_column(Float)
    clear_at: Mapped[float] = mapped_column(Float)
    raise_after_s: Mapped[int] = mapped_column(Integer, default=0)
    clear_after_s: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(String(200), default="")


class Alarm(Base):
    """One episode of an asset's metric above its thresholds, as seen by one sensor (or
    raised by hand). Its level moves up and down inside the episode; the episode ends when
    it is cleared. At most one open alarm per (sensor, metric)."""

    __tablename__ = "flood_alarm"
    __table_args__ = (
        Index(
            "uq_flood_alarm_open",
            "sensor_id",
            "metric",
            unique=True,
            sqlite_where=text("state <> 'cleared'"),
            postgresql_where=text("state <> 'cleared'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("flood_asset.id"), index=True)
    sensor_id: Mapped[int | None] = mapped_column(ForeignKey("flood_sensor.id"))
    metric: Mapped[str] = mapped_column(String(24))
    level: Mapped[int] = mapped_column(SmallInteger)
    peak_level: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # Raised by hand for a drill: everything downstream marks its work as an exercise.
    exercise: Mapped[bool] = mapped_column(Boolean, default=False)
    subdistrict_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Timestamp of the reading that completed the raise condition (None when by hand).
    reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    value: Mapped[float | None] = mapped_column(Float)
    last_value: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    clear_reason: Mapped[str] = mapped_column(String(300), default="")


class AlarmEvent(Base):
    """Append-only history of an alarm: who (None = the system), when, from, to, why."""

    __tablename__ = "flood_alarm_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("flood_alarm.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # raised, escalated, downgraded, acknowledged, cleared
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    from_level: Mapped[int | None] = mapped_column(SmallInteger)
    to_level: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[float | None] = mapped_column(Float)
    reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(300), default="")


class DeadLetter(Base):
    """Sensor data that was refused, with the reason (kinds.DEAD_LETTER_REASONS) and the
    raw payload, so nothing a device sends disappears without a trace."""

    __tablename__ = "flood_dead_letter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(8))
    topic: Mapped[str] = mapped_column(String(300), default="")
    sensor_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(String(500), default="")
    payload: Mapped[str] = mapped_column(Text, default="")
