"""Grid and zone cards as pages, the printable enterprise service card (助企服务卡) and the
public landing its QR code leads to."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from shapely.geometry import shape
from sqlalchemy.orm import Session

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.geo import service as geo_service
from watergrid.geo.api import check_area_scope
from watergrid.geo.models import Area
from watergrid.geo.pages import feature_collection, map_datum, tile_config
from watergrid.org import cards
from watergrid.org import service as org_service
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.org.models import Department
from watergrid.org.schemas import MemberRead, ZoneCard
from watergrid.settings import get_settings
from watergrid.web.i18n import language
from watergrid.web.render import render

router = APIRouter(include_in_schema=False)
Reader: TypeAlias = Annotated[Principal, Depends(allow("registry.read"))]
Anyone = Annotated[Principal | None, Depends(public)]

# The three-level linkage of a joint party group, in the order the card shows it.
MEMBER_TAGS = ("bureau_cadre", "professional_team", "community_party_member")


def report_path(zone_code: str) -> str:
    """Where online reporting for a zone opens (the form belongs to the work-order module)."""
    return f"/report?zone={zone_code}"


def qr_svg(url: str) -> Markup:
    """The QR code as inline SVG, sized by CSS (no fixed width/height)."""
    code = segno.make(url, error="m")
    svg = code.svg_inline(
        scale=1, border=4, dark="#000", light="#fff", omitsize=True, svgclass="qr"
    )
    # segno writes only path data and attributes it escapes itself: safe to embed.
    return Markup(svg)


def _members_by_tag(members: list[MemberRead]) -> list[tuple[str, list[MemberRead]]]:
    order = list(MEMBER_TAGS) + sorted({m.tag for m in members} - set(MEMBER_TAGS))
    return [(tag, [m for m in members if m.tag == tag]) for tag in order]


def _areas_by_code(db: Session, codes: set[str]) -> dict[str, Area]:
    return {a.code: a for a in geo_service.get_all(db) if a.code in codes}


def _neighbours(db: Session, grid: Area) -> list[Area]:
    """Grids sharing a border with `grid`, drawn faintly around it for orientation."""
    here = shape(grid.geometry).buffer(1e-6)
    return [
        g
        for g in geo_service.get_all(db, kind="grid")
        if g.id != grid.id and here.intersects(shape(g.geometry))
    ]


def _map_config(request: Request, pairs: list[tuple[Area, str]]) -> dict[str, object]:
    lang = language(request, get_settings().default_language)
    return {
        "tiles": tile_config(),
        "features": feature_collection(pairs, datum=map_datum(), lang=lang),
    }


def _categories() -> list[tuple[str, str, str]]:
    return [(code, zh, en) for code, (zh, en) in SERVICE_CATEGORIES.items()]


@router.get("/grids/{code}", response_class=HTMLResponse)
def grid_page(request: Request, db: SessionDep, principal: Reader, code: str) -> HTMLResponse:
    grid = geo_service.get_or_404(db, code=code, kind="grid")
    check_area_scope(principal, grid)
    card = cards.grid_card(db, grid=grid, full_contacts=principal.can("people.contacts"))
    zone_areas = _areas_by_code(db, {z.zone.code for z in card.zones})
    pairs = (
        [(grid, "main")]
        + [(g, "context") for g in _neighbours(db, grid)]
        + [(zone_areas[z.zone.code], "context") for z in card.zones]
    )
    return render(
        request,
        "grid_card.html",
        card=card,
        members=_members_by_tag(card.party_group.members) if card.party_group else [],
        zone_links={z.zone.code for z in card.zones if principal.covers_zone(z.zone.id)},
        categories=_categories(),
        map_config=_map_config(request, pairs),
    )


def _zone(db: Session, principal: Principal, code: str) -> tuple[Area, ZoneCard]:
    zone = geo_service.get_or_404(db, code=code, kind="zone")
    check_area_scope(principal, zone)
    return zone, cards.zone_card(db, zone=zone, full_contacts=principal.can("people.contacts"))


def _zone_context(zone: Area, card: ZoneCard) -> dict[str, Any]:
    return {
        "card": card,
        "qr": qr_svg(card.report_url),
        "categories": _categories(),
        "report_path": report_path(zone.code),
    }


@router.get("/zones/{code}", response_class=HTMLResponse)
def zone_page(request: Request, db: SessionDep, principal: Reader, code: str) -> HTMLResponse:
    zone, card = _zone(db, principal, code)
    grid_areas = _areas_by_code(db, {g.code for g in card.grids})
    pairs = [(zone, "main")] + [(grid_areas[g.code], "context") for g in card.grids]
    return render(
        request,
        "zone_card.html",
        grid_links={g.code for g in card.grids if principal.covers_grid(g.id)},
        map_config=_map_config(request, pairs),
        **_zone_context(zone, card),
    )


@router.get("/zones/{code}/service-card", response_class=HTMLResponse)
def service_card(request: Request, db: SessionDep, principal: Reader, code: str) -> HTMLResponse:
    zone, card = _zone(db, principal, code)
    return render(request, "service_card.html", **_zone_context(zone, card))


def _office_phone(db: Session, department_id: int | None) -> str:
    """The office line for the public: the leader's department, else the bureau's. Never a
    personal mobile (PIPL)."""
    if department_id is not None:
        dept = db.get(Department, department_id)
        if dept is not None and dept.phone:
            return dept.phone
    for dept in org_service.get_departments(db):
        if dept.kind == "bureau" and dept.phone:
            return dept.phone
    return ""


@router.get("/s/{code}", response_class=HTMLResponse)
def service_landing(request: Request, db: SessionDep, _: Anyone, code: str) -> HTMLResponse:
    """Where the QR code on a service card leads: open to anyone, no personal numbers."""
    zone = geo_service.get_or_404(db, code=code.upper(), kind="zone")
    leaders = org_service.zone_people(db, zone_id=zone.id, role="chain_leader")
    leader = leaders[0] if leaders else None
    dept = db.get(Department, leader.department_id) if leader and leader.department_id else None
    return render(
        request,
        "service_landing.html",
        zone=zone,
        leader=leader,
        leader_department=dept,
        office_phone=_office_phone(db, leader.department_id if leader else None),
        categories=_categories(),
        report_path=report_path(zone.code),
    )
