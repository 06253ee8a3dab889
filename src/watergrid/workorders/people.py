"""Who is told: the people behind a department, a zone, a grid and the bureau leadership.

Every lookup of another domain's data that notifications need lives here, so that when
org/auth grow service functions for them only this file changes."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.models import User, UserRole
from watergrid.geo.locate import RegistryView
from watergrid.geo.schemas import DepartmentRef
from watergrid.org import service as org_service
from watergrid.org.models import Department, PartyGroup, Person, ZoneRole


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


# -- the directory intake routes with -------------------------------------------------------


@dataclass(frozen=True)
class Directory:
    """Who answers where, as of one registry version: what intake would otherwise ask the
    database for on every report (a grid's party group, a zone's chain leader, the people of
    the routed department). People, groups and zone roles change only through a registry
    import, which moves the registry version and with it geo's view, so a directory built
    for one view stays right for as long as that view is current."""

    view: RegistryView
    # grid id -> (party group number, leader person id)
    groups: dict[int, tuple[int, int | None]]
    # zone id -> the first chain leader (by position, then code), as zone_people orders them
    chain_leaders: dict[int, int]
    # department id -> its active people, by id
    staff: dict[int, tuple[int, ...]]

    def department_person_ids(self, department_ids: set[int]) -> list[int]:
        if len(department_ids) == 1:
            (only,) = department_ids
            return list(self.staff.get(only, ()))
        return sorted({p for d in department_ids for p in self.staff.get(d, ())})


_directory_lock = threading.Lock()
_directory: Directory | None = None


def _build_directory(db: Session, view: RegistryView) -> Directory:
    groups = {
        grid_id: (number, leader_id)
        for grid_id, number, leader_id in db.execute(
            select(PartyGroup.grid_id, PartyGroup.number, PartyGroup.leader_id)
        )
    }
    chain_leaders: dict[int, int] = {}
    for zone_id, person_id in db.execute(
        select(ZoneRole.zone_id, ZoneRole.person_id)
        .join(Person, Person.id == ZoneRole.person_id)
        .where(ZoneRole.role == "chain_leader")
        .order_by(ZoneRole.zone_id, ZoneRole.position, Person.code)
    ):
        chain_leaders.setdefault(zone_id, person_id)
    staff: dict[int, list[int]] = {}
    for person_id, dept_id in db.execute(
        select(Person.id, Person.department_id)
        .where(Person.department_id.is_not(None), Person.active.is_(True))
        .order_by(Person.id)
    ):
        if dept_id is not None:
            staff.setdefault(dept_id, []).append(person_id)
    return Directory(
        view=view,
        groups=groups,
        chain_leaders=chain_leaders,
        staff={d: tuple(ids) for d, ids in staff.items()},
    )


def directory_view() -> RegistryView | None:
    """The registry view the current directory was built for, if any."""
    current = _directory
    return current.view if current is not None else None


def directory(db: Session, view: RegistryView) -> Directory:
    """The directory for `view` (geo.locate.view of this transaction), built at most once
    per registry version and process."""
    global _directory
    current = _directory
    if current is not None and current.view is view:
        return current
    with _directory_lock:
        if _directory is None or _directory.view is not view:
            _directory = _build_directory(db, view)
        return _directory
