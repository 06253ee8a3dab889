"""The flood API: who may do what, assets and thresholds, sensors, HTTP batch ingestion,
rain and alarms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from tests.conftest import login_token
from tests.flood.helpers import GONGMING


@pytest.fixture
def client(flood_url: str) -> Iterator[TestClient]:
    from watergrid.app import create_app

    with TestClient(create_app(flood_url)) as c:
        yield c


@pytest.fixture
def duty(client: TestClient) -> dict[str, str]:
    return login_token(client, "duty")


def _asset(client: TestClient, headers: dict[str, str], tag: str) -> dict[str, object]:
    r = client.post(
        "/api/v1/flood/assets",
        headers=headers,
        json={
            "code": f"WP-{tag}",
            "kind": "waterlogging_point",
            "name_zh": "测试积水点",
            "lon": GONGMING[0],
            "lat": GONGMING[1],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_permissions(client: TestClient, tag: str) -> None:
    grid = login_token(client, "grid01")
    assert client.get("/api/v1/flood/assets", headers=grid).status_code == 200
    r = client.post(
        "/api/v1/flood/assets",
        headers=grid,
        json={
            "code": f"X-{tag}",
            "kind": "shelter",
            "name_zh": "x",
            "lon": GONGMING[0],
            "lat": GONGMING[1],
        },
    )
    assert r.status_code == 403
    assert (
        client.post("/api/v1/flood/readings", headers=grid, json={"readings": []}).status_code
        == 403
    )
    assert client.get("/api/v1/flood/alarms").status_code == 401


def test_assets_are_placed_and_validated(
    client: TestClient, duty: dict[str, str], tag: str
) -> None:
    body = _asset(client, duty, tag)
    assert (body["subdistrict_code"], body["grid_code"]) == ("440311002", "W29")
    r = client.post(
        "/api/v1/flood/assets",
        headers=duty,
        json={"code": f"OUT-{tag}", "kind": "shelter", "name_zh": "x", "lon": 114.3, "lat": 22.6},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "outside_district"
    r = client.post(
        "/api/v1/flood/assets",
        headers=duty,
        json={
            "code": f"RES-{tag}",
            "kind": "reservoir",
            "name_zh": "x",
            "lon": GONGMING[0],
            "lat": GONGMING[1],
            "flood_limit_level_m": 60,
            "normal_level_m": 59,
        },
    )
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "normal_level_m"
    assert (
        client.post(
            "/api/v1/flood/assets",
            headers=duty,
            json={
                "code": f"WP-{tag}",
                "kind": "waterlogging_point",
                "name_zh": "x",
                "lon": GONGMING[0],
                "lat": GONGMING[1],
            },
        ).status_code
        == 409
    )
    geo = client.get("/api/v1/flood/assets.geojson?kind=waterlogging_point", headers=duty).json()
    assert any(f["id"] == f"WP-{tag}" for f in geo["features"])
    moved = client.patch(
        f"/api/v1/flood/assets/WP-{tag}", headers=duty, json={"lon": 113.95, "lat": 22.80}
    )
    assert moved.json()["subdistrict_code"] == "440311001"


def test_ingest_over_http_and_alarm_handling(
    client: TestClient, duty: dict[str, str], tag: str
) -> None:
    _asset(client, duty, tag)
    r = client.put(
        f"/api/v1/flood/assets/WP-{tag}/thresholds",
        headers=duty,
        json=[
            {"metric": "ponding_depth", "level": 2, "raise_at": 15, "clear_at": 12},
            {"metric": "ponding_depth", "level": 3, "raise_at": 30, "clear_at": 25},
        ],
    )
    assert r.status_code == 200 and len(r.json()) == 2
    bad = client.put(
        f"/api/v1/flood/assets/WP-{tag}/thresholds",
        headers=duty,
        json=[{"metric": "ponding_depth", "level": 2, "raise_at": 15, "clear_at": 16}],
    )
    assert bad.status_code == 422
    r = client.post(
        "/api/v1/flood/sensors",
        headers=duty,
        json={
            "code": f"PD-{tag}",
            "kind": "ponding_sensor",
            "name_zh": "积水",
            "asset_code": f"WP-{tag}",
        },
    )
    assert r.status_code == 201 and r.json()["health"]["status"] == "never_seen"
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        {"sensor": f"PD-{tag}", "ts": (now - timedelta(minutes=5 - i)).isoformat(), "value": v}
        for i, v in enumerate([5, 9, 16, 18])
    ]
    bad_items = [
        {"sensor": f"PD-{tag}", "ts": now.isoformat(), "value": -3},
        {"sensor": f"PD-{tag}", "value": 1},
        {"ts": now.isoformat(), "value": 1},
    ]
    r = client.post("/api/v1/flood/readings", headers=duty, json={"readings": readings + bad_items})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["stored"], result["dead_letters"], result["alarms_changed"]) == (4, 3, 1)
    assert sorted(x["reason"] for x in result["rejections"]) == [
        "bad_timestamp",
        "missing_sensor",
        "out_of_range",
    ]
    again = client.post("/api/v1/flood/readings", headers=duty, json={"readings": readings}).json()
    assert (again["stored"], again["duplicates"]) == (0, 4)
    sensor = client.get(f"/api/v1/flood/sensors/PD-{tag}", headers=duty).json()
    assert sensor["health"]["status"] == "ok" and sensor["health"]["last_value"] == 18
    assert len(client.get(f"/api/v1/flood/sensors/PD-{tag}/readings", headers=duty).json()) == 4

    alarms = client.get(f"/api/v1/flood/alarms?asset=WP-{tag}&open=true", headers=duty).json()
    assert [(a["level_name"], a["state"]) for a in alarms] == [("yellow", "raised")]
    aid = alarms[0]["id"]
    ack = client.post(
        f"/api/v1/flood/alarms/{aid}/acknowledge", headers=duty, json={"reason": "已通知巡查"}
    )
    assert ack.json()["state"] == "acknowledged"
    assert (
        client.post(f"/api/v1/flood/alarms/{aid}/acknowledge", headers=duty, json={}).status_code
        == 409
    )
    assert (
        client.post(
            f"/api/v1/flood/alarms/{aid}/clear", headers=duty, json={"reason": ""}
        ).status_code
        == 422
    )
    done = client.post(
        f"/api/v1/flood/alarms/{aid}/clear", headers=duty, json={"reason": "传感器检修"}
    ).json()
    assert done["state"] == "cleared"
    history = [
        (h["action"], h["from_state"], h["to_state"], h["actor_id"] is not None, h["reason"])
        for h in done["history"]
    ]
    assert history == [
        ("raised", None, "raised", False, "yellow threshold reached"),
        ("acknowledged", "raised", "acknowledged", True, "已通知巡查"),
        ("cleared", "acknowledged", "cleared", True, "传感器检修"),
    ]
    dl = client.get("/api/v1/flood/dead-letters?reason=out_of_range", headers=duty).json()
    assert dl["counts"]["out_of_range"] >= 1
    assert (
        client.get("/api/v1/flood/dead-letters", headers=login_token(client, "grid01")).status_code
        == 403
    )


def test_manual_drill_alarm(client: TestClient, duty: dict[str, str], tag: str) -> None:
    _asset(client, duty, tag)
    r = client.post(
        "/api/v1/flood/alarms",
        headers=duty,
        json={
            "asset_code": f"WP-{tag}",
            "metric": "ponding_depth",
            "level": 3,
            "reason": "汛前演练",
            "exercise": True,
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert (
        body["exercise"]
        and body["sensor_code"] is None
        and body["history"][0]["reason"] == "[演练] 汛前演练"
    )


def test_rain_endpoints(client: TestClient, duty: dict[str, str], tag: str) -> None:
    client.post(
        "/api/v1/flood/sensors",
        headers=duty,
        json={
            "code": f"RG-{tag}",
            "kind": "rain_gauge",
            "name_zh": "雨量",
            "lon": GONGMING[0],
            "lat": GONGMING[1],
        },
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    client.post(
        "/api/v1/flood/readings",
        headers=duty,
        json={
            "readings": [
                {
                    "sensor": f"RG-{tag}",
                    "ts": (now - timedelta(minutes=5 * i)).isoformat(),
                    "value": 2.0,
                }
                for i in range(6)
            ]
        },
    )
    gauges = client.get("/api/v1/flood/rain/gauges?subdistrict=440311002", headers=duty).json()
    mine = next(g for g in gauges if g["sensor_code"] == f"RG-{tag}")
    assert mine["mm"]["1h"] == pytest.approx(12.0) and not mine["stale"]
    areas = client.get("/api/v1/flood/rain/subdistricts", headers=duty).json()
    assert {a["subdistrict_code"] for a in areas} >= {"440311001", "440311006"}
    series = client.get(f"/api/v1/flood/rain/gauges/RG-{tag}/series?step=5min", headers=duty).json()
    assert series["points"][-1]["cumulative_mm"] == pytest.approx(12.0)
    # A time without an offset is Shenzhen wall time.
    local = (now + timedelta(hours=8)).replace(tzinfo=None).isoformat()
    at = client.get(
        f"/api/v1/flood/rain/gauges?subdistrict=440311002&at={local}", headers=duty
    ).json()
    assert next(g for g in at if g["sensor_code"] == f"RG-{tag}")["mm"]["1h"] == pytest.approx(12.0)
    sub = client.get("/api/v1/flood/rain/subdistricts/440311002/series", headers=duty)
    assert sub.status_code == 200 and sub.json()["step"] == "1h"
    assert client.get("/api/v1/flood/rain/gauges/NOPE/series", headers=duty).status_code == 404
