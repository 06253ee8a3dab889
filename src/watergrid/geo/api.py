"""Areas and locate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from shapely.geometry import mapping, shape

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.errors import forbidden
from watergrid.geo import service
from watergrid.geo.datum import transform_geometry, wgs84_to_gcj02
from watergrid.geo.locate import locate
from watergrid.geo.models import Area
from watergrid.geo.schemas import AreaRead, Location

router = APIRouter(prefix="/api/v1", tags=["registry"])
Reader = Annotated[Principal, Depends(allow("registry.read"))]


def check_area_scope(principal: Principal, area: Area) -> None:
    ok = {
        "district": True,
        "subdistrict": principal.covers_subdistrict(area.id),
        "grid": principal.covers_grid(area.id),
        "zone": principal.covers_zone(area.id),
    }[area.kind]
    if not ok:
        raise forbidden()


def to_datum(geometry: dict[str, Any], datum: str) -> dict[str, Any]:
    if datum == "wgs84":
        return geometry
    return dict(mapping(transform_geometry(shape(geometry), wgs84_to_gcj02)))


def area_read(
    area: Area, codes: dict[int, str], *, geometry: bool, datum: str = "wgs84"
) -> AreaRead:
    return AreaRead(
        id=area.id,
        kind=area.kind,
        code=area.code,
        name_zh=area.name_zh,
        name_en=area.name_en,
        parent_code=codes.get(area.parent_id) if area.parent_id else None,
        synthetic=area.synthetic,
        geometry=to_datum(area.geometry, datum) if geometry else None,
    )


@router.get("/locate", response_model=Location)
def locate_point(
    db: SessionDep,
    _: Reader,
    lon: float = Query(..., description="WGS84 longitude"),
    lat: float = Query(..., description="WGS84 latitude"),
) -> Location:
    return locate(db, lon=lon, lat=lat)


@router.get("/areas", response_model=list[AreaRead])
def list_areas(
    db: SessionDep,
    _: Reader,
    kind: Literal["district", "subdistrict", "grid", "zone"] | None = None,
) -> list[AreaRead]:
    areas = service.get_all(db, kind=kind)
    codes = {a.id: a.code for a in service.get_all(db)}
    return [area_read(a, codes, geometry=False) for a in areas]


@router.get("/areas.geojson")
def areas_geojson(
    db: SessionDep,
    _: Reader,
    kind: Literal["district", "subdistrict", "grid", "zone"] | None = None,
    datum: Literal["wgs84", "gcj02"] = "wgs84",
) -> dict[str, Any]:
    """Outlines for the map; `datum=gcj02` shifts them onto an AMap/Tencent basemap."""
    all_areas = service.get_all(db)
    codes = {a.id: a.code for a in all_areas}
    features = [
        {
            "type": "Feature",
            "id": a.code,
            "properties": {
                "kind": a.kind,
                "code": a.code,
                "name_zh": a.name_zh,
                "name_en": a.name_en,
                "parent_code": codes.get(a.parent_id) if a.parent_id else None,
                "synthetic": a.synthetic,
            },
            "geometry": to_datum(a.geometry, datum),
        }
        for a in all_areas
        if kind is None or a.kind == kind
    ]
    return {"type": "FeatureCollection", "datum": datum, "features": features}


@router.get("/areas/{code}", response_model=AreaRead)
def get_area(db: SessionDep, principal: Reader, code: str) -> AreaRead:
    area = service.get_or_404(db, code=code)
    check_area_scope(principal, area)
    codes = {a.id: a.code for a in service.get_all(db)}
    return area_read(area, codes, geometry=True)
