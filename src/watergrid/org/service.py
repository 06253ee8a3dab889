"""People, departments, party groups, zone leadership and responsibility rules."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.errors import not_found
from watergrid.org.models import (
    Department,
    PartyGroup,
    PartyGroupMember,
    Person,
    ResponsibilityRule,
    ZoneRole,
)

# Where an order goes when no rule matches: the bureau's dispatch desk (总值班/派单台).
DISPATCH_DESK_CODE = "DISPATCH"


def mask_mobile(mobile: str) -> str:
    """138****5678: lists and public views never show a whole number (PIPL)."""
    digits = mobile.strip()
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def get_department(db: Session, *, code: str) -> Department | None:
    return db.scalar(select(Department).where(Department.code == code))


def get_departments(db: Session) -> list[Department]:
    return list(db.scalars(select(Department).order_by(Department.code)))


def get_person(db: Session, *, code: str) -> Person | None:
    return db.scalar(select(Person).where(Person.code == code))


def get_people(db: Session, *, ids: set[int] | None = None) -> list[Person]:
    q = select(Person).order_by(Person.code)
    if ids is not None:
        q = q.where(Person.id.in_(ids))
    return list(db.scalars(q))


def party_group_for_grid(db: Session, *, grid_id: int) -> PartyGroup | None:
    return db.scalar(select(PartyGroup).where(PartyGroup.grid_id == grid_id))


def party_group_members(db: Session, *, group_id: int) -> list[tuple[PartyGroupMember, Person]]:
    rows = db.execute(
        select(PartyGroupMember, Person)
        .join(Person, Person.id == PartyGroupMember.person_id)
        .where(PartyGroupMember.group_id == group_id)
        .order_by(PartyGroupMember.tag, Person.code)
    ).all()
    return [(m, p) for m, p in rows]


def zone_people(db: Session, *, zone_id: int, role: str) -> list[Person]:
    return list(
        db.scalars(
            select(Person)
            .join(ZoneRole, ZoneRole.person_id == Person.id)
            .where(ZoneRole.zone_id == zone_id, ZoneRole.role == role)
            .order_by(ZoneRole.position, Person.code)
        )
    )


@dataclass(frozen=True)
class RuleBook:
    """All responsibility rules, indexed for the most-specific-wins lookup."""

    # (category_code, area_id or None) -> department id
    rules: dict[tuple[str, int | None], int]
    fallback_department_id: int | None


def rule_book(db: Session) -> RuleBook:
    rules = {
        (r.category_code, r.area_id): r.department_id
        for r in db.scalars(select(ResponsibilityRule))
    }
    desk = get_department(db, code=DISPATCH_DESK_CODE)
    return RuleBook(rules=rules, fallback_department_id=desk.id if desk else None)


def category_chain(category_code: str) -> list[str]:
    """drainage.backflow -> [drainage.backflow, drainage, *]: most specific first."""
    parts = category_code.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + ["*"]


def responsible_department(
    book: RuleBook,
    *,
    category_code: str,
    grid_id: int | None,
    zone_ids: list[int],
    subdistrict_id: int | None,
) -> int | None:
    """Most specific wins: the category counts first (a sub-category rule anywhere beats a
    main-category rule in a grid, since specialised work goes to specialised teams), then
    the area: grid, then key zone, then subdistrict, then the whole district. With no rule,
    the bureau dispatch desk. docs/decisions.md explains the order."""
    areas: list[int | None] = []
    if grid_id is not None:
        areas.append(grid_id)
    areas.extend(sorted(zone_ids))
    if subdistrict_id is not None:
        areas.append(subdistrict_id)
    areas.append(None)
    for cat in category_chain(category_code):
        for area in areas:
            dept = book.rules.get((cat, area))
            if dept is not None:
                return dept
    return book.fallback_department_id


def department_or_404(db: Session, *, code: str) -> Department:
    dept = get_department(db, code=code)
    if dept is None:
        raise not_found("department", "部门", code)
    return dept
