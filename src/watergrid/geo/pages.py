"""The district map page, and the map settings shared with the grid and zone cards."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any, TypeAlias

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.geo import service
from watergrid.geo.api import to_datum
from watergrid.geo.models import Area
from watergrid.settings import get_settings
from watergrid.web.render import render

log = logging.getLogger("watergrid.geo.pages")
router = APIRouter(include_in_schema=False)
Reader: TypeAlias = Annotated[Principal, Depends(allow("registry.read"))]

DATUMS = ("wgs84", "gcj02")
LAYER_KINDS = ("subdistrict", "grid", "zone")


def map_datum() -> str:
    """The datum the outlines are drawn in: the basemap's when tiles are configured (so they
    line up on an AMap/Tencent GCJ-02 or a Tianditu/OSM WGS84 basemap), WGS84 without tiles
    (nothing to line up with, and WGS84 is what is stored)."""
    s = get_settings()
    if not s.tile_url:
        return "wgs84"
    if s.tile_datum not in DATUMS:
        log.warning("unknown tile_datum %r; drawing in wgs84", s.tile_datum)
        return "wgs84"
    return s.tile_datum


def tile_config() -> dict[str, str] | None:
    s = get_settings()
    if not s.tile_url:
        return None
    return {"url": s.tile_url, "attribution": s.tile_attribution, "datum": map_datum()}


def feature_collection(
    areas: Iterable[tuple[Area, str]], *, datum: str, lang: str
) -> dict[str, Any]:
    """Outlines for a small map: (area, role) pairs, role "main" or "context"."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "kind": a.kind,
                    "code": a.code,
                    "name": a.name_en if lang == "en" and a.name_en else a.name_zh,
                    "role": role,
                },
                "geometry": to_datum(a.geometry, datum),
            }
            for a, role in areas
        ],
    }


@router.get("/map", response_class=HTMLResponse)
def district_map(request: Request, db: SessionDep, principal: Reader) -> HTMLResponse:
    areas = service.get_all(db)
    counts = Counter(a.kind for a in areas)
    synthetic_kinds = [k for k in LAYER_KINDS if any(a.synthetic for a in areas if a.kind == k)]
    mine = [a for a in areas if a.kind == "grid" and a.id in principal.grid_ids]
    may_open = [
        a.code
        for a in areas
        if (a.kind == "grid" and principal.covers_grid(a.id))
        or (a.kind == "zone" and principal.covers_zone(a.id))
    ]
    datum = map_datum()
    config = {
        "geojson": f"/api/v1/areas.geojson?datum={datum}",
        "datum": datum,
        "tiles": tile_config(),
        "mine": [a.code for a in mine],
        "mayOpen": may_open,
    }
    return render(
        request,
        "map.html",
        counts={k: counts.get(k, 0) for k in LAYER_KINDS},
        synthetic_kinds=synthetic_kinds,
        mine=mine,
        config=config,
    )
