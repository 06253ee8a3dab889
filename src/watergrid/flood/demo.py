"""Flood demo for Guangming: assets, sensors, thresholds and a day of synthetic readings.

Real: the names 公明水库 and 茅洲河 with its tributaries 鹅颈水, 楼村水, 木墩河, 新陂头河 and
东坑水 (guangming_water_bodies.csv), and 公明水库's normal level of 59.7 m and the facts of
its source. Synthetic, and labelled so (`synthetic`, attrs["note"]): every position (random
points inside the demo subdistricts, which are themselves synthetic), every other level and
threshold, the waterlogging points, stations, trucks, teams, shelters, barriers, the 40
sensors and their readings (a storm peaking two hours before the load, wettest in the west).

`load_flood_demo(db)` needs the registry demo loaded first (it places things by
subdistrict). Running it again adds nothing. It does not commit."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from shapely import contains_xy
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from watergrid.db import utcnow
from watergrid.flood import assets, rain, sensors
from watergrid.flood.ingest import ingest
from watergrid.flood.models import FloodAsset, Reading, Sensor
from watergrid.flood.parse import RawReading
from watergrid.flood.schemas import AssetCreate, SensorCreate
from watergrid.flood.state import IngestState
from watergrid.geo import service as geo_service

SEED = 440311
SYNTHETIC = "演示数据：位置与参数为合成"
REAL_NAME = "名称真实；位置及未注明来源的水位为演示合成"
WATER_SOURCE = "https://ppfocus.com/0/tr966fd6a.html (深圳新闻网 2020-12-03 转载)"

# subdistrict code -> (short code for ids, short name, storm weight: the west gets most)
SUBDISTRICTS = {
    "440311001": ("GM", "光明", 0.8),
    "440311002": ("GOM", "公明", 1.3),
    "440311003": ("XH", "新湖", 0.9),
    "440311004": ("FH", "凤凰", 0.7),
    "440311005": ("YT", "玉塘", 1.2),
    "440311006": ("MT", "马田", 1.0),
}
# (code, name, subdistrict, warning level m, guaranteed level m) — levels synthetic.
RIVERS = [
    ("MZH-1", "茅洲河上游段（玉塘）", "440311005", 12.5, 14.0),
    ("MZH-2", "茅洲河中游段（马田）", "440311006", 9.0, 10.5),
    ("MZH-3", "茅洲河下游段（公明）", "440311002", 6.5, 8.0),
    ("EJS", "鹅颈水", "440311001", 21.0, 22.5),
    ("LCS", "楼村水", "440311003", 18.5, 20.0),
    ("MDH", "木墩河", "440311002", 11.0, 12.2),
    ("XPTH", "新陂头河", "440311003", 16.0, 17.5),
    ("DKS", "东坑水", "440311006", 13.5, 15.0),
]
POINT_KINDS = ["下穿通道", "立交桥底", "城中村低洼处", "道路交叉口", "地铁站出入口", "工业区路段"]


@dataclass
class _Places:
    rng: np.random.Generator
    shapes: dict[str, BaseGeometry]

    def point(self, sub_code: str) -> tuple[float, float]:
        geom = self.shapes[sub_code]
        minx, miny, maxx, maxy = geom.bounds
        while True:
            x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if contains_xy(geom, x, y):
                return round(float(x), 6), round(float(y), 6)


def _places(db: Session) -> _Places:
    areas = {a.code: a for a in geo_service.get_all(db, kind="subdistrict")}
    missing = set(SUBDISTRICTS) - areas.keys()
    if missing:
        raise RuntimeError(f"load the registry demo first: subdistricts {sorted(missing)} missing")
    return _Places(
        rng=np.random.default_rng(SEED),
        # Kept ~200 m inside each subdistrict so no point lands on a neighbour after rounding.
        shapes={c: shape(a.geometry).buffer(-0.002) for c, a in areas.items()},
    )


def _asset(db: Session, **fields: object) -> FloodAsset:
    existing = assets.get(db, code=str(fields["code"]))
    if existing is not None:
        return existing
    fields.setdefault("synthetic", True)
    attrs = dict(fields.pop("attrs", {}) or {})  # type: ignore[call-overload]
    attrs.setdefault("note", SYNTHETIC)
    asset = assets.create(db, data=AssetCreate(attrs=attrs, **fields))
    if not assets.thresholds(db, asset_id=asset.id):
        defaults = assets.default_thresholds(asset)
        if defaults:
            assets.set_thresholds(db, asset=asset, items=defaults)
    return asset


def _sensor(db: Session, code: str, kind: str, name_zh: str, **fields: object) -> Sensor:
    existing = sensors.get(db, code=code)
    if existing is not None:
        return existing
    data = SensorCreate(code=code, kind=kind, name_zh=name_zh, synthetic=True, **fields)
    return sensors.create(db, data=data)


def _water(db: Session, p: _Places) -> None:
    lon, lat = p.point("440311002")
    _asset(
        db,
        code="GMSK",
        kind="reservoir",
        name_zh="公明水库",
        name_en="Gongming Reservoir",
        lon=lon,
        lat=lat,
        flood_limit_level_m=59.0,
        normal_level_m=59.7,
        check_level_m=63.5,
        attrs={
            "note": REAL_NAME,
            "source": WATER_SOURCE,
            "normal_level_real": True,
            "storage_1e8_m3": 1.50,
            "water_area_km2": 2.4,
            "design_flood": "500年一遇",
            "check_flood": "5000年一遇",
        },
    )
    lon, lat = p.point("440311002")
    _asset(
        db,
        code="MZH",
        kind="river",
        name_zh="茅洲河",
        name_en="Maozhou River",
        lon=lon,
        lat=lat,
        attrs={
            "note": REAL_NAME,
            "length_in_district_km": 12.77,
            "source": "https://freewechat.com/a/MzA3NTcxNDc2MQ==/2650088665/1",
        },
    )
    for code, name, sub, warn, guar in RIVERS:
        lon, lat = p.point(sub)
        section = code.startswith("MZH-")
        _asset(
            db,
            code=code,
            kind="river_section" if section else "river",
            name_zh=name,
            lon=lon,
            lat=lat,
            parent_code="MZH" if section else None,
            warning_level_m=warn,
            guaranteed_level_m=guar,
            attrs={"note": REAL_NAME, "tributary_of": None if section else "茅洲河"},
        )


def _response(db: Session, p: _Places) -> None:
    for i, (sub, (short, name, _w)) in enumerate(SUBDISTRICTS.items()):
        lon, lat = p.point(sub)
        _asset(
            db,
            code=f"PS-{short}",
            kind="pumping_station",
            name_zh=f"{name}排涝泵站",
            lon=lon,
            lat=lat,
            capacity=float(3600 * (2 + i % 4)),
        )
        lon, lat = p.point(sub)
        _asset(
            db,
            code=f"TEAM-{short}",
            kind="team",
            name_zh=f"{name}街道防汛应急抢险队",
            lon=lon,
            lat=lat,
            capacity=float(20 + 5 * (i % 4)),
        )
        lon, lat = p.point(sub)
        _asset(
            db,
            code=f"FB-{short}",
            kind="flood_barrier",
            name_zh=f"{name}防洪挡板存放点",
            lon=lon,
            lat=lat,
            attrs={"panels": 40 + 10 * i, "length_m": 60 + 15 * i},
        )
    for n in range(8):
        sub = list(SUBDISTRICTS)[n % 6]
        short, name, _w = SUBDISTRICTS[sub]
        base = assets.get_or_404(db, code=f"PS-{short}")
        _asset(
            db,
            code=f"PT-{n + 1:02d}",
            kind="pump_truck",
            name_zh=f"移动泵车{n + 1:02d}号（{name}）",
            lon=base.lon,
            lat=base.lat,
            base_code=base.code,
            capacity=float((500, 1000, 2000, 3000)[n % 4]),
        )
        lon, lat = p.point(sub)
        _asset(
            db,
            code=f"SH-{n + 1:02d}",
            kind="shelter",
            name_zh=f"{name}避险安置点{n // 6 + 1}号",
            lon=lon,
            lat=lat,
            capacity=float(200 + 150 * n),
        )


def _waterlogging(db: Session, p: _Places) -> list[FloodAsset]:
    points = []
    for i, (sub, (short, name, _w)) in enumerate(SUBDISTRICTS.items()):
        for k in (1, 2):
            lon, lat = p.point(sub)
            kind = POINT_KINDS[(2 * i + k) % len(POINT_KINDS)]
            points.append(
                _asset(
                    db,
                    code=f"WP-{short}-{k}",
                    kind="waterlogging_point",
                    name_zh=f"{name}街道{k}号内涝积水点（{kind}）",
                    lon=lon,
                    lat=lat,
                )
            )
    return points


def _sensors(db: Session, p: _Places, points: list[FloodAsset]) -> list[Sensor]:
    """Rain gauges (three per subdistrict and one at the reservoir), a level gauge at the
    reservoir and on every river or section, a ponding sensor at every waterlogging point."""
    made = []
    for sub, (short, name, _w) in SUBDISTRICTS.items():
        for k in (1, 2, 3):
            lon, lat = p.point(sub)
            made.append(
                _sensor(
                    db, f"RG-{short}-{k:02d}", "rain_gauge", f"{name}{k}号雨量站", lon=lon, lat=lat
                )
            )
    made.append(_sensor(db, "RG-GMSK-01", "rain_gauge", "公明水库雨量站", asset_code="GMSK"))
    made.append(
        _sensor(
            db,
            "LG-GMSK-01",
            "level_gauge",
            "公明水库坝前水位计",
            asset_code="GMSK",
            min_value=40.0,
            max_value=70.0,
            max_rate=0.1,
        )
    )
    for code, name, *_ in RIVERS:
        made.append(
            _sensor(
                db,
                f"LG-{code}",
                "level_gauge",
                f"{name}水位计",
                asset_code=code,
                min_value=0.0,
                max_value=40.0,
            )
        )
    for wp in points:
        made.append(
            _sensor(
                db,
                f"PD-{wp.code[3:]}",
                "ponding_sensor",
                f"{wp.name_zh}积水监测",
                asset_code=wp.code,
            )
        )
    return made


def _storm_mm(t_h: float, weight: float, jitter: float) -> float:
    """Rain of one 5-minute step, t_h hours before the load: a storm peaking 2 h before,
    a few hours wide, scaled per subdistrict."""
    peak = 2.0 + jitter
    return max(0.0, weight * 2.5 * math.exp(-(((t_h - peak) / 1.3) ** 2)) - 0.05)


def _readings(db: Session, now: datetime, demo_sensors: list[Sensor]) -> Iterator[RawReading]:
    end = rain.floor_to(now, timedelta(minutes=5))
    steps = [end - timedelta(minutes=5 * i) for i in range(288, -1, -1)]
    assets_by_id = {a.id: a for a in db.scalars(select(FloodAsset))}
    subs = {a.id: a.code for a in geo_service.get_all(db, kind="subdistrict")}
    for s in demo_sensors:
        sub_code = subs.get(s.subdistrict_id) if s.subdistrict_id is not None else None
        weight = SUBDISTRICTS.get(sub_code or "", ("", "", 1.0))[2]
        jitter = (s.id % 5) * 0.1
        acc = 0.0
        for ts in steps:
            t_h = (end - ts).total_seconds() / 3600
            mm = round(_storm_mm(t_h, weight, jitter), 1)
            acc = acc * 0.96 + mm  # water that has fallen and not yet drained away
            asset = assets_by_id.get(s.asset_id) if s.asset_id else None
            if s.kind == "rain_gauge":
                value = mm
            elif s.kind == "ponding_sensor":
                value = round(max(0.0, acc * 0.6 * (1.0 + (s.id % 3) * 0.3) - 4.0), 1)
            elif asset is not None and asset.kind == "reservoir":
                value = round(58.2 + acc * 0.01, 3)
            else:
                warn = asset.warning_level_m if asset and asset.warning_level_m else 10.0
                value = round(warn - 1.6 + acc * 0.03 * weight, 3)
            yield RawReading(s.code, ts, value, None, None, {})


def load_flood_demo(
    db: Session, *, now: datetime | None = None, with_readings: bool = True
) -> None:
    """Load the flood demo into the caller's transaction (see the module docstring)."""
    p = _places(db)
    _water(db, p)
    _response(db, p)
    points = _waterlogging(db, p)
    demo_sensors = _sensors(db, p, points)
    db.flush()
    ids = [s.id for s in demo_sensors]
    has_readings = db.scalar(select(exists().where(Reading.sensor_id.in_(ids))))
    if with_readings and not has_readings:
        now = now or utcnow()
        readings = list(_readings(db, now, demo_sensors))
        ingest(db, readings=readings, source="demo", state=IngestState(), now=now)
