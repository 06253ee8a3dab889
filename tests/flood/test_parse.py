"""Topics and payloads: what a device may send, and the reason for anything refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from watergrid.flood.parse import Limits, parse_message, parse_topic, subscriptions

NOW = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)
P = "watergrid/v1"


def parse(topic: str, payload: object, limits: Limits | None = None):  # type: ignore[no-untyped-def]
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_message(topic, body, prefix=P, now=NOW, limits=limits or Limits())


def test_topic_scheme() -> None:
    assert subscriptions(P) == [f"{P}/sensors/+/readings", f"{P}/gateways/+/readings"]
    assert parse_topic(f"{P}/sensors/RG-GM-01/readings", P).ident == "RG-GM-01"  # type: ignore[union-attr]
    assert parse_topic(f"{P}/gateways/gw7/readings", P).kind == "gateway"  # type: ignore[union-attr]
    for bad in (
        f"{P}/sensors/RG/status",
        f"{P}/sensors/a/b/readings",
        "other/sensors/x/readings",
        f"{P}/sensors/bad code/readings",
    ):
        assert parse_topic(bad, P) is None


def test_one_reading_a_list_and_a_wrapped_list() -> None:
    t = f"{P}/sensors/RG-1/readings"
    one = {"ts": "2025-06-01T14:00:00+08:00", "value": 1.5, "unit": "mm", "seq": 7}
    good, bad = parse(t, one)
    assert bad == [] and len(good) == 1
    r = good[0]
    assert (r.sensor_code, r.ts, r.value, r.unit, r.seq) == (
        "RG-1",
        datetime(2025, 6, 1, 6, tzinfo=UTC),
        1.5,
        "mm",
        7,
    )
    assert len(parse(t, [one, one | {"ts": "2025-06-01T05:55:00Z"}])[0]) == 2
    assert len(parse(t, {"readings": [one]})[0]) == 1


def test_gateway_readings_name_their_sensor() -> None:
    good, bad = parse(
        f"{P}/gateways/gw1/readings",
        [
            {"sensor": "LG-1", "ts": "2025-06-01T05:00:00Z", "value": 3},
            {"ts": "2025-06-01T05:00:00Z", "value": 3},
        ],
    )
    assert [g.sensor_code for g in good] == ["LG-1"]
    assert [b.reason for b in bad] == ["missing_sensor"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'"text"', "bad_shape"),
        (b'{"readings": 5}', "bad_shape"),
        (b"[1]", "bad_shape"),
        ({"value": 1}, "bad_timestamp"),
        (
            {"ts": "2025-06-01T05:00:00", "value": 1},
            "bad_timestamp",
        ),  # no offset: refused, not guessed
        ({"ts": "yesterday", "value": 1}, "bad_timestamp"),
        ({"ts": "2025-06-01T07:00:00Z", "value": 1}, "future_timestamp"),
        ({"ts": "1970-01-01T00:00:00Z", "value": 1}, "stale_timestamp"),
        ({"ts": "2025-06-01T05:00:00Z", "value": "1.2"}, "bad_value"),
        ({"ts": "2025-06-01T05:00:00Z", "value": True}, "bad_value"),
        ({"ts": "2025-06-01T05:00:00Z", "value": None}, "bad_value"),
        (b'{"ts": "2025-06-01T05:00:00Z", "value": NaN}', "bad_value"),
        ({"ts": "2025-06-01T05:00:00Z", "value": 1, "unit": 5}, "bad_unit"),
    ],
)
def test_refusals_carry_a_reason(payload: object, reason: str) -> None:
    good, bad = parse(f"{P}/sensors/RG-1/readings", payload)
    assert good == []
    assert [b.reason for b in bad] == [reason]
    assert bad[0].payload  # the raw payload is kept for a human to look at


def test_size_limits() -> None:
    t = f"{P}/sensors/RG-1/readings"
    item = {"ts": "2025-06-01T05:00:00Z", "value": 1}
    assert parse(t, [item] * 3, Limits(max_batch_readings=2))[1][0].reason == "payload_too_large"
    assert parse(t, [item] * 3, Limits(max_payload_bytes=20))[1][0].reason == "payload_too_large"


def test_late_data_within_the_limit_is_accepted() -> None:
    ts = (NOW - timedelta(days=29)).isoformat()
    assert len(parse(f"{P}/sensors/RG-1/readings", {"ts": ts, "value": 0.5})[0]) == 1
