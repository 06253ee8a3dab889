"""One-page plans (一页纸预案): one per reservoir, river, waterlogging point, subdistrict and
community grid; versioned; each role held by people in order; each level with its trigger,
action checklist and call timing.

The people of a plan are a role-to-people policy (administrative, technical, patrol,
transfer, and the escalation contacts above the plan). When a call round starts it copies
that policy (`chain_snapshot`), so later edits never change a running round. Functions take
a Session and never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from watergrid.errors import AppError, FieldError, invalid, not_found
from watergrid.flood import assets as asset_service
from watergrid.flood.models import FloodAsset
from watergrid.flood.response_schemas import (
    CALLED_ROLES,
    PersonLine,
    PlanBody,
    PlanCreate,
    PlanKind,
    PlanRead,
    PlanSummary,
    PlanVersionIn,
    PlanVersionRead,
    ShelterLine,
)
from watergrid.flood.warning_models import Plan, PlanCoverage, PlanRole, PlanVersion
from watergrid.geo import service as geo_service
from watergrid.geo.models import Area
from watergrid.org import service as org_service
from watergrid.org.models import Person

ASSET_PLAN_KINDS = ("reservoir", "river", "waterlogging_point")
AREA_PLAN_KINDS = {"subdistrict": "subdistrict", "grid": "grid"}
# Who is called next when someone does not answer: a patrol member's call goes to the
# technical lead, then the administrative lead; transfer (evacuation) is an administrative
# duty, so it goes straight there; above the administrative lead come the plan's escalation
# contacts (the office above the plan, then the district duty officer).
UP_THE_CHAIN: dict[str, tuple[str, ...]] = {
    "patrol": ("technical", "administrative"),
    "technical": ("administrative",),
    "transfer": ("administrative",),
    "administrative": (),
}


# -- reading -------------------------------------------------------------------------------


def get(db: Session, *, code: str) -> Plan | None:
    return db.scalar(select(Plan).where(Plan.code == code))


def get_or_404(db: Session, *, code: str) -> Plan:
    plan = get(db, code=code)
    if plan is None:
        raise not_found("plan", "预案", code)
    return plan


def get_all(
    db: Session,
    *,
    kind: str | None = None,
    subdistrict_id: int | None = None,
    active_only: bool = True,
) -> list[Plan]:
    q = select(Plan).order_by(Plan.kind, Plan.code)
    if kind is not None:
        q = q.where(Plan.kind == kind)
    if active_only:
        q = q.where(Plan.active.is_(True))
    if subdistrict_id is not None:
        q = q.where(
            Plan.id.in_(
                select(PlanCoverage.plan_id).where(PlanCoverage.subdistrict_id == subdistrict_id)
            )
        )
    return list(db.scalars(q))


def version_row(db: Session, *, plan: Plan, number: int | None = None) -> PlanVersion:
    number = plan.current_version if number is None else number
    row = db.scalar(
        select(PlanVersion).where(PlanVersion.plan_id == plan.id, PlanVersion.version == number)
    )
    if row is None:
        raise not_found("plan version", "预案版本", f"{plan.code} v{number}")
    return row


def roles_of(db: Session, *, version_id: int) -> list[PlanRole]:
    return list(
        db.scalars(
            select(PlanRole)
            .where(PlanRole.version_id == version_id)
            .order_by(PlanRole.role, PlanRole.position)
        )
    )


def coverage_ids(db: Session, *, plan_id: int) -> list[int]:
    return list(
        db.scalars(
            select(PlanCoverage.subdistrict_id)
            .where(PlanCoverage.plan_id == plan_id)
            .order_by(PlanCoverage.subdistrict_id)
        )
    )


def for_subdistrict(db: Session, *, subdistrict_id: int) -> list[Plan]:
    """Active plans a rainstorm warning for this subdistrict starts."""
    return get_all(db, subdistrict_id=subdistrict_id)


def for_asset(db: Session, *, asset_id: int) -> list[Plan]:
    """Active plans an alarm of this asset starts."""
    return list(
        db.scalars(
            select(Plan).where(Plan.asset_id == asset_id, Plan.active.is_(True)).order_by(Plan.code)
        )
    )


# -- writing -------------------------------------------------------------------------------


def _error(field: str, en: str, zh: str) -> AppError:
    return invalid([FieldError(field, en, zh)])


def _target(db: Session, *, kind: str, code: str) -> tuple[int | None, int | None, list[int]]:
    """(asset id, area id, default covered subdistricts) of a plan's target."""
    if kind in ASSET_PLAN_KINDS:
        asset = asset_service.get(db, code=code)
        if asset is None or asset.kind != kind:
            raise _error("target_code", f"no {kind} {code}", f"未找到该{kind}设施：{code}")
        subs = [asset.subdistrict_id] if asset.subdistrict_id else []
        return asset.id, None, subs
    area = geo_service.get(db, code=code)
    if area is None or area.kind != AREA_PLAN_KINDS[kind]:
        raise _error("target_code", f"no {kind} {code}", f"未找到区域：{code}")
    if kind == "subdistrict":
        return None, area.id, [area.id]
    return None, area.id, [area.parent_id] if area.parent_id else []


def _people(db: Session, data: PlanVersionIn) -> dict[str, Person]:
    codes = {h.person_code for h in data.roles}
    found = {p.code: p for p in db.scalars(select(Person).where(Person.code.in_(codes)))}
    missing = sorted(codes - set(found))
    if missing:
        raise _error("roles", f"unknown people {missing}", f"未找到人员：{'、'.join(missing)}")
    inactive = sorted(c for c, p in found.items() if not p.active)
    if inactive:
        raise _error("roles", f"inactive people {inactive}", f"人员已停用：{'、'.join(inactive)}")
    return found


def _check_shelters(db: Session, body: PlanBody) -> None:
    wanted = set(body.shelters) | {r.shelter_code for r in body.routes}
    if not wanted:
        return
    found = {
        a.code
        for a in db.scalars(select(FloodAsset).where(FloodAsset.code.in_(wanted)))
        if a.kind == "shelter"
    }
    missing = sorted(wanted - found)
    if missing:
        raise _error(
            "body.shelters", f"no shelters {missing}", f"未找到避险安置点：{'、'.join(missing)}"
        )
    strays = sorted({r.shelter_code for r in body.routes} - set(body.shelters))
    if strays:
        raise _error(
            "body.routes", f"route shelters {strays} not listed", "转移路线的安置点须列入避险安置点"
        )


def _subdistricts(db: Session, codes: Sequence[str]) -> list[int]:
    ids = []
    for code in codes:
        area = geo_service.get(db, code=code)
        if area is None or area.kind != "subdistrict":
            raise _error("coverage", f"no subdistrict {code}", f"未找到街道：{code}")
        ids.append(area.id)
    return ids


def create(
    db: Session,
    *,
    data: PlanCreate,
    actor_user_id: int | None,
    actor_name: str,
    now: dt.datetime,
) -> Plan:
    if get(db, code=data.code) is not None:
        raise AppError(409, "plan_exists", f"Plan {data.code} exists", f"预案 {data.code} 已存在")
    asset_id, area_id, default_cover = _target(db, kind=data.kind, code=data.target_code)
    cover = _subdistricts(db, data.coverage) if data.coverage else default_cover
    # Everything a user can get wrong is checked before the first row is written.
    _people(db, data)
    _check_shelters(db, data.body)
    plan = Plan(
        code=data.code,
        kind=data.kind,
        asset_id=asset_id,
        area_id=area_id,
        name_zh=data.name_zh,
        name_en=data.name_en,
        current_version=0,
        active=True,
        created_at=now,
        updated_at=now,
    )
    db.add(plan)
    db.flush()
    set_coverage(db, plan=plan, subdistrict_ids=cover)
    add_version(
        db, plan=plan, data=data, actor_user_id=actor_user_id, actor_name=actor_name, now=now
    )
    return plan


def set_coverage(db: Session, *, plan: Plan, subdistrict_ids: Sequence[int]) -> None:
    db.execute(delete(PlanCoverage).where(PlanCoverage.plan_id == plan.id))
    db.add_all(
        PlanCoverage(plan_id=plan.id, subdistrict_id=s) for s in dict.fromkeys(subdistrict_ids)
    )
    db.flush()


def add_version(
    db: Session,
    *,
    plan: Plan,
    data: PlanVersionIn,
    actor_user_id: int | None,
    actor_name: str,
    now: dt.datetime,
) -> PlanVersion:
    """A new version becomes current at once; running rounds keep the chain they copied."""
    people = _people(db, data)
    _check_shelters(db, data.body)
    number = plan.current_version + 1
    row = PlanVersion(
        plan_id=plan.id,
        version=number,
        body=data.body.model_dump(mode="json"),
        review_by=data.review_by,
        created_at=now,
        created_by_user_id=actor_user_id,
        created_by_name=actor_name,
        change_note=data.change_note,
    )
    db.add(row)
    db.flush()
    positions: dict[str, int] = {}
    for h in data.roles:
        pos = positions.get(h.role, 0)
        positions[h.role] = pos + 1
        db.add(
            PlanRole(
                version_id=row.id,
                role=h.role,
                position=pos,
                person_id=people[h.person_code].id,
                duty=h.duty,
            )
        )
    plan.current_version = number
    plan.updated_at = now
    db.flush()
    return row


# -- presenting ------------------------------------------------------------------------------


def _codes(db: Session) -> dict[int, str]:
    return {i: v[1] for i, v in geo_service.area_links(db).by_id.items()}


def _target_code(db: Session, plan: Plan, codes: dict[int, str]) -> str:
    if plan.asset_id is not None:
        asset = db.get(FloodAsset, plan.asset_id)
        return asset.code if asset else ""
    return codes.get(plan.area_id or -1, "")


def summaries(db: Session, plans: Sequence[Plan]) -> list[PlanSummary]:
    codes = _codes(db)
    ids = [p.id for p in plans]
    cover: dict[int, list[str]] = {i: [] for i in ids}
    review: dict[tuple[int, int], dt.date] = {}
    if ids:
        for pid, sid in db.execute(
            select(PlanCoverage.plan_id, PlanCoverage.subdistrict_id).where(
                PlanCoverage.plan_id.in_(ids)
            )
        ):
            cover[pid].append(codes.get(sid, ""))
        for pid, version, due in db.execute(
            select(PlanVersion.plan_id, PlanVersion.version, PlanVersion.review_by).where(
                PlanVersion.plan_id.in_(ids)
            )
        ):
            review[(pid, version)] = due
    return [
        PlanSummary(
            code=p.code,
            kind=cast(PlanKind, p.kind),
            name_zh=p.name_zh,
            name_en=p.name_en,
            target_code=_target_code(db, p, codes),
            subdistrict_codes=sorted(cover[p.id]),
            current_version=p.current_version,
            review_by=review[(p.id, p.current_version)],
            active=p.active,
        )
        for p in plans
    ]


def shelter_lines(
    db: Session, codes: Sequence[str], *, near: tuple[float, float] | None = None
) -> list[ShelterLine]:
    if not codes:
        return []
    rows = {a.code: a for a in db.scalars(select(FloodAsset).where(FloodAsset.code.in_(codes)))}
    out = []
    for code in codes:
        a = rows.get(code)
        if a is None:
            continue
        dist = distance_m(near[0], near[1], a.lon, a.lat) if near else None
        out.append(
            ShelterLine(code=a.code, name_zh=a.name_zh, capacity=a.capacity, distance_m=dist)
        )
    return out


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance; at district scale the error is far below a street's width."""
    from math import asin, cos, radians, sin, sqrt

    p1, p2 = radians(lat1), radians(lat2)
    dp, dl = p2 - p1, radians(lon2 - lon1)
    h = sin(dp / 2) ** 2 + cos(p1) * cos(p2) * sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * asin(sqrt(min(1.0, h)))


def version_read(
    db: Session, *, plan: Plan, version: PlanVersion, full_contacts: bool, today: dt.date
) -> PlanVersionRead:
    holders = roles_of(db, version_id=version.id)
    people = {p.id: p for p in org_service.get_people(db, ids={h.person_id for h in holders})}
    roles: dict[str, list[PersonLine]] = {}
    for h in sorted(holders, key=lambda r: (r.role, r.position)):
        p = people[h.person_id]
        roles.setdefault(h.role, []).append(
            PersonLine(
                code=p.code,
                name=p.name,
                title=p.title,
                mobile=p.mobile if full_contacts else org_service.mask_mobile(p.mobile),
                duty=h.duty,
            )
        )
    body = PlanBody.model_validate(version.body)
    anchor = plan_anchor(db, plan)
    return PlanVersionRead(
        version=version.version,
        review_by=version.review_by,
        created_at=version.created_at,
        created_by_name=version.created_by_name,
        change_note=version.change_note,
        body=body,
        roles=roles,
        shelters=shelter_lines(db, body.shelters, near=anchor),
        overdue_review=version.review_by < today,
    )


def plan_anchor_of_geometry(geometry: dict[str, Any]) -> tuple[float, float]:
    """A point inside an outline (the representative point stays inside odd shapes)."""
    from shapely.geometry import shape

    pt = shape(geometry).representative_point()
    return (pt.x, pt.y)


def plan_anchor(db: Session, plan: Plan) -> tuple[float, float] | None:
    """A point standing for the plan's target: the asset, or a point inside the area."""
    if plan.asset_id is not None:
        asset = db.get(FloodAsset, plan.asset_id)
        return (asset.lon, asset.lat) if asset else None
    if plan.area_id is not None:
        area = db.get(Area, plan.area_id)
        return plan_anchor_of_geometry(area.geometry) if area else None
    return None


def to_read(db: Session, *, plan: Plan, full_contacts: bool, today: dt.date) -> PlanRead:
    summary = summaries(db, [plan])[0]
    current = version_row(db, plan=plan)
    versions = list(
        db.scalars(
            select(PlanVersion.version)
            .where(PlanVersion.plan_id == plan.id)
            .order_by(PlanVersion.version)
        )
    )
    return PlanRead(
        **summary.model_dump(),
        current=version_read(
            db, plan=plan, version=current, full_contacts=full_contacts, today=today
        ),
        versions=versions,
    )


# -- the snapshot a call round takes ---------------------------------------------------------


def chain_snapshot(
    db: Session, *, plan: Plan, level: str
) -> tuple[PlanVersion, dict[str, Any]] | None:
    """The current version's people and timing for `level`, copied into plain data; None
    when the plan has nothing to do at that level."""
    return chain_snapshots(db, plans=[plan], level=level).get(plan.id)


def chain_snapshots(
    db: Session, *, plans: Sequence[Plan], level: str
) -> dict[int, tuple[PlanVersion, dict[str, Any]]]:
    """chain_snapshot for many plans in three queries (a district-wide warning starts a
    round for every plan in the district at once)."""
    if not plans:
        return {}
    by_plan = {p.id: p for p in plans}
    versions = {
        v.plan_id: v
        for v in db.scalars(select(PlanVersion).where(PlanVersion.plan_id.in_(list(by_plan))))
        if v.version == by_plan[v.plan_id].current_version
    }
    holders: dict[int, list[PlanRole]] = {v.id: [] for v in versions.values()}
    for h in db.scalars(
        select(PlanRole)
        .where(PlanRole.version_id.in_([v.id for v in versions.values()]))
        .order_by(PlanRole.role, PlanRole.position)
    ):
        holders[h.version_id].append(h)
    ids = {h.person_id for hs in holders.values() for h in hs}
    people = {p.id: p for p in org_service.get_people(db, ids=ids)}
    out: dict[int, tuple[PlanVersion, dict[str, Any]]] = {}
    for pid, version in versions.items():
        chain = _chain(by_plan[pid], version, holders[version.id], people, level)
        if chain is not None:
            out[pid] = (version, chain)
    return out


def _chain(
    plan: Plan,
    version: PlanVersion,
    holders: Sequence[PlanRole],
    people: dict[int, Person],
    level: str,
) -> dict[str, Any] | None:
    block = version.body.get("levels", {}).get(level)
    if block is None:
        return None
    roles: dict[str, list[dict[str, Any]]] = {}
    for h in sorted(holders, key=lambda r: (r.role, r.position)):
        p = people[h.person_id]
        if not p.active:
            continue
        roles.setdefault(h.role, []).append(
            {"person_id": p.id, "code": p.code, "name": p.name, "title": p.title, "duty": h.duty}
        )
    return {
        "plan": {
            "code": plan.code,
            "name_zh": plan.name_zh,
            "kind": plan.kind,
            "version": version.version,
        },
        "level": level,
        "trigger_zh": block["trigger_zh"],
        "actions_zh": list(block["actions_zh"]),
        "call_roles": list(block.get("call_roles") or CALLED_ROLES),
        "answer_within_min": int(block["answer_within_min"]),
        "repeat_every_min": int(block["repeat_every_min"]),
        "roles": roles,
    }


def targets(chain: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(role, position, person) of everyone the round calls, each person once (in the
    first role they hold, in the order administrative, technical, patrol, transfer)."""
    seen: set[int] = set()
    out: list[tuple[str, int, dict[str, Any]]] = []
    for role in CALLED_ROLES:
        if role not in chain["call_roles"]:
            continue
        for pos, person in enumerate(chain["roles"].get(role, [])):
            if person["person_id"] in seen:
                continue
            seen.add(person["person_id"])
            out.append((role, pos, person))
    return out


def escalation_path(chain: dict[str, Any], *, role: str, position: int) -> list[dict[str, Any]]:
    """The person in (role, position) first, then who is called when nobody answers: their
    role's first holder (for a stand-in), the leads of the roles above, and the escalation
    contacts, each once."""
    roles = chain["roles"]
    path: list[dict[str, Any]] = [roles[role][position]]
    ups: list[dict[str, Any]] = []
    if position > 0:
        ups.append(roles[role][0])
    for up in UP_THE_CHAIN.get(role, ()):
        if roles.get(up):
            ups.append(roles[up][0])
    ups.extend(roles.get("escalation", []))
    seen = {path[0]["person_id"]}
    for p in ups:
        if p["person_id"] not in seen:
            seen.add(p["person_id"])
            path.append(p)
    return [
        {"person_id": p["person_id"], "name": p["name"], "role": r}
        for p, r in zip(
            path, [role] + [_role_of(roles, q["person_id"]) for q in path[1:]], strict=True
        )
    ]


def _role_of(roles: dict[str, list[dict[str, Any]]], person_id: int) -> str:
    for role in (*CALLED_ROLES, "escalation"):
        if any(p["person_id"] == person_id for p in roles.get(role, [])):
            return role
    return "escalation"


def review_overdue(db: Session, *, today: dt.date) -> list[Plan]:
    """Active plans whose current version is past its review-by date."""
    rows = db.execute(
        select(Plan, PlanVersion.review_by)
        .join(
            PlanVersion,
            (PlanVersion.plan_id == Plan.id) & (PlanVersion.version == Plan.current_version),
        )
        .where(Plan.active.is_(True), PlanVersion.review_by < today)
        .order_by(PlanVersion.review_by)
    ).all()
    return [p for p, _ in rows]
