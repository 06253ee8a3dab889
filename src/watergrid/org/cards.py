"""Grid and zone cards: what a grid member or chain leader needs on one screen."""

from __future__ import annotations

from sqlalchemy.orm import Session

from watergrid.geo import service as geo_service
from watergrid.geo.locate import view
from watergrid.geo.models import Area
from watergrid.geo.schemas import AreaRef, DepartmentRef
from watergrid.org import service
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.org.models import Person
from watergrid.org.schemas import (
    Contact,
    GridCard,
    MemberRead,
    PartyGroupCard,
    ZoneCard,
    ZoneLeadership,
)
from watergrid.settings import get_settings


def _ref(area: Area) -> AreaRef:
    return AreaRef(
        id=area.id, kind=area.kind, code=area.code, name_zh=area.name_zh, name_en=area.name_en
    )


def _contact(p: Person, dept_names: dict[int, str], *, full: bool) -> Contact:
    return Contact(
        code=p.code,
        name=p.name,
        title=p.title,
        department=dept_names.get(p.department_id) if p.department_id else None,
        mobile=p.mobile if full else service.mask_mobile(p.mobile),
    )


def _zone_leadership(
    db: Session, zone: Area, dept_names: dict[int, str], *, full: bool
) -> ZoneLeadership:
    chain = service.zone_people(db, zone_id=zone.id, role="chain_leader")
    return ZoneLeadership(
        zone=_ref(zone),
        chain_leader=_contact(chain[0], dept_names, full=full) if chain else None,
        liaisons=[
            _contact(p, dept_names, full=full)
            for p in service.zone_people(db, zone_id=zone.id, role="liaison")
        ],
    )


def grid_card(db: Session, *, grid: Area, full_contacts: bool) -> GridCard:
    v = view(db)
    links = v.snapshot.links
    dept_names = {d.id: d.name_zh for d in service.get_departments(db)}
    subdistrict = db.get(Area, links.grid_subdistrict[grid.id])
    assert subdistrict is not None
    group = service.party_group_for_grid(db, grid_id=grid.id)
    group_card = None
    if group is not None:
        members = service.party_group_members(db, group_id=group.id)
        leader = db.get(Person, group.leader_id) if group.leader_id else None
        group_card = PartyGroupCard(
            number=group.number,
            name=group.name,
            leader=_contact(leader, dept_names, full=full_contacts) if leader else None,
            members=[
                MemberRead(**_contact(p, dept_names, full=full_contacts).model_dump(), tag=m.tag)
                for m, p in members
            ],
        )
    zones = [db.get(Area, z) for z in sorted(links.grid_zones.get(grid.id, ()))]
    departments: dict[str, DepartmentRef | None] = {}
    for cat in SERVICE_CATEGORIES:
        # The grid-wide answer: rules for the grid or above, not a zone covering part of it.
        dept_id = service.responsible_department(
            v.rules, category_code=cat, grid_id=grid.id, zone_ids=[], subdistrict_id=subdistrict.id
        )
        departments[cat] = v.departments.get(dept_id) if dept_id is not None else None
    return GridCard(
        grid=_ref(grid),
        subdistrict=_ref(subdistrict),
        synthetic_geometry=grid.synthetic,
        party_group=group_card,
        zones=[_zone_leadership(db, z, dept_names, full=full_contacts) for z in zones if z],
        departments=departments,
    )


def zone_card(db: Session, *, zone: Area, full_contacts: bool) -> ZoneCard:
    links = geo_service.area_links(db)
    dept_names = {d.id: d.name_zh for d in service.get_departments(db)}
    lead = _zone_leadership(db, zone, dept_names, full=full_contacts)
    grids = [db.get(Area, g) for g in sorted(links.zone_grids.get(zone.id, ()))]
    return ZoneCard(
        zone=lead.zone,
        synthetic_geometry=zone.synthetic,
        chain_leader=lead.chain_leader,
        liaisons=lead.liaisons,
        grids=[_ref(g) for g in grids if g],
        report_url=f"{get_settings().public_base_url.rstrip('/')}/s/{zone.code}",
    )
