"""The reporter's and the public's side: tracking, rating, the public listing and updates that
the Open311 adapter serves. Nothing here shows a staff member's name or a whole phone number."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from watergrid.errors import AppError
from watergrid.geo.schemas import DepartmentRef
from watergrid.timers.spans import require_aware
from watergrid.workorders import flows, lifecycle
from watergrid.workorders.common import PAGE_SIZE_MAX, field_error, sha256_hex
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.lifecycle import DONE_STATES
from watergrid.workorders.models import Attachment, Category, OrderEvent, WorkOrder
from watergrid.workorders.queries import Refs, get_order_row, numbers_by_id
from watergrid.workorders.schemas import PublicEvent, PublicOrder, PublicUpdate


def _public_order_row(
    db: Session, *, number: str, phone_last4: str | None, token: str | None
) -> WorkOrder:
    """The order for a reporter who proves it is theirs: the number plus the last four digits
    of their phone, or the track token from the receipt. Every failure is the same 404, so
    the endpoint tells nobody which numbers exist."""
    order = db.scalar(select(WorkOrder).where(WorkOrder.number == (number or "").strip().upper()))
    ok = False
    if order is not None:
        if token:
            ok = secrets.compare_digest(order.track_token_sha256, sha256_hex(token))
        elif phone_last4 and len(phone_last4) == 4 and order.reporter_phone:
            ok = secrets.compare_digest(order.reporter_phone[-4:], phone_last4)
    if order is None or not ok:
        raise AppError(
            404,
            "not_found",
            "No order with this number and phone or token",
            "未找到该编号的诉求，请核对编号和手机尾号",
        )
    return order


# The bureau's internal work: never on the public timeline.
INTERNAL_ACTIONS = frozenset(
    {
        "comment",
        "supervise",
        "overdue",
        "escalate",
        "request_extension",
        "approve_extension",
        "refuse_extension",
        "merged_in",
    }
)


PUBLIC_NOTE_ACTIONS = frozenset(t.action for t in lifecycle.TRANSITIONS if t.public_note)


def _public_label(e: OrderEvent) -> tuple[str, str, str]:
    """(label_zh, label_en, note) of a history row as the public sees it."""
    zh, en = lifecycle.label(e.action)
    note = e.note if e.action in PUBLIC_NOTE_ACTIONS else ""
    if e.action == "reject" and (e.data or {}).get("reason") in lifecycle.REJECT_REASONS:
        reason = lifecycle.REJECT_REASONS[e.data["reason"]]
        zh, en = f"{zh}（{reason[0]}）", f"{en} ({reason[1]})"
    return zh, en, note


def _public_view(db: Session, order: WorkOrder) -> PublicOrder:
    refs = Refs(db)
    cat = refs.categories.get(order.category_id)
    timeline = []
    for e in db.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)
    ):
        if e.action in INTERNAL_ACTIONS:
            continue
        zh, en, note = _public_label(e)
        timeline.append(
            PublicEvent(
                at=e.at,
                action=e.action,
                state=e.to_state,
                label_zh=zh,
                label_en=en,
                actor_role=e.actor_role,
                department=refs.dept(e.actor_department_id)
                if e.actor_role not in ("reporter", "system")
                else None,
                note=note,
            )
        )
    merged_into = numbers_by_id(db, {order.merged_into_id}) if order.merged_into_id else {}
    photos = db.scalars(
        select(Attachment.key).where(Attachment.order_id == order.id).order_by(Attachment.id)
    )
    return PublicOrder(
        number=order.number,
        state=order.state,
        category_code=order.category_code,
        category_name_zh=cat.name_zh if cat else order.category_code,
        category_name_en=cat.name_en if cat else order.category_code,
        created_at=order.created_at,
        address=order.address,
        subdistrict=refs.area(order.subdistrict_id),
        grid=refs.area(order.grid_id),
        department=refs.dept(order.department_id),
        response_due_at=order.response_due_at,
        handling_due_at=order.handling_due_at,
        responded_at=order.responded_at,
        resolved_at=order.resolved_at,
        closed_at=order.closed_at,
        reporter_phone_masked=flows.masked(order.reporter_phone),
        merged_into_number=merged_into.get(order.merged_into_id or -1),
        can_rate=order.state in DONE_STATES and order.rating is None,
        rating=order.rating,
        rating_comment=order.rating_comment,
        timeline=timeline,
        photo_urls=[f"/api/v1/attachments/{k}" for k in photos],
    )


def track(
    db: Session, *, number: str, phone_last4: str | None = None, token: str | None = None
) -> PublicOrder:
    """The reporter's view: state and a timeline with roles and departments, no staff names
    or numbers; the reporter's own phone masked."""
    return _public_view(
        db, _public_order_row(db, number=number, phone_last4=phone_last4, token=token)
    )


def rate(
    db: Session,
    *,
    number: str,
    phone_last4: str | None = None,
    token: str | None = None,
    score: int,
    comment: str = "",
    now: datetime,
) -> PublicOrder:
    """The reporter's satisfaction rating, once, after resolution. A low score tells the
    area's leader and the dispatch desk, who decide whether to reopen; it does not reopen
    by itself (docs/workorders.md)."""
    require_aware(now, "now")
    if not 1 <= score <= 5:
        raise AppError(
            422,
            "bad_score",
            "Score must be 1 to 5",
            "评分应为1至5分",
            [field_error("score", "1 to 5", "评分应为1至5分")],
        )
    if len(comment) > 1000:
        raise AppError(
            422,
            "comment_too_long",
            "Comment is longer than 1,000 characters",
            "评价内容最多1000字",
            [field_error("comment", "at most 1000", "最多1000字")],
        )
    order = _public_order_row(db, number=number, phone_last4=phone_last4, token=token)
    order = get_order_row(db, order_id=order.id, for_update=True)
    if order.state not in DONE_STATES:
        raise AppError(409, "not_resolved", "Rate once the order is resolved", "诉求办结后才能评价")
    if order.rating is not None:
        raise AppError(409, "already_rated", "This order has been rated", "该诉求已评价")
    order.rating, order.rating_comment, order.rated_at = score, comment.strip(), now
    order.updated_at = now
    ev = OrderEvent(
        order_id=order.id,
        at=now,
        action="rate",
        from_state=order.state,
        to_state=order.state,
        actor_role="reporter",
        note=comment.strip(),
        data={"score": score},
    )
    db.add(ev)
    db.flush()
    if score <= get_wo_settings().low_rating_threshold:
        flows.low_rating(db, order=order, event_id=ev.id, now=now)
    return _public_view(db, order)


@dataclass(frozen=True)
class PublicSummary:
    """One order as anyone may see it (Open311 `GET requests`): no reporter data at all."""

    id: int
    number: str
    state: str
    service_code: str
    category_code: str
    category_name_zh: str
    category_name_en: str
    description: str
    address: str
    lon: float
    lat: float
    department: DepartmentRef | None
    created_at: datetime
    updated_at: datetime
    expected_at: datetime | None
    status_note: str
    photo_urls: list[str]
    media_url: str | None


def search_public(
    db: Session,
    *,
    numbers: Sequence[str] = (),
    service_codes: Sequence[str] = (),
    states: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[PublicSummary], int]:
    """Orders in the public view, newest first; merged orders left out (their survivor
    stands for them)."""
    page = max(1, page)
    page_size = min(max(1, page_size), PAGE_SIZE_MAX)
    conds: list[ColumnElement[bool]] = [WorkOrder.state != "merged"]
    if numbers:
        conds.append(WorkOrder.number.in_([n.strip().upper() for n in numbers]))
    if service_codes:
        conds.append(
            WorkOrder.category_id.in_(
                select(Category.id).where(Category.service_code.in_(list(service_codes)))
            )
        )
    if states:
        conds.append(WorkOrder.state.in_(list(states)))
    if start is not None:
        conds.append(WorkOrder.created_at >= start)
    if end is not None:
        conds.append(WorkOrder.created_at <= end)
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
    out = []
    for o in rows:
        cat = refs.categories.get(o.category_id)
        last_note = db.scalar(
            select(OrderEvent.note)
            .where(
                OrderEvent.order_id == o.id,
                OrderEvent.action.in_(sorted(PUBLIC_NOTE_ACTIONS)),
                OrderEvent.note != "",
            )
            .order_by(OrderEvent.id.desc())
            .limit(1)
        )
        keys = db.scalars(
            select(Attachment.key).where(Attachment.order_id == o.id).order_by(Attachment.id)
        )
        out.append(
            PublicSummary(
                id=o.id,
                number=o.number,
                state=o.state,
                service_code=cat.service_code if cat else "",
                category_code=o.category_code,
                category_name_zh=cat.name_zh if cat else o.category_code,
                category_name_en=cat.name_en if cat else o.category_code,
                description=o.description,
                address=o.address,
                lon=o.lon,
                lat=o.lat,
                department=refs.dept(o.department_id),
                created_at=o.created_at,
                updated_at=o.updated_at,
                expected_at=o.handling_due_at or o.response_due_at,
                status_note=last_note or "",
                photo_urls=[f"/api/v1/attachments/{k}" for k in keys],
                media_url=o.media_url,
            )
        )
    return out, total


def list_public_updates(
    db: Session,
    *,
    numbers: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[PublicUpdate], int]:
    """Public changes of orders (Open311 servicerequestupdates), oldest first: the rows of
    the public timeline, with the same notes and labels."""
    page = max(1, page)
    page_size = min(max(1, page_size), PAGE_SIZE_MAX)
    conds: list[ColumnElement[bool]] = [OrderEvent.action.not_in(sorted(INTERNAL_ACTIONS))]
    if numbers:
        conds.append(WorkOrder.number.in_([n.strip().upper() for n in numbers]))
    if start is not None:
        conds.append(OrderEvent.at >= start)
    if end is not None:
        conds.append(OrderEvent.at <= end)
    base = select(OrderEvent, WorkOrder.number).join(WorkOrder, WorkOrder.id == OrderEvent.order_id)
    total = int(
        db.scalar(
            select(func.count())
            .select_from(OrderEvent)
            .join(WorkOrder, WorkOrder.id == OrderEvent.order_id)
            .where(and_(*conds))
        )
        or 0
    )
    rows = db.execute(
        base.where(and_(*conds))
        .order_by(OrderEvent.at, OrderEvent.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    out = []
    for e, number in rows:
        zh, en, note = _public_label(e)
        out.append(
            PublicUpdate(
                id=e.id,
                order_id=e.order_id,
                number=number,
                action=e.action,
                state=e.to_state,
                at=e.at,
                label_zh=zh,
                label_en=en,
                note=note,
            )
        )
    return out, total
