"""Flood assets (reservoirs, rivers and sections, waterlogging points, pumping stations, pump
trucks, teams, shelters, flood barriers) and their alarm thresholds. Each asset's
subdistrict and grid come from its point through the registry's locator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from watergrid.errors import AppError, FieldError, invalid, not_found
from watergrid.flood import kinds
from watergrid.flood.models import AlarmThreshold, FloodAsset
from watergrid.flood.schemas import (
    AlarmMetric,
    AssetCreate,
    AssetRead,
    AssetUpdate,
    ThresholdIn,
    ThresholdRead,
)
from watergrid.geo import service as geo_service
from watergrid.geo.locate import outside_district

LEVEL_FIELDS = (
    "flood_limit_level_m",
    "normal_level_m",
    "check_level_m",
    "warning_level_m",
    "guaranteed_level_m",
)


def resolve_place(db: Session, *, lon: float, lat: float) -> tuple[int, int]:
    """(subdistrict id, grid id) of a WGS84 point; 422 outside the district."""
    snap = geo_service.snapshot(db)
    idx = snap.locator.grid_index(lon, lat)
    if idx < 0:
        raise outside_district(lon, lat)
    grid_id = snap.grid_ids[idx]
    return snap.links.grid_subdistrict[grid_id], grid_id


def get(db: Session, *, code: str) -> FloodAsset | None:
    return db.scalar(select(FloodAsset).where(FloodAsset.code == code))


def get_or_404(db: Session, *, code: str) -> FloodAsset:
    asset = get(db, code=code)
    if asset is None:
        raise not_found("flood asset", "防汛设施", code)
    return asset


def get_all(
    db: Session,
    *,
    kind: str | None = None,
    subdistrict_id: int | None = None,
    active_only: bool = False,
) -> list[FloodAsset]:
    q = select(FloodAsset).order_by(FloodAsset.kind, FloodAsset.code)
    if kind is not None:
        q = q.where(FloodAsset.kind == kind)
    if subdistrict_id is not None:
        q = q.where(FloodAsset.subdistrict_id == subdistrict_id)
    if active_only:
        q = q.where(FloodAsset.active.is_(True))
    return list(db.scalars(q))


def _check_levels(kind: str, levels: dict[str, Any]) -> None:
    """Characteristic levels must rise in the order the regulations define them."""
    order = {
        "reservoir": ("flood_limit_level_m", "normal_level_m", "check_level_m"),
        "river": ("warning_level_m", "guaranteed_level_m"),
        "river_section": ("warning_level_m", "guaranteed_level_m"),
    }.get(kind, ())
    present = [(f, levels[f]) for f in order if levels.get(f) is not None]
    for (fa, a), (fb, b) in zip(present, present[1:], strict=False):
        if a > b:
            raise invalid([FieldError(fb, f"{fb} must not be below {fa}", "特征水位顺序不正确")])


def _ref(db: Session, code: str | None, field: str, kinds_ok: Sequence[str]) -> int | None:
    if code is None:
        return None
    other = get(db, code=code)
    if other is None or other.kind not in kinds_ok:
        raise invalid(
            [FieldError(field, f"no {'/'.join(kinds_ok)} {code}", f"未找到关联设施：{code}")]
        )
    return other.id


def create(db: Session, *, data: AssetCreate) -> FloodAsset:
    if get(db, code=data.code) is not None:
        raise AppError(
            409, "asset_exists", f"Asset {data.code} exists", f"防汛设施 {data.code} 已存在"
        )
    levels = data.model_dump(include=set(LEVEL_FIELDS))
    _check_levels(data.kind, levels)
    if data.kind == "river_section" and data.parent_code is None:
        raise invalid(
            [FieldError("parent_code", "a river section needs its river", "河段须指定所属河流")]
        )
    sub_id, grid_id = resolve_place(db, lon=data.lon, lat=data.lat)
    asset = FloodAsset(
        code=data.code,
        kind=data.kind,
        name_zh=data.name_zh,
        name_en=data.name_en,
        parent_id=_ref(db, data.parent_code, "parent_code", ("river",)),
        base_id=_ref(db, data.base_code, "base_code", tuple(kinds.ASSET_KINDS)),
        lon=data.lon,
        lat=data.lat,
        subdistrict_id=sub_id,
        grid_id=grid_id,
        capacity=data.capacity,
        attrs=dict(data.attrs),
        synthetic=data.synthetic,
        active=data.active,
        **levels,
    )
    db.add(asset)
    db.flush()
    return asset


def update(db: Session, *, asset: FloodAsset, data: AssetUpdate) -> FloodAsset:
    changes = data.model_dump(exclude_unset=True)
    levels = {f: changes.get(f, getattr(asset, f)) for f in LEVEL_FIELDS}
    _check_levels(asset.kind, levels)
    if "lon" in changes or "lat" in changes:
        lon, lat = changes.get("lon", asset.lon), changes.get("lat", asset.lat)
        asset.subdistrict_id, asset.grid_id = resolve_place(db, lon=lon, lat=lat)
    for name, value in changes.items():
        if name == "attrs" and value is not None:
            value = dict(value)
        setattr(asset, name, value)
    db.flush()
    return asset


def to_read(db: Session, assets: Sequence[FloodAsset]) -> list[AssetRead]:
    codes = {i: v[1] for i, v in geo_service.area_links(db).by_id.items()}
    ref_ids = {a.parent_id for a in assets if a.parent_id} | {
        a.base_id for a in assets if a.base_id
    }
    refs = (
        dict(
            db.execute(
                select(FloodAsset.id, FloodAsset.code).where(FloodAsset.id.in_(ref_ids))
            ).all()
        )
        if ref_ids
        else {}
    )
    return [
        AssetRead(
            id=a.id,
            code=a.code,
            kind=a.kind,
            name_zh=a.name_zh,
            name_en=a.name_en,
            lon=a.lon,
            lat=a.lat,
            parent_code=refs.get(a.parent_id) if a.parent_id else None,
            base_code=refs.get(a.base_id) if a.base_id else None,
            capacity=a.capacity,
            attrs=a.attrs or {},
            synthetic=a.synthetic,
            active=a.active,
            subdistrict_code=codes.get(a.subdistrict_id) if a.subdistrict_id else None,
            grid_code=codes.get(a.grid_id) if a.grid_id else None,
            **{f: getattr(a, f) for f in LEVEL_FIELDS},
        )
        for a in assets
    ]


def geojson(db: Session, *, kind: str | None = None) -> dict[str, Any]:
    """Assets as a FeatureCollection for the map (WGS84)."""
    features = [
        {
            "type": "Feature",
            "id": a.code,
            "geometry": {"type": "Point", "coordinates": [a.lon, a.lat]},
            "properties": a.model_dump(exclude={"lon", "lat"})
            | {"kind_zh": kinds.ASSET_KINDS[a.kind]},
        }
        for a in to_read(db, get_all(db, kind=kind, active_only=True))
    ]
    return {"type": "FeatureCollection", "features": features}


# -- thresholds -----------------------------------------------------------------------------


def thresholds(db: Session, *, asset_id: int) -> list[AlarmThreshold]:
    return list(
        db.scalars(
            select(AlarmThreshold)
            .where(AlarmThreshold.asset_id == asset_id)
            .order_by(AlarmThreshold.metric, AlarmThreshold.level)
        )
    )


def set_thresholds(
    db: Session, *, asset: FloodAsset, items: Sequence[ThresholdIn]
) -> list[AlarmThreshold]:
    """Replace the asset's thresholds. Within a metric, a higher level must not be easier to
    reach than a lower one. Running consumers pick the change up on their next directory
    refresh (WATERGRID_FLOOD_DIRECTORY_REFRESH_S)."""
    seen: dict[tuple[str, int], ThresholdIn] = {}
    for t in items:
        if (t.metric, t.level) in seen:
            raise invalid(
                [FieldError("level", f"level {t.level} twice for {t.metric}", "同一指标的等级重复")]
            )
        seen[(t.metric, t.level)] = t
    for metric in {m for m, _ in seen}:
        ladder = [seen[k] for k in sorted(k for k in seen if k[0] == metric)]
        for lo, hi in zip(ladder, ladder[1:], strict=False):
            if hi.raise_at < lo.raise_at:
                raise invalid(
                    [
                        FieldError(
                            "raise_at",
                            f"level {hi.level} below level {lo.level}",
                            "高等级阈值不得低于低等级",
                        )
                    ]
                )
    db.execute(delete(AlarmThreshold).where(AlarmThreshold.asset_id == asset.id))
    rows = [AlarmThreshold(asset_id=asset.id, **t.model_dump()) for t in seen.values()]
    db.add_all(rows)
    db.flush()
    return rows


def default_thresholds(asset: FloodAsset) -> list[ThresholdIn]:
    """A starting ladder from the asset's characteristic levels (administrators tune it):

    - rivers and sections: blue 0.5 m below the warning level, yellow at it, orange half-way
      to the guaranteed level, red at the guaranteed level;
    - reservoirs: blue 0.5 m below the flood-limit level, yellow at it, orange at the normal
      level, red 1 m below the check level;
    - waterlogging points: 10 / 15 / 30 / 50 cm of ponding (kerb, pedestrians, cars, evacuation).

    Levels clear 0.1 m (ponding 3 cm) below where they rise, after staying there 10 minutes;
    they rise once the condition has held 2 minutes."""
    ladder: list[tuple[AlarmMetric, int, float, float]] = []  # metric, level, raise_at, band
    if asset.kind in ("river", "river_section") and asset.warning_level_m is not None:
        w = asset.warning_level_m
        g = asset.guaranteed_level_m if asset.guaranteed_level_m is not None else w + 1.0
        ladder = [
            ("water_level", 1, w - 0.5, 0.1),
            ("water_level", 2, w, 0.1),
            ("water_level", 3, (w + g) / 2, 0.1),
            ("water_level", 4, g, 0.1),
        ]
    elif asset.kind == "reservoir" and asset.flood_limit_level_m is not None:
        f = asset.flood_limit_level_m
        n = asset.normal_level_m if asset.normal_level_m is not None else f + 1.0
        c = asset.check_level_m if asset.check_level_m is not None else n + 3.0
        ladder = [
            ("water_level", 1, f - 0.5, 0.1),
            ("water_level", 2, f, 0.1),
            ("water_level", 3, n, 0.1),
            ("water_level", 4, max(c - 1.0, n), 0.1),
        ]
    elif asset.kind == "waterlogging_point":
        ladder = [
            ("ponding_depth", lvl, cm, 3.0)
            for lvl, cm in ((1, 10.0), (2, 15.0), (3, 30.0), (4, 50.0))
        ]
    return [
        ThresholdIn(
            metric=m,
            level=lvl,
            raise_at=round(at, 3),
            clear_at=round(at - band, 3),
            raise_after_s=120,
            clear_after_s=600,
            note="",
        )
        for m, lvl, at, band in ladder
    ]


def threshold_reads(rows: Sequence[AlarmThreshold]) -> list[ThresholdRead]:
    return [ThresholdRead.model_validate(r) for r in rows]
