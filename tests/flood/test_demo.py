"""The flood demo: real names, synthetic places inside the district, sensors everywhere they
should be, a day of readings, and a second load that changes nothing."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from shapely.geometry import Point, shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from watergrid.flood import assets, rain, sensors
from watergrid.flood.demo import load_flood_demo
from watergrid.flood.models import Alarm, FloodAsset, Reading, Sensor
from watergrid.geo import service as geo_service


def _counts(db: Session) -> tuple[int, ...]:
    return tuple(
        int(db.scalar(select(func.count()).select_from(m)) or 0)
        for m in (FloodAsset, Sensor, Reading, Alarm)
    )


def _demo(items: list[Any]) -> list[Any]:
    # The session database holds other tests' things too; the demo's are synthetic.
    return [x for x in items if x.synthetic]


def test_demo(sf: sessionmaker[Session]) -> None:
    now = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
    with sf() as db:
        load_flood_demo(db, now=now)
        db.commit()
        first = _counts(db)
        load_flood_demo(db, now=now)
        db.commit()
        assert _counts(db) == first
        demo_assets = _demo(assets.get_all(db))
        kinds = Counter(a.kind for a in demo_assets)
        assert kinds["reservoir"] == 1 and kinds["waterlogging_point"] == 12
        assert kinds["river"] + kinds["river_section"] >= 8
        for k in ("pumping_station", "pump_truck", "team", "shelter", "flood_barrier"):
            assert kinds[k] >= 5, k
        names = {a.name_zh for a in demo_assets}
        assert {"公明水库", "茅洲河", "鹅颈水", "楼村水", "木墩河", "新陂头河", "东坑水"} <= names
        reservoir = assets.get_or_404(db, code="GMSK")
        assert reservoir.normal_level_m == 59.7 and reservoir.attrs["source"]
        demo_sensors = _demo(sensors.get_all(db))
        assert len(demo_sensors) == 40
        district = shape(geo_service.snapshot(db).district_geometry)
        for thing in [*demo_assets, *demo_sensors]:
            assert district.contains(Point(thing.lon, thing.lat)), thing.code
            assert thing.subdistrict_id is not None
        gauges = [s for s in demo_sensors if s.kind == "rain_gauge"]
        subdistricts = {a.id for a in geo_service.get_all(db, kind="subdistrict")}
        assert {g.subdistrict_id for g in gauges} == subdistricts
        wps = [a for a in demo_assets if a.kind == "waterlogging_point"]
        assert all(sensors.get_all(db, asset_id=w.id) for w in wps)  # each has its ponding sensor
        assert all(assets.thresholds(db, asset_id=w.id) for w in wps)
        codes = {g.code for g in gauges}
        day = {g.sensor_code: g.mm["24h"] for g in rain.gauge_accumulations(db, now=now)}
        assert all(day[c] > 20 for c in codes)  # a real storm everywhere, wettest in the west
        demo_ids = [s.id for s in demo_sensors]
        raised = select(func.count()).select_from(Alarm).where(Alarm.sensor_id.in_(demo_ids))
        assert db.scalar(raised)  # the storm left some alarms
