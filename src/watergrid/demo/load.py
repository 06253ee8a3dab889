"""Load the Guangming demo: the registry through the registry import (so the demo can hold
nothing an import would refuse), then the demo users. Running it again changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from watergrid.auth import service as auth_service
from watergrid.demo.org import WATER_COMPANY, DemoPeople, build_demo_registry
from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.org import service as org_service
from watergrid.reference import seed_reference
from watergrid.registry.service import ImportReport, import_data

DEMO_PASSWORD = "demo1234"


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    role: str
    scope_kind: str  # district, zone, grid or department
    scope_code: str | None  # an area or department code; None for the district


# The demo accounts; docs/registry.md lists them too.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "系统管理员", "admin", "district", None),
    DemoUser("leader", "局领导", "bureau_leader", "district", None),
    DemoUser("duty", "防汛值班员", "duty_officer", "district", None),
    DemoUser("chain1", "白花片区链长", "chain_leader", "zone", "Z01"),
    DemoUser("liaison1", "白花片区联络员", "liaison", "zone", "Z01"),
    DemoUser("grid01", "楼村社区网格员", "grid_member", "grid", "W01"),
    DemoUser("grid13", "薯田埔社区网格员", "grid_member", "grid", "W13"),
    DemoUser("drainage", "排水管理科", "dept_handler", "department", "DRAINAGE"),
    DemoUser("watercorp", "光明区环境水务公司", "dept_handler", "department", WATER_COMPANY),
)


def person_code_for(username: str, who: DemoPeople) -> str | None:
    """The demo person an account stands for (admin is nobody in particular)."""
    return {
        "leader": who.director,
        "duty": who.duty_officer,
        "chain1": who.chain_leaders["Z01"],
        "liaison1": who.liaisons["Z01"][0],
        "grid01": who.grid_members["W01"],
        "grid13": who.grid_members["W13"],
        "drainage": who.drainage_handler,
        "watercorp": who.company_handler,
    }.get(username)


def _scope_id(db: Session, user: DemoUser) -> int | None:
    if user.scope_code is None:
        return None
    if user.scope_kind == "department":
        return org_service.department_or_404(db, code=user.scope_code).id
    return geo_service.get_or_404(db, code=user.scope_code, kind=user.scope_kind).id


def ensure_users(db: Session, *, who: DemoPeople) -> list[str]:
    """Create the demo users that do not exist yet; returns the usernames created. An
    existing account is left as it is (its password may have been changed on purpose)."""
    created = []
    for u in DEMO_USERS:
        if auth_service.get_by_username(db, username=u.username) is not None:
            continue
        code = person_code_for(u.username, who)
        person = org_service.get_person(db, code=code) if code else None
        if code and person is None:
            raise AppError(
                500, "demo_broken", f"demo person {code} missing", f"演示人员 {code} 缺失"
            )
        auth_service.create_user(
            db,
            username=u.username,
            display_name=person.name if person else u.display_name,
            password=DEMO_PASSWORD,
            roles=[u.role],
            scopes=[(u.scope_kind, _scope_id(db, u))],
            person_id=person.id if person else None,
        )
        created.append(u.username)
    return created


def apply_demo(db: Session) -> tuple[ImportReport, list[str]]:
    seed_reference(db)
    demo = build_demo_registry()
    report = import_data(db, data=demo.data)
    users = ensure_users(db, who=demo.people)
    db.flush()
    return report, users


def load_demo(db: Session) -> None:
    """Load (or re-load) the demo into the caller's transaction."""
    apply_demo(db)


# Each domain's demo content, loaded after the registry by `watergrid demo` (not by the test
# fixtures, which load only the registry so each domain's tests start from a known state).
# Every loader is idempotent and works in the caller's transaction.
DOMAIN_DEMOS = (
    "watergrid.flood.demo:load_flood_demo",
    "watergrid.flood.response_demo:load_flood_response_demo",
    "watergrid.inspections.demo:load_inspections_demo",
    "watergrid.permits.demo:load_permits_demo",
)


def load_domain_demos(db: Session) -> list[str]:
    import importlib

    loaded = []
    for ref in DOMAIN_DEMOS:
        module, name = ref.split(":")
        getattr(importlib.import_module(module), name)(db)
        db.flush()
        loaded.append(module.rsplit(".", 1)[-1])
    return loaded
