"""Where a point lies and who answers for it: subdistrict, grid, zones, party group, chain
leader, liaisons and the responsible department per service category.

Everything a lookup needs is held in a per-process view rebuilt only when the registry
version moves, so a lookup costs one small query (the version) plus in-memory work."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.geo.schemas import (
    AreaRef,
    DepartmentRef,
    Location,
    PartyGroupRef,
    PersonRef,
    ZoneLocation,
)
from watergrid.org import service as org_service
from watergrid.org.categories import SERVICE_CATEGORIES


def outside_district(lon: float, lat: float) -> AppError:
    return AppError(
        422,
        "outside_district",
        f"Point ({lon}, {lat}) lies outside the district",
        "该位置不在本区范围内，请在地图上重新选点",
    )


@dataclass(frozen=True)
class RegistryView:
    snapshot: geo_service.Snapshot
    areas: dict[int, AreaRef]
    district: AreaRef
    party_groups: dict[int, PartyGroupRef]  # grid id ->
    chain_leaders: dict[int, PersonRef]  # zone id ->
    liaisons: dict[int, list[PersonRef]]
    departments: dict[int, DepartmentRef]
    rules: org_service.RuleBook


_lock = threading.Lock()
_view: RegistryView | None = None


def _person_ref(p: object) -> PersonRef:
    return PersonRef(
        code=p.code,  # type: ignore[attr-defined]
        name=p.name,  # type: ignore[attr-defined]
        mobile_masked=org_service.mask_mobile(p.mobile),  # type: ignore[attr-defined]
    )


def _build(db: Session, snap: geo_service.Snapshot) -> RegistryView:
    areas = {
        i: AreaRef(id=i, kind=k, code=c, name_zh=zh, name_en=en)
        for i, (k, c, zh, en) in snap.links.by_id.items()
    }
    district = next(a for a in areas.values() if a.kind == "district")
    people = {p.id: p for p in org_service.get_people(db)}
    groups: dict[int, PartyGroupRef] = {}
    for grid_id in snap.grid_ids:
        g = org_service.party_group_for_grid(db, grid_id=grid_id)
        if g is not None:
            leader = people.get(g.leader_id) if g.leader_id else None
            groups[grid_id] = PartyGroupRef(
                number=g.number, name=g.name, leader=_person_ref(leader) if leader else None
            )
    leaders: dict[int, PersonRef] = {}
    liaisons: dict[int, list[PersonRef]] = {}
    for zone_id in snap.zone_id_by_code.values():
        chain = org_service.zone_people(db, zone_id=zone_id, role="chain_leader")
        if chain:
            leaders[zone_id] = _person_ref(chain[0])
        liaisons[zone_id] = [
            _person_ref(p) for p in org_service.zone_people(db, zone_id=zone_id, role="liaison")
        ]
    departments = {
        d.id: DepartmentRef(code=d.code, name_zh=d.name_zh, name_en=d.name_en)
        for d in org_service.get_departments(db)
    }
    return RegistryView(
        snapshot=snap,
        areas=areas,
        district=district,
        party_groups=groups,
        chain_leaders=leaders,
        liaisons=liaisons,
        departments=departments,
        rules=org_service.rule_book(db),
    )


def view(db: Session) -> RegistryView:
    global _view
    snap = geo_service.snapshot(db)
    current = _view
    if current is not None and current.snapshot is snap:
        return current
    with _lock:
        if _view is None or _view.snapshot is not snap:
            _view = _build(db, snap)
        return _view


def _validate(lon: float, lat: float) -> None:
    if not (np.isfinite(lon) and np.isfinite(lat)) or not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise AppError(
            422, "bad_coordinates", f"Not a WGS84 coordinate: ({lon}, {lat})", "坐标格式不正确"
        )


def locate(db: Session, *, lon: float, lat: float) -> Location:
    _validate(lon, lat)
    v = view(db)
    idx = v.snapshot.locator.grid_index(lon, lat)
    if idx < 0:
        raise outside_district(lon, lat)
    grid_id = v.snapshot.grid_ids[idx]
    sub_id = v.snapshot.links.grid_subdistrict[grid_id]
    zone_ids = [v.snapshot.zone_id_by_code[c] for c in v.snapshot.locator.zone_codes_at(lon, lat)]
    departments: dict[str, DepartmentRef | None] = {}
    for cat in SERVICE_CATEGORIES:
        dept_id = org_service.responsible_department(
            v.rules, category_code=cat, grid_id=grid_id, zone_ids=zone_ids, subdistrict_id=sub_id
        )
        departments[cat] = v.departments.get(dept_id) if dept_id is not None else None
    return Location(
        lon=lon,
        lat=lat,
        district=v.district,
        subdistrict=v.areas[sub_id],
        grid=v.areas[grid_id],
        zones=[
            ZoneLocation(
                **v.areas[z].model_dump(),
                chain_leader=v.chain_leaders.get(z),
                liaisons=v.liaisons.get(z, []),
            )
            for z in zone_ids
        ],
        party_group=v.party_groups.get(grid_id),
        departments=departments,
    )


def locate_many(db: Session, *, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Vectorised: grid index per point (-1 outside) and the grid codes they index."""
    v = view(db)
    return v.snapshot.locator.grid_indices(lon, lat), v.snapshot.locator.grid_codes
