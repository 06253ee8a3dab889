"""The flood vocabulary: asset and sensor kinds, metrics, alarm levels, units and the reasons
a reading is flagged or refused. Plain constants so schemas, services and docs agree."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

ASSET_KINDS: Final[dict[str, str]] = {
    "reservoir": "水库",
    "river": "河流",
    "river_section": "河段",
    "waterlogging_point": "内涝积水点",
    "pumping_station": "泵站",
    "pump_truck": "移动泵车",
    "team": "抢险队伍",
    "shelter": "避险安置点",
    "flood_barrier": "防洪挡板",
}

SENSOR_KINDS: Final[dict[str, str]] = {
    "rain_gauge": "雨量计",
    "level_gauge": "水位计",
    "ponding_sensor": "积水监测仪",
}

# What a sensor of each kind measures, in which canonical unit it is stored.
SENSOR_METRIC: Final[dict[str, str]] = {
    "rain_gauge": "rainfall",
    "level_gauge": "water_level",
    "ponding_sensor": "ponding_depth",
}
METRIC_UNIT: Final[dict[str, str]] = {"rainfall": "mm", "water_level": "m", "ponding_depth": "cm"}

# Multipliers from an accepted payload unit to the canonical unit of each metric. A payload
# may name its unit; anything not listed here is refused rather than guessed.
UNIT_FACTORS: Final[dict[str, dict[str, float]]] = {
    "rainfall": {"mm": 1.0, "cm": 10.0},
    "water_level": {"m": 1.0, "cm": 0.01, "mm": 0.001},
    "ponding_depth": {"cm": 1.0, "mm": 0.1, "m": 100.0},
}

# Metrics that alarm thresholds may watch (rainfall is the business of rainstorm warnings).
ALARM_METRICS: Final[tuple[str, ...]] = ("water_level", "ponding_depth")

# Alarm levels 1..4, as the bureau colours them (蓝/黄/橙/红).
LEVELS: Final[dict[int, tuple[str, str]]] = {
    1: ("blue", "蓝色"),
    2: ("yellow", "黄色"),
    3: ("orange", "橙色"),
    4: ("red", "红色"),
}

ALARM_STATES: Final[tuple[str, ...]] = ("raised", "acknowledged", "cleared")
OPEN_STATES: Final[tuple[str, ...]] = ("raised", "acknowledged")

# Rain is kept in buckets keyed by their END instant: a reading stamped ts holds the rain
# of the interval ending at ts, so it belongs to the bucket ending at ceil(ts).
BUCKET: Final[timedelta] = timedelta(minutes=5)
HOUR: Final[timedelta] = timedelta(hours=1)
RAIN_WINDOWS_H: Final[tuple[int, ...]] = (1, 3, 6, 12, 24)

# A stored reading's `flag`: 0 is a good reading; anything else marks it implausible, kept
# for the record but out of accumulations, alarms and warnings.
FLAG_OK: Final = 0
FLAG_RAIN_RATE: Final = 1
FLAG_LEVEL_JUMP: Final = 2
FLAG_REASONS: Final[dict[int, str]] = {
    FLAG_OK: "ok",
    FLAG_RAIN_RATE: "rain_rate",
    FLAG_LEVEL_JUMP: "level_jump",
}

# Why a message or reading went to the dead-letter table.
DEAD_LETTER_REASONS: Final[dict[str, str]] = {
    "malformed_json": "payload is not UTF-8 JSON",
    "bad_shape": "JSON is not a reading, a list of readings or {readings: [...]}",
    "bad_topic": "topic does not follow the scheme",
    "payload_too_large": "payload or batch larger than allowed",
    "missing_sensor": "gateway reading without a sensor code",
    "unknown_sensor": "no sensor with that code",
    "inactive_sensor": "sensor is switched off",
    "bad_timestamp": "ts missing, unparsable or without a UTC offset",
    "future_timestamp": "ts later than the clock allows",
    "stale_timestamp": "ts older than late data is accepted",
    "bad_value": "value missing, not a number or not finite",
    "bad_unit": "unit cannot be converted for this sensor",
    "negative_rain": "rain cannot be negative",
    "out_of_range": "value outside the sensor's physical range",
    "internal_error": "the message could not be processed; see the detail",
}

# Defaults for sensors created without their own limits. Rain: a single report above
# 500 mm is impossible, and more than 200 mm in one 5-minute bucket is implausible (the
# world record for 5 minutes is far below it). Levels in metres (1985 national datum);
# ponding in centimetres; max_rate for levels is per minute.
DEFAULT_LIMITS: Final[dict[str, tuple[float | None, float | None, float]]] = {
    "rain_gauge": (0.0, 500.0, 200.0),
    "level_gauge": (-20.0, 200.0, 0.5),
    "ponding_sensor": (0.0, 500.0, 30.0),
}

# After this many flagged jumps in a row a level gauge is believed: the water (or the gauge
# after maintenance) really moved, and later readings are judged against the new level.
JUMP_RESET_AFTER: Final = 3


def level_name(level: int) -> str:
    return LEVELS[level][0] if level in LEVELS else "none"
