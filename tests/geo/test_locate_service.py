"""locate() over the demo registry: what a point resolves to, and the clear error outside."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, shape
from sqlalchemy.orm import Session

from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.geo.locate import locate, locate_many
from watergrid.org.categories import SERVICE_CATEGORIES


@pytest.fixture
def shapes(db: Session) -> dict[str, object]:
    return {a.code: shape(a.geometry) for a in geo_service.get_all(db)}


def _inside_points(district: object, n: int, seed: int) -> list[tuple[float, float]]:
    minx, miny, maxx, maxy = district.bounds  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    out: list[tuple[float, float]] = []
    while len(out) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if district.contains(Point(x, y)):  # type: ignore[attr-defined]
            out.append((float(x), float(y)))
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_points_resolve_to_one_grid_inside_its_subdistrict(db: Session, seed: int) -> None:
    areas = {a.code: a for a in geo_service.get_all(db)}
    district = shape(areas["440311"].geometry)
    (lon, lat) = _inside_points(district, 1, seed)[0]
    loc = locate(db, lon=lon, lat=lat)
    grid = shape(areas[loc.grid.code].geometry)
    sub = shape(areas[loc.subdistrict.code].geometry)
    p = Point(lon, lat)
    assert grid.intersects(p)
    assert sub.intersects(p)
    containing = [c for c, a in areas.items() if a.kind == "grid" and shape(a.geometry).contains(p)]
    assert containing in ([loc.grid.code], [])  # [] only for a point exactly on an edge
    assert areas[loc.grid.code].parent_id == areas[loc.subdistrict.code].id
    assert set(loc.departments) == set(SERVICE_CATEGORIES)
    for z in loc.zones:
        assert shape(areas[z.code].geometry).intersects(p)


@given(lon=st.floats(113.0, 115.0, allow_nan=False), lat=st.floats(22.0, 23.5, allow_nan=False))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_points_outside_get_the_clear_error(db: Session, lon: float, lat: float) -> None:
    district = shape(geo_service.get_or_404(db, code="440311").geometry)
    if district.buffer(1e-9).contains(Point(lon, lat)):
        return  # inside: covered by the test above
    with pytest.raises(AppError) as err:
        locate(db, lon=lon, lat=lat)
    assert err.value.status == 422 and err.value.code == "outside_district"
    assert "不在本区范围内" in err.value.message_zh


def test_locate_many_agrees_with_locate(db: Session) -> None:
    district = shape(geo_service.get_or_404(db, code="440311").geometry)
    pts = _inside_points(district, 300, 7)
    lon = np.array([p[0] for p in pts])
    lat = np.array([p[1] for p in pts])
    idx, codes = locate_many(db, lon=lon, lat=lat)
    for (x, y), i in zip(pts, idx, strict=True):
        assert codes[i] == locate(db, lon=x, lat=y).grid.code


def test_locate_answers_who_is_responsible(db: Session) -> None:
    grid = geo_service.get_or_404(db, code="W01")
    c = shape(grid.geometry).representative_point()
    loc = locate(db, lon=c.x, lat=c.y)
    assert loc.grid.code == "W01" and loc.subdistrict.code == "440311003"
    assert loc.party_group is not None and loc.party_group.number == 1
    assert loc.departments["drainage"] is not None
    assert "*" in (loc.party_group.leader.mobile_masked if loc.party_group.leader else "*")
