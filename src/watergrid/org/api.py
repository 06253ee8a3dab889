"""Grid and zone cards, departments, people."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.geo import service as geo_service
from watergrid.geo.api import check_area_scope
from watergrid.org import cards, service
from watergrid.org.schemas import DepartmentRead, GridCard, PersonRead, ZoneCard

router = APIRouter(prefix="/api/v1", tags=["registry"])
Reader = Annotated[Principal, Depends(allow("registry.read"))]


@router.get("/grids/{code}/card", response_model=GridCard)
def grid_card(db: SessionDep, principal: Reader, code: str) -> GridCard:
    grid = geo_service.get_or_404(db, code=code, kind="grid")
    check_area_scope(principal, grid)
    return cards.grid_card(db, grid=grid, full_contacts=principal.can("people.contacts"))


@router.get("/zones/{code}/card", response_model=ZoneCard)
def zone_card(db: SessionDep, principal: Reader, code: str) -> ZoneCard:
    zone = geo_service.get_or_404(db, code=code, kind="zone")
    check_area_scope(principal, zone)
    return cards.zone_card(db, zone=zone, full_contacts=principal.can("people.contacts"))


@router.get("/departments", response_model=list[DepartmentRead])
def departments(db: SessionDep, _: Reader) -> list[DepartmentRead]:
    return [
        DepartmentRead.model_validate(d, from_attributes=True) for d in service.get_departments(db)
    ]


@router.get("/people", response_model=list[PersonRead])
def people(db: SessionDep, _: Reader) -> list[PersonRead]:
    """A list: numbers always masked (PIPL); whole numbers appear only on a card in scope."""
    names = {d.id: d.name_zh for d in service.get_departments(db)}
    return [
        PersonRead(
            code=p.code,
            name=p.name,
            title=p.title,
            department=names.get(p.department_id) if p.department_id else None,
            mobile_masked=service.mask_mobile(p.mobile),
            active=p.active,
        )
        for p in service.get_people(db)
    ]
