"""Reading orders as staff: scope (the SQL twin of lifecycle.can_read), lists with filters,
one order with its history, badges, supervision records, photo bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import forbidden, not_found
from watergrid.geo import locate as geo_locate
from watergrid.geo import service as geo_service
from watergrid.geo.schemas import AreaRef, DepartmentRef
from watergrid.workorders import flows, jobs, lifecycle, people
from watergrid.workorders.common import GLOBAL_ROLES, PAGE_SIZE_MAX, sha256_hex
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.lifecycle import DONE_STATES, FINAL_STATES, OrderScope
from watergrid.workorders.models import (
    Attachment,
    AttachmentBlob,
    Category,
    OrderCoHandler,
    OrderEvent,
    OrderFollower,
    OrderSuspension,
    Supervision,
    WorkOrder,
)
from watergrid.workorders.schemas import (
    ActorRead,
    AttachmentRead,
    DeadlineSpec,
    DeadlineStep,
    EventRead,
    ExtensionRequest,
    OrderFilter,
    OrderPage,
    OrderRead,
    OrderSummary,
    PersonBrief,
    QueueCounts,
    SupervisionRead,
    SuspensionRead,
)


def attachment_read(a: Attachment) -> AttachmentRead:
    return AttachmentRead(
        id=a.id,
        key=a.key,
        filename=a.filename,
        content_type=a.content_type,
        size=a.size,
        width=a.width,
        height=a.height,
        created_at=a.created_at,
        event_id=a.event_id,
        url=f"/api/v1/attachments/{a.key}",
    )


@dataclass(frozen=True)
class AttachmentContent:
    data: bytes
    content_type: str
    filename: str


def attachment_content(
    db: Session, *, key: str, variant: str, principal: Principal | None
) -> AttachmentContent:
    """The bytes of a photo. The public copy is served to whoever holds its key (an
    unguessable 128-bit value handed out only with the order); the original, which may
    carry EXIF, only to staff who may read the order."""
    a = db.scalar(select(Attachment).where(Attachment.key == key))
    if a is None:
        raise not_found("attachment", "附件", key)
    blob = db.get(AttachmentBlob, a.id)
    if blob is None:
        raise not_found("attachment", "附件", key)
    if variant == "original":
        if principal is None or not principal.is_staff:
            raise forbidden()
        if a.order_id is not None:
            order = db.get(WorkOrder, a.order_id)
            assert order is not None
            if not lifecycle.can_read(principal, order_scope(db, order)):
                raise forbidden()
        elif a.uploaded_by_user_id != principal.user_id:
            raise forbidden()
        return AttachmentContent(blob.original, a.original_content_type, a.filename)
    return AttachmentContent(blob.public, a.content_type, a.filename)


def get_order_row(db: Session, *, order_id: int, for_update: bool = False) -> WorkOrder:
    order = db.get(
        WorkOrder,
        order_id,
        with_for_update=for_update and db.get_bind().dialect.name == "postgresql",
    )
    if order is None:
        raise not_found("work order", "工单", order_id)
    return order


def order_id_for_number(db: Session, *, number: str) -> int:
    """The id behind a human number (404 when none)."""
    oid = db.scalar(select(WorkOrder.id).where(WorkOrder.number == number.strip().upper()))
    if oid is None:
        raise not_found("work order", "工单", number)
    return int(oid)


def number_for_token(db: Session, *, token: str) -> str | None:
    """Open311 tokens/{token}: the number of the order made with this track token."""
    if not token:
        return None
    return db.scalar(
        select(WorkOrder.number).where(WorkOrder.track_token_sha256 == sha256_hex(token))
    )


def _co_department_ids(db: Session, order_id: int) -> frozenset[int]:
    return frozenset(
        db.scalars(select(OrderCoHandler.department_id).where(OrderCoHandler.order_id == order_id))
    )


def order_scope(db: Session, order: WorkOrder) -> OrderScope:
    return OrderScope(
        department_id=order.department_id,
        co_department_ids=_co_department_ids(db, order.id),
        grid_id=order.grid_id,
        zone_id=order.zone_id,
        desk_department_id=people.desk_department_id(db),
        follower_person_ids=frozenset(
            db.scalars(select(OrderFollower.person_id).where(OrderFollower.order_id == order.id))
        ),
    )


def check_read(db: Session, *, order: WorkOrder, principal: Principal) -> None:
    """403 unless the principal's roles and scopes reach the order (lifecycle.can_read)."""
    if not lifecycle.can_read(principal, order_scope(db, order)):
        raise forbidden()


def _flags(order: WorkOrder, now: datetime) -> tuple[bool, bool]:
    """(overdue, near_deadline) as of `now`."""
    if order.state in FINAL_STATES or order.state == "suspended":
        return False, False
    dues: list[datetime] = []
    if order.responded_at is None and order.state not in DONE_STATES and order.response_due_at:
        dues.append(order.response_due_at)
    if order.state not in DONE_STATES and order.handling_due_at and order.handling_started_at:
        dues.append(order.handling_due_at)
    if not dues:
        return False, False
    overdue = any(d < now for d in dues)
    horizon = now + timedelta(hours=get_wo_settings().near_deadline_hours)
    near = not overdue and any(now <= d <= horizon for d in dues)
    return overdue, near


class Refs:
    """Names for ids, from the registry view and one query per kind."""

    def __init__(self, db: Session) -> None:
        v = geo_locate.view(db)
        self.areas: dict[int, AreaRef] = v.areas
        self.departments: dict[int, DepartmentRef] = v.departments
        self.categories = {c.id: c for c in db.scalars(select(Category))}

    def area(self, i: int | None) -> AreaRef | None:
        return self.areas.get(i) if i is not None else None

    def dept(self, i: int | None) -> DepartmentRef | None:
        return self.departments.get(i) if i is not None else None


def _summary(order: WorkOrder, refs: Refs, now: datetime, merged_into: str | None) -> OrderSummary:
    overdue, near = _flags(order, now)
    cat = refs.categories.get(order.category_id)
    return OrderSummary(
        id=order.id,
        number=order.number,
        state=order.state,
        source=order.source,
        category_code=order.category_code,
        category_name_zh=cat.name_zh if cat else order.category_code,
        category_name_en=cat.name_en if cat else order.category_code,
        priority=order.priority,
        description=order.description,
        address=order.address,
        lon=order.lon,
        lat=order.lat,
        created_at=order.created_at,
        updated_at=order.updated_at,
        subdistrict=refs.area(order.subdistrict_id),
        grid=refs.area(order.grid_id),
        zone=refs.area(order.zone_id),
        party_group_number=order.party_group_number,
        department=refs.dept(order.department_id),
        response_due_at=order.response_due_at,
        handling_due_at=order.handling_due_at,
        responded_at=order.responded_at,
        resolved_at=order.resolved_at,
        closed_at=order.closed_at,
        overdue=overdue,
        near_deadline=near,
        reporter_phone_masked=flows.masked(order.reporter_phone),
        self_discovered=order.source == "patrol",
        merged_into_number=merged_into,
        rating=order.rating,
    )


def numbers_by_id(db: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.execute(select(WorkOrder.id, WorkOrder.number).where(WorkOrder.id.in_(ids)))
    return {i: n for i, n in rows.all()}


def scope_clause(p: Principal, desk_id: int | None) -> ColumnElement[bool]:
    """The orders a principal may read, as SQL: the same rule as lifecycle.can_read."""
    if p.district or p.roles & GLOBAL_ROLES:
        return true()
    conds: list[ColumnElement[bool]] = []
    if "dept_handler" in p.roles and p.department_ids:
        if desk_id is not None and desk_id in p.department_ids:
            return true()
        conds.append(WorkOrder.department_id.in_(p.department_ids))
        conds.append(
            WorkOrder.id.in_(
                select(OrderCoHandler.order_id).where(
                    OrderCoHandler.department_id.in_(p.department_ids)
                )
            )
        )
    if "grid_member" in p.roles:
        grids = p.grid_ids | p.reach_grid_ids
        if grids:
            conds.append(WorkOrder.grid_id.in_(grids))
    if p.roles & {"chain_leader", "liaison"} and p.zone_ids:
        conds.append(WorkOrder.zone_id.in_(p.zone_ids))
    if p.person_id is not None:
        conds.append(
            WorkOrder.id.in_(
                select(OrderFollower.order_id).where(OrderFollower.person_id == p.person_id)
            )
        )
    return or_(*conds) if conds else false()


def late_and_near(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """(overdue, near deadline) as SQL: the same rule as _flags."""
    live = WorkOrder.state.not_in(sorted(FINAL_STATES | DONE_STATES | {"suspended"}))
    response = and_(live, WorkOrder.responded_at.is_(None), WorkOrder.response_due_at.is_not(None))
    handling = and_(
        live, WorkOrder.handling_started_at.is_not(None), WorkOrder.handling_due_at.is_not(None)
    )
    late = or_(
        and_(response, WorkOrder.response_due_at < now),
        and_(handling, WorkOrder.handling_due_at < now),
    )
    horizon = now + timedelta(hours=get_wo_settings().near_deadline_hours)
    near = and_(
        ~late,
        or_(
            and_(response, WorkOrder.response_due_at.between(now, horizon)),
            and_(handling, WorkOrder.handling_due_at.between(now, horizon)),
        ),
    )
    return late, near


def list_orders(
    db: Session,
    *,
    principal: Principal,
    filters: OrderFilter | None = None,
    page: int = 1,
    page_size: int = 50,
    now: datetime,
) -> OrderPage:
    """Orders the principal may read, newest first, filtered and paged. Phones masked."""
    f = filters or OrderFilter()
    page = max(1, page)
    page_size = min(max(1, page_size), PAGE_SIZE_MAX)
    desk_id = people.desk_department_id(db)
    conds: list[ColumnElement[bool]] = [scope_clause(principal, desk_id)]
    if f.state:
        conds.append(WorkOrder.state.in_(f.state))
    if f.category_code:
        if "." in f.category_code:
            conds.append(WorkOrder.category_code == f.category_code)
        else:
            conds.append(WorkOrder.group_code == f.category_code)
    if f.source:
        conds.append(WorkOrder.source == f.source)
    for code, column in ((f.grid_code, WorkOrder.grid_id), (f.zone_code, WorkOrder.zone_id)):
        if code:
            area = geo_service.get(db, code=code)
            conds.append(column == (area.id if area else -1))
    if f.department_code:
        d = people.department_by_code(db, code=f.department_code)
        conds.append(WorkOrder.department_id == (d.id if d else -1))
    if f.mine:
        ids = principal.department_ids or frozenset({-1})
        conds.append(
            or_(
                WorkOrder.department_id.in_(ids),
                WorkOrder.id.in_(
                    select(OrderCoHandler.order_id).where(OrderCoHandler.department_id.in_(ids))
                ),
            )
        )
    if f.number:
        conds.append(WorkOrder.number == f.number.strip().upper())
    if f.created_from:
        conds.append(WorkOrder.created_at >= f.created_from)
    if f.created_to:
        conds.append(WorkOrder.created_at < f.created_to)
    if f.updated_from:
        conds.append(WorkOrder.updated_at >= f.updated_from)
    if f.updated_to:
        conds.append(WorkOrder.updated_at < f.updated_to)
    late, near = late_and_near(now)
    if f.overdue is not None:
        conds.append(late if f.overdue else ~late)
    if f.near_deadline is not None:
        conds.append(near if f.near_deadline else ~near)
    where = and_(*conds)
    total = int(db.scalar(select(func.count()).select_from(WorkOrder).where(where)) or 0)
    rows = list(
        db.scalars(
            select(WorkOrder)
            .where(where)
            .order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
    )
    refs = Refs(db)
    merged = numbers_by_id(db, {o.merged_into_id for o in rows if o.merged_into_id})
    return OrderPage(
        items=[_summary(o, refs, now, merged.get(o.merged_into_id or -1)) for o in rows],
        total=total,
        page=page,
        page_size=page_size,
    )


def _events(db: Session, order_id: int, refs: Refs) -> list[EventRead]:
    rows = db.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
    )
    out = []
    for e in rows:
        out.append(
            EventRead(
                id=e.id,
                at=e.at,
                action=e.action,
                from_state=e.from_state,
                to_state=e.to_state,
                actor=ActorRead(
                    role=e.actor_role,
                    department=refs.dept(e.actor_department_id),
                    name=e.actor_name,
                ),
                note=e.note,
                data=e.data or {},
            )
        )
    return out


def read_order(db: Session, *, order: WorkOrder, principal: Principal, now: datetime) -> OrderRead:
    """The whole order for a staff member already checked with check_read."""
    refs = Refs(db)
    scope = order_scope(db, order)
    merged_into = numbers_by_id(db, {order.merged_into_id}) if order.merged_into_id else {}
    summary = _summary(order, refs, now, merged_into.get(order.merged_into_id or -1))
    merged_in = list(
        db.scalars(
            select(WorkOrder.number)
            .where(WorkOrder.merged_into_id == order.id)
            .order_by(WorkOrder.id)
        )
    )
    followers = people.person_briefs(db, ids=set(scope.follower_person_ids))
    attachments = list(
        db.scalars(
            select(Attachment).where(Attachment.order_id == order.id).order_by(Attachment.id)
        )
    )
    suspensions = list(
        db.scalars(
            select(OrderSuspension)
            .where(OrderSuspension.order_id == order.id)
            .order_by(OrderSuspension.suspended_at)
        )
    )
    dup_numbers = numbers_by_id(db, set(order.duplicate_candidate_ids or []))
    ext = order.extension_pending
    full_phone = principal.can("orders.reporter_contact")
    return OrderRead(
        **summary.model_dump(),
        attributes=order.attributes or {},
        reporter_name=order.reporter_name,
        reporter_phone=order.reporter_phone if full_phone else flows.masked(order.reporter_phone),
        phone_consent=order.phone_consent,
        media_url=order.media_url,
        co_departments=[d for d in (refs.dept(i) for i in sorted(scope.co_department_ids)) if d],
        followers=[
            PersonBrief(code=c, name=n) for c, n in (followers[i] for i in sorted(followers))
        ],
        accepted_at=order.accepted_at,
        dispatched_at=order.dispatched_at,
        verified_at=order.verified_at,
        rejected_reason=order.rejected_reason,
        suspended_from=order.suspended_from,
        suspensions=[
            SuspensionRead(suspended_at=s.suspended_at, resumed_at=s.resumed_at, reason=s.reason)
            for s in suspensions
        ],
        extension_pending=ExtensionRequest(
            amount=ext["amount"],
            unit=ext["unit"],
            reason=ext.get("reason", ""),
            requested_at=datetime.fromisoformat(ext["requested_at"]),
        )
        if ext
        else None,
        response_deadline=DeadlineSpec(
            amount=order.response_limit["amount"], unit=order.response_limit["unit"]
        ),
        handling_deadline=DeadlineSpec(
            amount=order.handling_limit["amount"], unit=order.handling_limit["unit"]
        ),
        deadline_warnings=order.deadline_warnings or [],
        possible_duplicates=[
            dup_numbers[i] for i in order.duplicate_candidate_ids or [] if i in dup_numbers
        ],
        merged_numbers=[n for n in merged_in if n],
        rating_comment=order.rating_comment,
        events=_events(db, order.id, refs),
        attachments=[attachment_read(a) for a in attachments],
        allowed_actions=lifecycle.allowed_actions(principal, state=order.state, scope=scope),
    )


def get_order(db: Session, *, order_id: int, principal: Principal, now: datetime) -> OrderRead:
    """404 when there is no such order, 403 when it lies outside the principal's scope."""
    order = get_order_row(db, order_id=order_id)
    check_read(db, order=order, principal=principal)
    return read_order(db, order=order, principal=principal, now=now)


def allowed_actions(db: Session, *, order_id: int, principal: Principal) -> list[str]:
    order = get_order_row(db, order_id=order_id)
    return lifecycle.allowed_actions(principal, state=order.state, scope=order_scope(db, order))


def deadline_plan(db: Session, *, order_id: int) -> list[DeadlineStep]:
    """The steps of the order's running deadlines, in time order; `armed` marks the one each
    chain is waiting on. Empty when no deadline runs (done, suspended, final)."""
    order = get_order_row(db, order_id=order_id)
    if order.state in FINAL_STATES or order.state in DONE_STATES or order.state == "suspended":
        return []
    armed = {i.key for i in jobs.pending_items(db, order_id=order.id)}
    out: list[DeadlineStep] = []
    if order.responded_at is None:
        deadlines: tuple[Literal["response", "handling"], ...] = ("response", "handling")
    else:
        deadlines = ("handling",)
    for deadline in deadlines:
        for step in jobs.deadline_steps(db, order=order, deadline=deadline):
            out.append(
                DeadlineStep(
                    deadline=deadline,
                    kind=step.kind,
                    key=step.key,
                    at=step.at,
                    armed=step.key in armed,
                )
            )
    return sorted(out, key=lambda s: s.at)


def queue_counts(db: Session, *, principal: Principal, now: datetime) -> QueueCounts:
    """Badges of the staff inbox, over the orders the caller may read."""
    scope = scope_clause(principal, people.desk_department_id(db))
    late, near = late_and_near(now)

    def count(*conds: ColumnElement[bool]) -> int:
        return int(db.scalar(select(func.count()).select_from(WorkOrder).where(scope, *conds)) or 0)

    return QueueCounts(
        open=count(WorkOrder.state.not_in(sorted(FINAL_STATES))),
        overdue=count(late),
        near_deadline=count(near),
        awaiting_dispatch=count(WorkOrder.state.in_(["submitted", "accepted", "returned"])),
    )


def list_supervisions(
    db: Session,
    *,
    principal: Principal,
    state: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> list[SupervisionRead]:
    """Supervision records (督办) of orders the principal may read, newest first."""
    page = max(1, page)
    page_size = min(max(1, page_size), PAGE_SIZE_MAX)
    q = (
        select(Supervision, WorkOrder.number)
        .join(WorkOrder, WorkOrder.id == Supervision.order_id)
        .where(scope_clause(principal, people.desk_department_id(db)))
    )
    if state:
        q = q.where(Supervision.state == state)
    rows = db.execute(
        q.order_by(Supervision.opened_at.desc(), Supervision.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return [
        SupervisionRead(
            id=s.id,
            order_id=s.order_id,
            order_number=number,
            deadline=s.deadline,
            state=s.state,
            opened_at=s.opened_at,
            due_at=s.due_at,
            reason=s.reason,
            opened_by="system" if s.opened_by_user_id is None else "staff",
            closed_at=s.closed_at,
            closed_reason=s.closed_reason,
        )
        for s, number in rows
    ]
