"""Leader field visits to the grids (下沉): recording them, listing them, counting them per
leader, zone, grid and month (the seed counts 172 visits and 615 issues coordinated on site).

Typed keyword-only functions taking a Session; they never commit."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden, not_found
from watergrid.geo import service as geo_service
from watergrid.kpi.models import Visit, VisitIssue, VisitMember
from watergrid.kpi.schemas import VisitCount, VisitCreate, VisitIssueRead, VisitRead
from watergrid.org.models import Person
from watergrid.settings import get_settings

GLOBAL_ROLES = frozenset({"admin", "bureau_leader", "duty_officer"})
BY = ("leader", "zone", "grid", "month")


def _field(name: str, en: str, zh: str) -> FieldError:
    return FieldError(field=name, message=en, message_zh=zh)


def _may_visit(p: Principal, grid_id: int) -> bool:
    """Leaders may record visits anywhere; a chain leader or liaison to the grids their zone
    lies on."""
    if p.district or p.roles & GLOBAL_ROLES:
        return True
    return grid_id in p.reach_grid_ids or grid_id in p.grid_ids


def _may_read(p: Principal, v: Visit) -> bool:
    if p.district or p.roles & GLOBAL_ROLES:
        return True
    if v.zone_id is not None and v.zone_id in p.zone_ids:
        return True
    return p.covers_grid(v.grid_id)


def record(db: Session, *, principal: Principal, data: VisitCreate, now: datetime) -> VisitRead:
    """Record a visit. Every problem is reported at once (422); nothing is written then."""
    from watergrid.workorders.models import WorkOrder

    problems: list[FieldError] = []
    today = now.astimezone(ZoneInfo(get_settings().timezone)).date()
    if data.visit_date > today:
        problems.append(
            _field("visit_date", "A visit cannot be in the future", "下沉日期不能晚于今天")
        )
    if data.visit_date < today - timedelta(days=3 * 366):
        problems.append(_field("visit_date", "More than three years ago", "下沉日期过早"))
    grid = geo_service.get(db, code=data.grid_code)
    if grid is None or grid.kind != "grid":
        problems.append(
            _field("grid_code", f"Unknown grid {data.grid_code}", f"未知的网格：{data.grid_code}")
        )
    zone_id: int | None = None
    if data.zone_code:
        zone = geo_service.get(db, code=data.zone_code)
        if zone is None or zone.kind != "zone":
            problems.append(
                _field(
                    "zone_code", f"Unknown zone {data.zone_code}", f"未知的片区：{data.zone_code}"
                )
            )
        else:
            zone_id = zone.id
    elif principal.zone_ids:
        zone_id = min(principal.zone_ids)
    leader_id = principal.person_id
    if data.leader_code:
        leader = db.scalar(select(Person).where(Person.code == data.leader_code))
        if leader is None:
            problems.append(
                _field(
                    "leader_code",
                    f"Unknown person {data.leader_code}",
                    f"未知的人员：{data.leader_code}",
                )
            )
        else:
            leader_id = leader.id
    if leader_id is None:
        problems.append(_field("leader_code", "Say who led the visit", "请填写带队领导"))
    members: list[int] = []
    for code in dict.fromkeys(data.member_codes):
        pid = db.scalar(select(Person.id).where(Person.code == code))
        if pid is None:
            problems.append(_field("member_codes", f"Unknown person {code}", f"未知的人员：{code}"))
        elif pid != leader_id:
            members.append(int(pid))
    order_ids: list[int | None] = []
    for i, issue in enumerate(data.issues):
        if issue.order_number:
            oid = db.scalar(
                select(WorkOrder.id).where(WorkOrder.number == issue.order_number.strip().upper())
            )
            if oid is None:
                problems.append(
                    _field(
                        f"issues.{i}.order_number",
                        f"No order {issue.order_number}",
                        f"工单不存在：{issue.order_number}",
                    )
                )
            order_ids.append(oid)
        else:
            order_ids.append(None)
    if problems:
        raise AppError(422, "invalid", "Invalid visit", "下沉记录有误，请检查标出的字段", problems)
    assert grid is not None and leader_id is not None
    if not _may_visit(principal, grid.id):
        raise forbidden()
    v = Visit(
        visit_date=data.visit_date,
        grid_id=grid.id,
        zone_id=zone_id,
        leader_person_id=leader_id,
        findings=data.findings.strip(),
        created_by_user_id=principal.user_id,
        created_at=now,
    )
    db.add(v)
    db.flush()
    for pid in members:
        db.add(VisitMember(visit_id=v.id, person_id=pid))
    for issue, oid in zip(data.issues, order_ids, strict=True):
        db.add(
            VisitIssue(
                visit_id=v.id,
                summary=issue.summary.strip(),
                order_id=oid,
                link=(issue.link or "moved") if oid else None,
            )
        )
    db.flush()
    return get(db, visit_id=v.id, principal=principal)


def _reads(db: Session, visits: list[Visit]) -> list[VisitRead]:
    from watergrid.workorders.models import WorkOrder

    if not visits:
        return []
    ids = [v.id for v in visits]
    areas = {a.id: a for a in geo_service.get_all(db)}
    person_ids = {v.leader_person_id for v in visits}
    members: dict[int, list[int]] = defaultdict(list)
    for vid, pid in db.execute(
        select(VisitMember.visit_id, VisitMember.person_id)
        .where(VisitMember.visit_id.in_(ids))
        .order_by(VisitMember.id)
    ):
        members[vid].append(pid)
        person_ids.add(pid)
    people = {p.id: p for p in db.scalars(select(Person).where(Person.id.in_(person_ids)))}
    issues: dict[int, list[VisitIssue]] = defaultdict(list)
    for i in db.scalars(
        select(VisitIssue).where(VisitIssue.visit_id.in_(ids)).order_by(VisitIssue.id)
    ):
        issues[i.visit_id].append(i)
    order_ids = {i.order_id for lst in issues.values() for i in lst if i.order_id}
    numbers = (
        dict(
            db.execute(
                select(WorkOrder.id, WorkOrder.number).where(WorkOrder.id.in_(order_ids))
            ).all()
        )
        if order_ids
        else {}
    )
    out = []
    for v in visits:
        g, z = areas.get(v.grid_id), areas.get(v.zone_id) if v.zone_id else None
        leader = people.get(v.leader_person_id)
        out.append(
            VisitRead(
                id=v.id,
                visit_date=v.visit_date,
                grid_code=g.code if g else "",
                grid_name=g.name_zh if g else "",
                zone_code=z.code if z else None,
                zone_name=z.name_zh if z else None,
                leader_code=leader.code if leader else "",
                leader_name=leader.name if leader else "",
                members=[people[p].name for p in members.get(v.id, []) if p in people],
                findings=v.findings,
                issues=[
                    VisitIssueRead(
                        summary=i.summary,
                        order_id=i.order_id,
                        order_number=numbers.get(i.order_id) if i.order_id else None,
                        link=i.link,
                    )
                    for i in issues.get(v.id, [])
                ],
            )
        )
    return out


def get(db: Session, *, visit_id: int, principal: Principal) -> VisitRead:
    v = db.get(Visit, visit_id)
    if v is None:
        raise not_found("visit", "下沉记录", visit_id)
    if not _may_read(principal, v):
        raise forbidden()
    return _reads(db, [v])[0]


def _scoped(db: Session, principal: Principal, start: date, end: date) -> list[Visit]:
    q = (
        select(Visit)
        .where(Visit.visit_date >= start, Visit.visit_date <= end)
        .order_by(Visit.visit_date.desc(), Visit.id.desc())
    )
    return [v for v in db.scalars(q) if _may_read(principal, v)]


def list_visits(
    db: Session, *, principal: Principal, start: date, end: date, limit: int = 200
) -> tuple[list[VisitRead], int]:
    """Visits the principal may read in [start, end], newest first, and how many there are."""
    visits = _scoped(db, principal, start, end)
    return _reads(db, visits[:limit]), len(visits)


def counts(
    db: Session, *, principal: Principal, start: date, end: date, by: str
) -> list[VisitCount]:
    """Visits, issues coordinated on site and linked orders per leader, zone, grid or
    month, most visits first (months in order)."""
    if by not in BY:
        raise AppError(422, "bad_group", f"Group by one of {BY}", "分组方式无效")
    visits = _scoped(db, principal, start, end)
    ids = [v.id for v in visits]
    n_issues: dict[int, int] = defaultdict(int)
    n_orders: dict[int, int] = defaultdict(int)
    if ids:
        for vid, n, linked in db.execute(
            select(VisitIssue.visit_id, func.count(), func.count(VisitIssue.order_id))
            .where(VisitIssue.visit_id.in_(ids))
            .group_by(VisitIssue.visit_id)
        ):
            n_issues[vid], n_orders[vid] = int(n), int(linked)
    areas = {a.id: a for a in geo_service.get_all(db)}
    people = dict(db.execute(select(Person.id, Person.name)).all())
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    label: dict[str, str] = {}
    for v in visits:
        if by == "leader":
            key, name = str(v.leader_person_id), people.get(v.leader_person_id, "")
        elif by == "zone":
            z = areas.get(v.zone_id) if v.zone_id else None
            key, name = (z.code, z.name_zh) if z else ("", "（未关联片区）")
        elif by == "grid":
            g = areas.get(v.grid_id)
            key, name = (g.code, g.name_zh) if g else ("", "")
        else:
            key = name = v.visit_date.strftime("%Y-%m")
        label[key] = name
        r = rows[key]
        r[0] += 1
        r[1] += n_issues[v.id]
        r[2] += n_orders[v.id]
    out = [
        VisitCount(key=k, name=label[k], visits=r[0], issues=r[1], orders=r[2])
        for k, r in rows.items()
    ]
    if by == "month":
        out.sort(key=lambda c: c.key)
    else:
        out.sort(key=lambda c: (-c.visits, -c.issues, c.key))
    return out
