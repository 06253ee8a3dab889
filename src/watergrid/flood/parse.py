"""From bytes on a topic (or an HTTP body) to raw readings and refusals. No database here:
which sensor a code names, its unit and its limits are the ingestion's business.

Accepted payloads (docs/flood-sensors.md):

- on ``{prefix}/sensors/{code}/readings``: one reading ``{"ts", "value", "unit"?, "seq"?}``,
  a JSON list of them, or ``{"readings": [...]}``;
- on ``{prefix}/gateways/{id}/readings`` and over HTTP: the same, each reading also naming
  its ``"sensor"``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SENSOR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
PAYLOAD_KEEP = 4000  # characters of a refused payload worth keeping for a human


@dataclass(slots=True)
class RawReading:
    sensor_code: str
    ts: datetime  # aware, UTC
    value: float
    unit: str | None
    seq: int | None
    item: Any  # the JSON item it came from, kept to dead-letter it later if need be
    topic: str = ""


@dataclass(slots=True)
class Rejected:
    reason: str  # a key of kinds.DEAD_LETTER_REASONS
    detail: str
    sensor_code: str | None
    payload: str
    topic: str = ""


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 1_000_000
    max_batch_readings: int = 10_000
    future_tolerance: timedelta = timedelta(minutes=5)
    late_limit: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Topic:
    kind: str  # "sensor" or "gateway"
    ident: str


def subscriptions(prefix: str) -> list[str]:
    """The topic filters the consumer subscribes to."""
    return [f"{prefix}/sensors/+/readings", f"{prefix}/gateways/+/readings"]


def parse_topic(topic: str, prefix: str) -> Topic | None:
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 3 or parts[2] != "readings" or parts[0] not in ("sensors", "gateways"):
        return None
    ident = parts[1]
    if not SENSOR_CODE.match(ident):
        return None
    return Topic("sensor" if parts[0] == "sensors" else "gateway", ident)


def _clip(payload: bytes | bytearray | str) -> str:
    if isinstance(payload, bytes | bytearray):
        payload = payload[: PAYLOAD_KEEP * 4].decode("utf-8", errors="replace")
    return payload[:PAYLOAD_KEEP]


def _dump(item: Any) -> str:
    try:
        return _clip(json.dumps(item, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return _clip(repr(item))


def parse_ts(raw: Any) -> datetime | None:
    """ISO 8601 with a UTC offset; a naive time is refused, never guessed."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if ts.tzinfo is None:
        return None
    return ts.astimezone(UTC)


def _number(raw: Any) -> float | None:
    # JSON true/false are ints to Python; a boolean is not a measurement.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def items_of(doc: Any) -> list[Any] | None:
    """The reading items a decoded payload holds, or None when its shape is wrong."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        inner = doc.get("readings")
        if isinstance(inner, list):
            return inner
        if "readings" in doc:
            return None
        return [doc]
    return None


def parse_items(
    items: Iterable[Any],
    *,
    sensor_code: str | None,
    now: datetime,
    limits: Limits,
    topic: str = "",
) -> tuple[list[RawReading], list[Rejected]]:
    """Check each item's fields. With `sensor_code` (a sensor topic) items need not name
    their sensor; otherwise each must."""
    good: list[RawReading] = []
    bad: list[Rejected] = []
    earliest = now - limits.late_limit
    latest = now + limits.future_tolerance
    for item in items:
        if not isinstance(item, dict):
            bad.append(
                Rejected(
                    "bad_shape", "a reading must be a JSON object", sensor_code, _dump(item), topic
                )
            )
            continue
        code = sensor_code
        if code is None:
            named = item.get("sensor")
            if not isinstance(named, str) or not SENSOR_CODE.match(named):
                bad.append(
                    Rejected(
                        "missing_sensor",
                        "field 'sensor' missing or not a code",
                        None,
                        _dump(item),
                        topic,
                    )
                )
                continue
            code = named
        ts = parse_ts(item.get("ts"))
        if ts is None:
            bad.append(
                Rejected("bad_timestamp", f"ts={item.get('ts')!r}", code, _dump(item), topic)
            )
            continue
        if ts > latest:
            bad.append(
                Rejected(
                    "future_timestamp",
                    f"ts {ts.isoformat()} after {latest.isoformat()}",
                    code,
                    _dump(item),
                    topic,
                )
            )
            continue
        if ts < earliest:
            bad.append(
                Rejected(
                    "stale_timestamp",
                    f"ts {ts.isoformat()} before {earliest.isoformat()}",
                    code,
                    _dump(item),
                    topic,
                )
            )
            continue
        value = _number(item.get("value"))
        if value is None:
            bad.append(
                Rejected("bad_value", f"value={item.get('value')!r}", code, _dump(item), topic)
            )
            continue
        unit = item.get("unit")
        if unit is not None and not isinstance(unit, str):
            bad.append(Rejected("bad_unit", f"unit={unit!r}", code, _dump(item), topic))
            continue
        seq = item.get("seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            seq = None  # a sequence number is a diagnostic aid; a bad one is not worth a refusal
        good.append(RawReading(code, ts, value, unit, seq, item, topic))
    return good, bad


def parse_message(
    topic: str, payload: bytes | bytearray, *, prefix: str, now: datetime, limits: Limits
) -> tuple[list[RawReading], list[Rejected]]:
    """One MQTT message: never raises for anything a device can send."""
    where = parse_topic(topic, prefix)
    if where is None:
        return [], [Rejected("bad_topic", "topic outside the scheme", None, _clip(payload), topic)]
    code = where.ident if where.kind == "sensor" else None
    if len(payload) > limits.max_payload_bytes:
        detail = f"{len(payload)} bytes > {limits.max_payload_bytes}"
        return [], [Rejected("payload_too_large", detail, code, _clip(payload), topic)]
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        return [], [Rejected("malformed_json", str(exc)[:200], code, _clip(payload), topic)]
    items = items_of(doc)
    if items is None:
        return [], [
            Rejected(
                "bad_shape",
                "expected a reading, a list or {readings: [...]}",
                code,
                _clip(payload),
                topic,
            )
        ]
    if len(items) > limits.max_batch_readings:
        detail = f"{len(items)} readings > {limits.max_batch_readings}"
        return [], [Rejected("payload_too_large", detail, code, _clip(payload), topic)]
    return parse_items(items, sensor_code=code, now=now, limits=limits, topic=topic)


def dump_item(item: Any) -> str:
    return _dump(item)
