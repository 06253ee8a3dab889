"""Who hears about what. Every function writes outbox rows through notify into the
caller's transaction (so a notification commits with the change that causes it) and sends
nothing itself. Each carries a dedupe key made of the order and the event or due item that
caused it, so a retried handler or request never queues the same message twice."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.db import Statement
from watergrid.notify import service as notify
from watergrid.org.service import mask_mobile
from watergrid.workorders import people
from watergrid.workorders.common import local_tz
from watergrid.workorders.lifecycle import STATE_LABELS
from watergrid.workorders.models import Category, OrderCoHandler, OrderFollower, WorkOrder

SUBJECT_TYPE = "work_order"


def local_time(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.astimezone(local_tz()).strftime("%Y-%m-%d %H:%M")


def order_link(order_id: int) -> str:
    """Where staff open the order (the pages engineer serves /orders/{id})."""
    return f"/orders/{order_id}"


def _category_name(db: Session, order: WorkOrder) -> str:
    cat = db.get(Category, order.category_id)
    return cat.name_zh if cat else order.category_code


def handler_person_ids(db: Session, order: WorkOrder) -> list[int]:
    depts = set(
        db.scalars(select(OrderCoHandler.department_id).where(OrderCoHandler.order_id == order.id))
    )
    if order.department_id is not None:
        depts.add(order.department_id)
    return people.department_person_ids(db, department_ids=depts)


def follower_person_ids(db: Session, order: WorkOrder) -> list[int]:
    return list(
        db.scalars(
            select(OrderFollower.person_id)
            .where(OrderFollower.order_id == order.id)
            .order_by(OrderFollower.id)
        )
    )


def desk_person_ids(db: Session) -> list[int]:
    desk = people.desk_department_id(db)
    return people.department_person_ids(db, department_ids={desk} if desk else set())


def area_leader_person_ids(db: Session, order: WorkOrder) -> list[int]:
    """The zone's chain leader, or the grid's party group leader when the order lies in no
    zone (or the zone has no chain leader); the dispatch desk when neither exists."""
    leader = people.chain_leader_person_id(db, zone_id=order.zone_id)
    if leader is None:
        _, leader = people.party_group_leader(db, grid_id=order.grid_id)
    return [leader] if leader is not None else desk_person_ids(db)


def _send(
    db: Session,
    *,
    order: WorkOrder,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    cause: str | None,
    now: datetime,
) -> None:
    """`cause` names what caused the message (an event, a due item); it makes the dedupe
    key. None where nothing can repeat it (the create that made the order)."""
    _queue(
        db,
        order_id=order.id,
        person_ids=person_ids,
        addresses=addresses,
        topic=topic,
        subject=subject,
        body=body,
        cause=cause,
        now=now,
    )


def _queue(
    db: Session,
    *,
    order_id: int,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    cause: str | None,
    now: datetime,
) -> None:
    ids = list(dict.fromkeys(person_ids))
    addrs = list(dict.fromkeys(addresses))
    if not ids and not addrs:
        return
    # Nothing here reads the rows back, so they are written without loading objects.
    notify.enqueue_ids(
        db,
        person_ids=ids,
        addresses=addrs,
        topic=topic,
        subject=subject,
        body=body,
        link=order_link(order_id) if ids else None,
        subject_type=SUBJECT_TYPE,
        subject_id=order_id,
        dedupe_key=f"wo:{order_id}:{cause}:{topic}" if cause is not None else None,
        now=now,
    )


def reporter_addresses(order: WorkOrder) -> list[tuple[str, str]]:
    """Where the reporter agreed to be reached: SMS with consent, the e-mail an Open311
    client passed on."""
    out: list[tuple[str, str]] = []
    if order.reporter_phone and order.phone_consent:
        out.append(("sms", order.reporter_phone))
    if order.reporter_email:
        out.append(("email", order.reporter_email))
    return out


def _headline(db: Session, order: WorkOrder) -> str:
    return f"{order.number} {_category_name(db, order)}"


def where_text(address: str, lon: float, lat: float) -> str:
    return address or f"{lon:.6f},{lat:.6f}"


def _where(order: WorkOrder) -> str:
    return where_text(order.address, order.lon, order.lat)


# -- staff ------------------------------------------------------------------------------------


class NewOrder(NamedTuple):
    """What the notice of a new order says, and to whom (orders_created)."""

    order_id: int
    number: str
    category_name: str
    where: str
    response_due_at: datetime | None
    description: str
    person_ids: list[int]


CREATED_TOPIC = "workorder.created"


def orders_created(db: Session, orders: Sequence[NewOrder], *, now: datetime) -> None:
    """Each new order to its department's people and its followers (`person_ids`, which
    intake resolves from its directory). Written by the transaction that creates the orders,
    so it cannot repeat: no dedupe key (and no look-up for one). Takes the orders' facts
    rather than rows, which intake writes without loading objects; a batch of orders is one
    notify.enqueue_each, one INSERT for all their messages."""
    notify.enqueue_each(
        db, _created_messages(orders), topic=CREATED_TOPIC, subject_type=SUBJECT_TYPE, now=now
    )


def recipients_pg(person_ids: list[int]) -> Statement:
    """The recipients' channels, read ahead for orders_created_pg as a statement to send
    with others (db.pg_together, PostgreSQL)."""
    return notify.recipients_pg(person_ids)


def orders_created_pg(
    db: Session,
    orders: Sequence[NewOrder],
    *,
    now: datetime,
    recipients: tuple[list[int], Sequence[Sequence[Any]]],
) -> Statement | None:
    """orders_created() as a statement to send with others (db.pg_together, PostgreSQL),
    the recipients read ahead (`recipients`: the person ids asked for with recipients_pg and
    its rows). None: nobody to tell."""
    ids, rows = recipients
    planned = notify.plan_each(
        db,
        _created_messages(orders),
        topic=CREATED_TOPIC,
        subject_type=SUBJECT_TYPE,
        now=now,
        targets=notify.targets_from(rows, ids),
    )
    return notify.rows_pg(planned) if planned else None


def _created_messages(orders: Sequence[NewOrder]) -> list[notify.PersonMessage]:
    messages: list[notify.PersonMessage] = []
    for o in orders:
        headline = f"{o.number} {o.category_name}"
        due = local_time(o.response_due_at)
        subject = f"【新诉求】{headline}"
        body = (
            f"新诉求：{headline}\n地点：{o.where}\n"
            f"响应时限：{due}\n{o.description[:200]}\n"
            f"New report {o.number}; respond by {due}."
        )
        link = order_link(o.order_id)
        messages.extend(
            notify.PersonMessage(pid, subject, body, link, o.order_id)
            for pid in dict.fromkeys(o.person_ids)
        )
    return messages


def dispatched(db: Session, *, order: WorkOrder, event_id: int, action: str, now: datetime) -> None:
    verb = {"dispatch": "派单", "reassign": "改派", "reopen": "重新打开"}.get(action, "派单")
    body = (
        f"{verb}：{_headline(db, order)}\n地点：{_where(order)}\n"
        f"处置时限：{local_time(order.handling_due_at)}\n"
        f"{order.number}: handle by {local_time(order.handling_due_at)}."
    )
    _send(
        db,
        order=order,
        person_ids=handler_person_ids(db, order) + follower_person_ids(db, order),
        topic=f"workorder.{action}",
        subject=f"【{verb}】{_headline(db, order)}",
        body=body,
        cause=f"e{event_id}",
        now=now,
    )


def returned(db: Session, *, order: WorkOrder, event_id: int, note: str, now: datetime) -> None:
    _send(
        db,
        order=order,
        person_ids=desk_person_ids(db),
        topic="workorder.returned",
        subject=f"【退回待改派】{_headline(db, order)}",
        body=f"退回原因：{note}\n{order.number} was returned for re-dispatch.",
        cause=f"e{event_id}",
        now=now,
    )


def to_handlers(
    db: Session,
    *,
    order: WorkOrder,
    event_id: int,
    topic: str,
    subject_zh: str,
    body: str,
    now: datetime,
) -> None:
    _send(
        db,
        order=order,
        person_ids=handler_person_ids(db, order),
        topic=topic,
        subject=f"【{subject_zh}】{_headline(db, order)}",
        body=body,
        cause=f"e{event_id}",
        now=now,
    )


def extension_requested(
    db: Session,
    *,
    order: WorkOrder,
    event_id: int,
    amount: float,
    unit: str,
    note: str,
    now: datetime,
) -> None:
    approvers = []
    leader = people.chain_leader_person_id(db, zone_id=order.zone_id)
    if leader is not None:
        approvers.append(leader)
    else:
        approvers = people.role_person_ids(db, role="bureau_leader")
    unit_zh = "小时" if unit == "hours" else "个工作日"
    _send(
        db,
        order=order,
        person_ids=approvers or desk_person_ids(db),
        topic="workorder.extension_requested",
        subject=f"【延期申请】{_headline(db, order)}",
        body=f"申请延期 {amount:g} {unit_zh}：{note}\n{order.number}: extension of {amount:g} "
        f"{unit} requested; current handling deadline {local_time(order.handling_due_at)}.",
        cause=f"e{event_id}",
        now=now,
    )


def reminder(
    db: Session,
    *,
    order: WorkOrder,
    deadline: str,
    fraction: float,
    due_at: datetime,
    cause: str,
    now: datetime,
) -> None:
    what = "响应" if deadline == "response" else "处置"
    pct = round(fraction * 100)
    _send(
        db,
        order=order,
        person_ids=handler_person_ids(db, order) or desk_person_ids(db),
        topic=f"workorder.{deadline}_reminder",
        subject=f"【{what}时限已过{pct}%】{_headline(db, order)}",
        body=f"{what}时限：{local_time(due_at)}，请抓紧办理。\n{order.number}: {pct}% of the "
        f"{deadline} time used; due {local_time(due_at)}.",
        cause=cause,
        now=now,
    )


def overdue(
    db: Session, *, order: WorkOrder, deadline: str, due_at: datetime, cause: str, now: datetime
) -> None:
    what = "响应" if deadline == "response" else "处置"
    _send(
        db,
        order=order,
        person_ids=area_leader_person_ids(db, order) + handler_person_ids(db, order),
        topic=f"workorder.{deadline}_overdue",
        subject=f"【{what}超时】{_headline(db, order)}",
        body=f"{what}时限 {local_time(due_at)} 已过，请协调督促。\n{order.number}: the {deadline} "
        f"deadline {local_time(due_at)} has passed.",
        cause=cause,
        now=now,
    )


def escalated(
    db: Session,
    *,
    order: WorkOrder,
    deadline: str,
    due_at: datetime,
    supervision_id: int,
    cause: str,
    now: datetime,
) -> None:
    what = "响应" if deadline == "response" else "处置"
    leaders = people.role_person_ids(db, role="bureau_leader") or desk_person_ids(db)
    _send(
        db,
        order=order,
        person_ids=leaders,
        topic=f"workorder.{deadline}_escalated",
        subject=f"【督办】{_headline(db, order)} {what}超时",
        body=f"{what}时限 {local_time(due_at)} 已过仍未完成，已生成督办单 #{supervision_id}。\n"
        f"{order.number}: {deadline} deadline missed; supervision #{supervision_id} opened.",
        cause=cause,
        now=now,
    )


def supervised(db: Session, *, order: WorkOrder, event_id: int, note: str, now: datetime) -> None:
    _send(
        db,
        order=order,
        person_ids=handler_person_ids(db, order) + follower_person_ids(db, order),
        topic="workorder.supervised",
        subject=f"【督办】{_headline(db, order)}",
        body=f"督办意见：{note}\n{order.number} is under supervision.",
        cause=f"e{event_id}",
        now=now,
    )


def low_rating(db: Session, *, order: WorkOrder, event_id: int, now: datetime) -> None:
    _send(
        db,
        order=order,
        person_ids=area_leader_person_ids(db, order) + desk_person_ids(db),
        topic="workorder.low_rating",
        subject=f"【差评】{_headline(db, order)} {order.rating}分",
        body=f"诉求人评价 {order.rating} 分：{order.rating_comment or ''}\n"
        f"{order.number} was rated {order.rating}/5; consider reopening.",
        cause=f"e{event_id}",
        now=now,
    )


# -- reporters --------------------------------------------------------------------------------


def to_reporters(
    db: Session,
    *,
    orders: list[WorkOrder],
    about: WorkOrder,
    event_id: int,
    topic: str,
    text_zh: str,
    now: datetime,
) -> None:
    """Tell the reporters of `orders` about `about` (their own order, or the one theirs was
    merged into). Texts carry no staff names."""
    for o in orders:
        addrs = reporter_addresses(o)
        if not addrs:
            continue
        ref = o.number if o.id == about.id else f"{o.number}（已并入{about.number}）"
        _send(
            db,
            order=o,
            addresses=addrs,
            topic=topic,
            subject=f"光明水务：您的诉求{ref}{text_zh}",
            body=f"您的诉求{ref}{text_zh}。可凭编号和手机尾号查询进度。",
            cause=f"e{event_id}:r{about.id}",
            now=now,
        )


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, (state, state))[0]


def masked(phone: str) -> str:
    return mask_mobile(phone) if phone else ""
