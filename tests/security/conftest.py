"""One demo deployment shared by the security tests: the registry and every domain's demo
content (flood, flood response, inspections, permits) plus a few work orders, one app and a
bearer token per demo account.

It is built once, on SQLite only: the matrix and the fuzzing send thousands of requests and
what they check (gates, scopes, the absence of server errors) is decided in Python, not by
the database engine. The PostgreSQL pass covers the work-order scope checks and the cheap
checks through the shared `client` fixture of tests/conftest.py.

Every request runs in a transaction of its own that is rolled back when the request ends, so
a request that happens to change something (a holder of a permission posting an action)
never changes what the next request sees."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from tests.conftest import login_token, rolled_back_session

PASSWORD = "demo1234"

# Demo account -> its roles (watergrid.demo.load.DEMO_USERS and permits.demo.SOILWATER_USER).
USERS: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin"}),
    "leader": frozenset({"bureau_leader"}),
    "duty": frozenset({"duty_officer"}),
    "chain1": frozenset({"chain_leader"}),
    "liaison1": frozenset({"liaison"}),
    "grid01": frozenset({"grid_member"}),
    "grid13": frozenset({"grid_member"}),
    "drainage": frozenset({"dept_handler"}),
    "watercorp": frozenset({"dept_handler"}),
    "soilwater": frozenset({"dept_handler"}),
}


@dataclass
class Deployment:
    app: FastAPI
    client: TestClient
    engine: Engine
    url: str
    headers: dict[str, dict[str, str]]
    # Names of things that exist in the demo, for filling path parameters.
    ids: dict[str, str] = field(default_factory=dict)
    # Work orders made for the scope tests: name -> (id, number).
    orders: dict[str, tuple[int, str]] = field(default_factory=dict)


def _first(db: Session, sql: str, default: str | None = None) -> str:
    value = db.execute(text(sql)).scalar()
    if value is None and default is not None:
        return default
    assert value is not None, f"the demo holds nothing for: {sql}"
    return str(value)


def _point_in(db: Session, code: str) -> tuple[float, float]:
    from shapely.geometry import shape

    from watergrid.geo import service as geo_service

    p = shape(geo_service.get_or_404(db, code=code).geometry).buffer(-0.001)
    pt = p.representative_point()
    return float(pt.x), float(pt.y)


def jpeg_with_gps() -> bytes:
    """A small JPEG whose EXIF holds a GPS position (as phone cameras write it)."""
    import io

    from PIL import Image

    img = Image.new("RGB", (64, 48), (30, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (22.0, 45.0, 30.0)
    gps[3] = "E"
    gps[4] = (113.0, 56.0, 10.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def _rolled_back_sessions(engine: Engine) -> object:
    """get_db replacement: a session in a transaction that is undone after the request."""

    def get_db(request: Request) -> Iterator[Session]:
        with rolled_back_session(engine, expire_on_commit=True) as session:
            yield session

    return get_db


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from watergrid import db as dbmod
    from watergrid.app import create_app
    from watergrid.db import make_engine
    from watergrid.demo.load import load_demo
    from watergrid.deps import get_db
    from watergrid.flood.demo import load_flood_demo
    from watergrid.flood.response_demo import load_flood_response_demo
    from watergrid.inspections.demo import load_inspections_demo
    from watergrid.migrate import upgrade
    from watergrid.permits.demo import load_permits_demo

    path: Path = tmp_path_factory.mktemp("security") / "security.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
        # Sensor readings are most of the flood demo's cost and no access rule depends on
        # them; the few ids they would give (alarms) are filled with ones that do not exist,
        # which still meet every gate first.
        load_flood_demo(s, with_readings=False)
        load_flood_response_demo(s)
        load_inspections_demo(s)
        load_permits_demo(s)

    app = create_app(url)
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    headers = {u: login_token(client, u, PASSWORD) for u in USERS}

    dep = Deployment(app=app, client=client, engine=make_engine(url), url=url, headers=headers)
    with dbmod.session_scope() as s:
        w01, w13 = _point_in(s, "W01"), _point_in(s, "W13")
    # Orders through the public API, as citizens make them; committed (no override yet).
    for name, (lon, lat), category in (
        ("w01_drain", w01, "drainage.blocked_drain"),
        ("w13_drain", w13, "drainage.blocked_drain"),
        ("w01_water", w01, "water_supply.low_pressure"),
    ):
        r = client.post(
            "/api/v1/orders",
            json={
                "category_code": category,
                "description": "雨水口堵塞，路面积水 / security test order",
                "lon": lon,
                "lat": lat,
                "reporter_phone": "13800138000",
                "phone_consent": True,
            },
        )
        assert r.status_code in (200, 201), r.text
        body = r.json()
        dep.orders[name] = (int(body["id"]), str(body["number"]))

    # A photo with a GPS position in its EXIF, on an order of W01.
    up = client.post(
        "/api/v1/attachments", files={"file": ("gps.jpg", jpeg_with_gps(), "image/jpeg")}
    )
    assert up.status_code == 201, up.text
    dep.ids["photo_key"] = up.json()["key"]
    r = client.post(
        "/api/v1/orders",
        json={
            "category_code": "drainage.blocked_drain",
            "description": "带照片的报告 / report with a photo",
            "lon": w01[0],
            "lat": w01[1],
            "attachment_keys": [dep.ids["photo_key"]],
        },
    )
    assert r.status_code == 201, r.text
    dep.orders["w01_photo"] = (int(r.json()["id"]), str(r.json()["number"]))
    # A drill: a call round with calls to named people.
    r = client.post(
        "/api/v1/flood/plans/YA-RES-GMSK/drill", headers=headers["duty"], json={"level": "blue"}
    )
    assert r.status_code in (200, 201), r.text
    # A key task of the year, owned by the leader who made it.
    r = client.post(
        "/api/v1/kpi/tasks",
        headers=headers["leader"],
        json={
            "year": 2026,
            "domain": "supply_drainage",
            "title": "排水管网提质增效",
            "milestones": [{"title": "完成排查", "due_date": "2026-12-31"}],
        },
    )
    assert r.status_code in (200, 201), r.text
    dep.ids["kpi_task_id"] = str(r.json()["id"])
    dep.ids["milestone_id"] = str(r.json()["milestones"][0]["id"])

    with dbmod.session_scope(write=False) as s:
        q = {
            "order_id": str(dep.orders["w01_drain"][0]),
            "order_number": dep.orders["w01_drain"][1],
            "category": _first(s, "SELECT code FROM order_category ORDER BY code"),
            "asset": _first(s, "SELECT code FROM flood_asset ORDER BY code"),
            "sensor": _first(s, "SELECT code FROM flood_sensor ORDER BY code"),
            "gauge": _first(s, "SELECT code FROM flood_sensor WHERE kind='rain_gauge'"),
            "subdistrict": _first(s, "SELECT code FROM area WHERE kind='subdistrict'"),
            "plan": _first(s, "SELECT code FROM flood_plan ORDER BY code"),
            "plan_version": _first(s, "SELECT MIN(version) FROM flood_plan_version"),
            "alarm_id": _first(s, "SELECT MIN(id) FROM flood_alarm", "1"),
            "round_id": _first(s, "SELECT MIN(id) FROM flood_call_round", "1"),
            "call_id": _first(s, "SELECT MIN(id) FROM flood_call", "1"),
            "crew_task_id": _first(s, "SELECT MIN(id) FROM flood_crew_task", "1"),
            "criterion_id": _first(s, "SELECT MIN(id) FROM flood_warning_criterion"),
            "campaign_id": _first(s, "SELECT MIN(id) FROM insp_campaign"),
            "target_id": _first(s, "SELECT MIN(id) FROM insp_target"),
            "finding_id": _first(s, "SELECT MIN(id) FROM insp_finding"),
            "letter_id": _first(s, "SELECT MIN(id) FROM insp_letter"),
            "application_id": _first(s, "SELECT MIN(id) FROM permit_application"),
            "permit_number": _first(s, "SELECT MIN(number) FROM permit_application"),
            "permit_service": _first(s, "SELECT MIN(service_code) FROM permit_application"),
            "document_key": _first(s, "SELECT MIN(key) FROM permit_document"),
            "inbox_item_id": _first(s, "SELECT MIN(id) FROM inbox_item"),
        }
    dep.ids.update(q)
    # From here on every request's writes are undone.
    app.dependency_overrides[get_db] = _rolled_back_sessions(dep.engine)
    yield dep
    client.__exit__(None, None, None)
    dep.engine.dispose()


@pytest.fixture
def dep(deployment: Deployment) -> Deployment:
    """The shared deployment, with the process-wide engine pointed at it again (other test
    folders re-point it; streamed pages open their own sessions through it)."""
    from watergrid import db as dbmod

    dbmod.configure(deployment.url)
    return deployment
