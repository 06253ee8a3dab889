"""Who is told: the people behind a department, a zone, a grid and the bureau leadership.

Every lookup of another domain's data that notifications need lives here, so that when
org/auth grow service functions for them only this file changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.models import User, UserRole
from watergrid.geo.schemas import DepartmentRef
from watergrid.org import service as org_service
from watergrid.org.models import Department, Person


def department_person_ids(db: Session, *, department_ids: set[int]) -> list[int]:
    if not department_ids:
        return []
    return list(
        db.scalars(
            select(Person.id)
            .where(Person.department_id.in_(department_ids), Person.active.is_(True))
            .order_by(Person.id)
        )
    )


def chain_leader_person_id(db: Session, *, zone_id: int | None) -> int | None:
    if zone_id is None:
        return None
    people = org_service.zone_people(db, zone_id=zone_id, role="chain_leader")
    return people[0].id if people else None


def party_group_leader(db: Session, *, grid_id: int | None) -> tuple[int | None, int | None]:
    """(party group number, leader person id) of a grid."""
    if grid_id is None:
        return None, None
    group = org_service.party_group_for_grid(db, grid_id=grid_id)
    if group is None:
        return None, None
    return group.number, group.leader_id


def role_person_ids(db: Session, *, role: str) -> list[int]:
    """People whose active account holds `role` (e.g. the bureau leaders)."""
    return list(
        db.scalars(
            select(User.person_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == role, User.active.is_(True), User.person_id.is_not(None))
            .distinct()
        )
    )


def desk_department_id(db: Session) -> int | None:
    desk = org_service.get_department(db, code=org_service.DISPATCH_DESK_CODE)
    return desk.id if desk else None


def department_by_code(db: Session, *, code: str) -> Department | None:
    return org_service.get_department(db, code=code)


def department_refs(db: Session) -> dict[int, DepartmentRef]:
    return {
        d.id: DepartmentRef(code=d.code, name_zh=d.name_zh, name_en=d.name_en)
        for d in org_service.get_departments(db)
    }


def person_briefs(db: Session, *, ids: set[int]) -> dict[int, tuple[str, str]]:
    """id -> (code, name)."""
    if not ids:
        return {}
    return {p.id: (p.code, p.name) for p in org_service.get_people(db, ids=ids)}


def person_department_id(db: Session, *, person_id: int | None) -> int | None:
    if person_id is None:
        return None
    return db.scalar(select(Person.department_id).where(Person.id == person_id))
