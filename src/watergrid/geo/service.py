"""Areas and the in-memory spatial snapshot built from them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from watergrid.errors import AppError, not_found
from watergrid.geo.locator import Locator
from watergrid.geo.models import AREA_KINDS, Area, RegistryState


def registry_version(db: Session) -> int:
    return db.scalar(select(RegistryState.version).where(RegistryState.id == 1)) or 0


def bump_version(db: Session) -> None:
    """Call in every transaction that changes the registry."""
    changed = db.execute(
        update(RegistryState).where(RegistryState.id == 1).values(version=RegistryState.version + 1)
    ).rowcount  # type: ignore[attr-defined]
    if not changed:
        db.add(RegistryState(id=1, version=1))
        db.flush()


def get(db: Session, *, code: str) -> Area | None:
    return db.scalar(select(Area).where(Area.code == code))


def get_or_404(db: Session, *, code: str, kind: str | None = None) -> Area:
    area = get(db, code=code)
    if area is None or (kind is not None and area.kind != kind):
        raise not_found("area", "区域", code)
    return area


def get_all(db: Session, *, kind: str | None = None) -> list[Area]:
    q = select(Area).order_by(Area.kind, Area.code)
    if kind is not None:
        if kind not in AREA_KINDS:
            raise AppError(
                422, "unknown_kind", f"Unknown area kind {kind}", f"未知区域类型：{kind}"
            )
        q = q.where(Area.kind == kind)
    return list(db.scalars(q))


@dataclass(frozen=True)
class AreaLinks:
    """How areas nest and overlap: grid -> subdistrict, grid <-> zones (zones straddle grids)."""

    version: tuple[str, int]  # (database, registry version)
    grid_subdistrict: dict[int, int]
    grid_zones: dict[int, frozenset[int]]
    zone_grids: dict[int, frozenset[int]]
    by_id: dict[int, tuple[str, str, str, str]]  # id -> (kind, code, name_zh, name_en)


@dataclass(frozen=True)
class Snapshot:
    links: AreaLinks
    locator: Locator
    grid_ids: list[int]  # aligned with locator.grid_codes
    zone_id_by_code: dict[str, int]
    district_geometry: dict[str, Any] | None


_lock = threading.Lock()
_snapshot: Snapshot | None = None


def _build(db: Session, version: tuple[str, int]) -> Snapshot:
    areas = get_all(db)
    by_id = {a.id: (a.kind, a.code, a.name_zh, a.name_en) for a in areas}
    grids = [a for a in areas if a.kind == "grid"]
    zones = [a for a in areas if a.kind == "zone"]
    shapes: dict[int, BaseGeometry] = {a.id: shape(a.geometry) for a in grids + zones}
    grid_zones: dict[int, set[int]] = {g.id: set() for g in grids}
    zone_grids: dict[int, set[int]] = {z.id: set() for z in zones}
    for z in zones:
        for g in grids:
            # Touching along an edge is not straddling: require shared area.
            if shapes[z.id].intersection(shapes[g.id]).area > 1e-12:
                grid_zones[g.id].add(z.id)
                zone_grids[z.id].add(g.id)
    links = AreaLinks(
        version=version,
        grid_subdistrict={g.id: g.parent_id for g in grids if g.parent_id is not None},
        grid_zones={k: frozenset(v) for k, v in grid_zones.items()},
        zone_grids={k: frozenset(v) for k, v in zone_grids.items()},
        by_id=by_id,
    )
    locator = Locator.build(
        [(g.code, shapes[g.id]) for g in grids], [(z.code, shapes[z.id]) for z in zones]
    )
    district = next((a.geometry for a in areas if a.kind == "district"), None)
    return Snapshot(
        links=links,
        locator=locator,
        grid_ids=[g.id for g in grids],
        zone_id_by_code={z.code: z.id for z in zones},
        district_geometry=district,
    )


def snapshot(db: Session) -> Snapshot:
    """The current snapshot; rebuilt only when the registry version has moved."""
    global _snapshot
    version = (str(db.get_bind().engine.url), registry_version(db))
    current = _snapshot
    if current is not None and current.links.version == version:
        return current
    with _lock:
        if _snapshot is None or _snapshot.links.version != version:
            _snapshot = _build(db, version)
        return _snapshot


def area_links(db: Session) -> AreaLinks:
    return snapshot(db).links


def reach(
    links: AreaLinks, *, subdistrict_ids: set[int], grid_ids: set[int], zone_ids: set[int]
) -> tuple[set[int], set[int]]:
    """Grids and zones that a set of area scopes reaches: a subdistrict reaches its grids, a
    zone the grids it straddles, and any grid the zones lying on it."""
    grids = set(grid_ids)
    grids |= {g for g, s in links.grid_subdistrict.items() if s in subdistrict_ids}
    for z in zone_ids:
        grids |= links.zone_grids.get(z, frozenset())
    zones = set(zone_ids)
    for g in grids:
        zones |= links.grid_zones.get(g, frozenset())
    return grids, zones
