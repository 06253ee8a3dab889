"""Property: any point inside the district with any category is routed to the department the
responsibility rules give, worked out here independently — every rule tried against the
area geometries with shapely, most specific category first, then grid, zone, subdistrict,
district — rather than through locate() and org.service.responsible_department()."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, shape
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.workorders.helpers import T0

from watergrid.geo import service as geo_service
from watergrid.org.models import Department, ResponsibilityRule
from watergrid.org.service import DISPATCH_DESK_CODE
from watergrid.workorders import service
from watergrid.workorders.categories import seed_models
from watergrid.workorders.schemas import OrderCreate

CATEGORY_CODES = [c.code for c in seed_models()]
AREA_RANK = {"grid": 0, "zone": 1, "subdistrict": 2, "district": 3}


class Oracle:
    def __init__(self, db: Session) -> None:
        self.areas = {a.id: (a.kind, shape(a.geometry)) for a in geo_service.get_all(db)}
        self.district = next(g for k, g in self.areas.values() if k == "district")
        self.rules = [
            (r.category_code, r.area_id, r.department_id)
            for r in db.scalars(select(ResponsibilityRule))
        ]
        self.desk = db.scalar(select(Department.id).where(Department.code == DISPATCH_DESK_CODE))
        self.edges = [g.boundary for k, g in self.areas.values() if k in ("grid", "zone")]

    def near_an_edge(self, p: Point) -> bool:
        # On a shared edge either neighbour is right; such points say nothing about routing.
        return any(e.distance(p) < 1e-6 for e in self.edges)

    def department(self, category: str, p: Point) -> int | None:
        parts = category.split(".")
        chain = [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + ["*"]
        best: tuple[tuple[int, int, int], int] | None = None
        for cat, area_id, dept in self.rules:
            if cat not in chain:
                continue
            if area_id is None:
                rank = (AREA_RANK["district"], 0)
            else:
                kind, geom = self.areas[area_id]
                if not geom.contains(p):
                    continue
                # Among several zones the lowest id wins, as documented for the rule book.
                rank = (AREA_RANK[kind], area_id if kind == "zone" else 0)
            key = (chain.index(cat), *rank)
            if best is None or key < best[0]:
                best = (key, dept)
        return best[1] if best else self.desk


def valid_attributes(db: Session, code: str) -> dict[str, Any]:
    cat = service.get_category(db, code=code)
    out: dict[str, Any] = {}
    for a in cat.attributes:
        if not a.required:
            continue
        out[a.code] = {
            "number": "3",
            "datetime": "2026-03-01T08:00+08:00",
            "singlevaluelist": a.values[0].key if a.values else "",
            "multivaluelist": [a.values[0].key] if a.values else [],
        }.get(a.datatype, "样例")
    return out


@pytest.fixture
def oracle(db: Session) -> Oracle:
    return Oracle(db)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fx=st.floats(0, 1, allow_nan=False),
    fy=st.floats(0, 1, allow_nan=False),
    category=st.sampled_from(CATEGORY_CODES),
)
def test_any_point_any_category_goes_where_the_rules_say(
    db: Session, oracle: Oracle, fx: float, fy: float, category: str
) -> None:
    minx, miny, maxx, maxy = oracle.district.bounds
    lon, lat = minx + fx * (maxx - minx), miny + fy * (maxy - miny)
    p = Point(lon, lat)
    assume(oracle.district.contains(p) and not oracle.near_an_edge(p))
    data = OrderCreate(
        category_code=category,
        description="性质测试",
        lon=lon,
        lat=lat,
        attributes=valid_attributes(db, category),
    )
    receipt = service.create_order(
        db, data=data, source="api", actor=None, idempotency_key=None, now=T0
    ).receipt
    want = oracle.department(category, p)
    got = (
        db.scalar(select(Department.id).where(Department.code == receipt.department.code))
        if receipt.department
        else None
    )
    assert got == want, (category, lon, lat, receipt.department)


def test_the_oracle_sees_the_narrow_rules(db: Session, oracle: Oracle) -> None:
    """Guard against a vacuous property: the demo has area-specific rules, and a point in
    W01 with a drainage category lands on the grid's own rule."""
    assert any(area is not None for _, area, _ in oracle.rules)
    w01 = geo_service.get_or_404(db, code="W01")
    p = shape(w01.geometry).representative_point()
    rule = db.scalar(
        select(ResponsibilityRule).where(
            ResponsibilityRule.category_code == "drainage", ResponsibilityRule.area_id == w01.id
        )
    )
    assert rule is not None
    assert oracle.department("drainage.blocked_drain", p) == rule.department_id
