"""Transitions: service.transition() checks the state machine, role and scope, then applies
the action's effects (deadlines, timers, notifications) and writes one history row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden, not_found
from watergrid.geo import locate as geo_locate
from watergrid.timers.deadlines import DueResult
from watergrid.timers.spans import require_aware
from watergrid.workorders import flows, jobs, lifecycle, people
from watergrid.workorders.common import field_error, raise_fields, validation_error
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.intake import actor_fields, store_photos
from watergrid.workorders.lifecycle import DONE_STATES, FINAL_STATES, Transition
from watergrid.workorders.models import (
    Attachment,
    Category,
    OrderCoHandler,
    OrderEvent,
    OrderSuspension,
    Supervision,
    WorkOrder,
)
from watergrid.workorders.photos import CheckedPhoto, PhotoUpload, check_photo
from watergrid.workorders.queries import (
    check_read,
    get_order_row,
    order_id_for_number,
    order_scope,
    read_order,
)
from watergrid.workorders.schemas import ActionRequest, OrderRead


def _department_or_error(db: Session, code: str, field_name: str) -> int:
    d = people.department_by_code(db, code=code)
    if d is None:
        raise AppError(
            422,
            "unknown_department",
            f"Unknown department {code}",
            f"未知的部门：{code}",
            [field_error(field_name, f"Unknown department {code}", f"未知的部门：{code}")],
        )
    return d.id


def _set_co_handlers(
    db: Session, *, order: WorkOrder, codes: list[str], now: datetime
) -> list[str]:
    wanted = {_department_or_error(db, c, "co_department_codes"): c for c in codes}
    wanted.pop(order.department_id or -1, None)
    current = {
        h.department_id: h
        for h in db.scalars(select(OrderCoHandler).where(OrderCoHandler.order_id == order.id))
    }
    for dept_id, h in current.items():
        if dept_id not in wanted:
            db.delete(h)
    for dept_id in wanted:
        if dept_id not in current:
            db.add(OrderCoHandler(order_id=order.id, department_id=dept_id, added_at=now))
    db.flush()
    return sorted(wanted.values())


def _close_supervisions(
    db: Session, *, order_id: int, deadlines: set[str] | None, reason: str, now: datetime
) -> None:
    q = select(Supervision).where(Supervision.order_id == order_id, Supervision.state == "open")
    for s in db.scalars(q):
        if deadlines is None or s.deadline in deadlines:
            s.state, s.closed_at, s.closed_reason = "closed", now, reason


def _recompute(db: Session, *, order: WorkOrder, deadline: str, now: datetime) -> list[str]:
    """Recompute one stored due time after an explicit event (resume, extension, reopen) and
    re-arm its timers. Returns calendar warnings."""
    start = order.created_at if deadline == "response" else order.handling_started_at
    limit = order.response_limit if deadline == "response" else order.handling_limit
    if start is None:
        return []
    result = jobs.due_of(db, order_id=order.id, start=start, limit=limit)
    if not isinstance(result, DueResult):
        return list(result.warnings)  # still suspended: no due time until resumed
    if deadline == "response":
        order.response_due_at = result.due_at
    else:
        order.handling_due_at = result.due_at
    jobs.schedule_deadline(db, order=order, deadline=deadline, now=now)  # type: ignore[arg-type]
    return list(result.warnings)


def _reporters_of(db: Session, order: WorkOrder) -> list[WorkOrder]:
    """The order itself and every order merged into it, however deep."""
    out, seen, frontier = [order], {order.id}, [order.id]
    while frontier:
        nxt = list(db.scalars(select(WorkOrder).where(WorkOrder.merged_into_id.in_(frontier))))
        frontier = []
        for o in nxt:
            if o.id not in seen:
                seen.add(o.id)
                out.append(o)
                frontier.append(o.id)
    return out


def transition(
    db: Session,
    *,
    order_id: int,
    action: str,
    actor: Principal,
    note: str = "",
    now: datetime,
    photos: Sequence[PhotoUpload] = (),
    **params: Any,
) -> OrderRead:
    """Take `action` on an order as `actor`: checks the state machine (409 when the action
    does not apply to the current state), the role and scope (403), the action's parameters
    (422); then writes the new state, one order_event row, timers and notifications.
    Params are ActionRequest's fields (reason, department_code, co_department_codes, mode,
    amount, unit, into_number, priority, attachment_keys)."""
    require_aware(now, "now")
    try:
        req = ActionRequest.model_validate({"note": note, **params})
    except ValidationError as exc:
        raise validation_error(exc) from None
    if action not in lifecycle.ACTIONS:
        raise not_found("action", "操作", action)
    order = get_order_row(db, order_id=order_id, for_update=True)
    scope = order_scope(db, order)
    if not lifecycle.can_read(actor, scope):
        raise forbidden()
    t = lifecycle.find(order.state, action)
    if t is None:
        zh_state = lifecycle.STATE_LABELS[order.state][0]
        zh_action = lifecycle.label(action)[0]
        raise AppError(
            409,
            "invalid_transition",
            f"Cannot {action} an order that is {order.state}",
            f"工单当前为“{zh_state}”，不能执行“{zh_action}”",
        )
    role = lifecycle.grant_for(actor, t, scope)
    if role is None:
        raise forbidden()
    _check_requirements(t, req)

    cfg = get_wo_settings()
    checked: list[CheckedPhoto] = []
    pending: list[Attachment] = []
    if photos or req.attachment_keys:
        if len(photos) + len(req.attachment_keys) > cfg.photo_max_count:
            raise AppError(
                422,
                "too_many_photos",
                f"At most {cfg.photo_max_count} photos",
                f"最多上传 {cfg.photo_max_count} 张照片",
            )
        for i, p in enumerate(photos):
            checked.append(
                check_photo(
                    p,
                    field=f"photos.{i}",
                    max_bytes=cfg.photo_max_bytes,
                    max_pixels=cfg.photo_max_pixels,
                    public_max_side=cfg.public_photo_max_side,
                )
            )
        for k in dict.fromkeys(req.attachment_keys):
            a = db.scalar(select(Attachment).where(Attachment.key == k))
            if a is None or a.order_id is not None:
                raise AppError(
                    422,
                    "unknown_attachment",
                    f"No pending upload {k}",
                    f"照片 {k} 不存在或已使用",
                    [field_error("attachment_keys", f"No pending upload {k}", "照片不存在")],
                )
            pending.append(a)

    from_state = order.state
    to_state = lifecycle.target_state(t, state=order.state, suspended_from=order.suspended_from)
    data: dict[str, Any] = {}
    after: list[Any] = []  # notifications, run once the event id is known
    # Some checks can only be made while applying (the merge target, a pending extension):
    # the savepoint undoes any change already made to the order when one fails, so even a
    # caller that catches the error and commits stores nothing.
    with db.begin_nested():
        _apply(
            db,
            order=order,
            t=t,
            req=req,
            actor=actor,
            now=now,
            data=data,
            after=after,
            to_state=to_state,
        )
        order.state = to_state
        order.updated_at = now
        event = OrderEvent(
            order_id=order.id,
            at=now,
            action=action,
            from_state=from_state,
            to_state=to_state,
            note=req.note.strip(),
            data=data,
            **actor_fields(db, actor, role),
        )
        db.add(event)
        db.flush()
        if checked or pending:
            store_photos(
                db,
                order_id=order.id,
                event_id=event.id,
                photos=checked,
                pending=pending,
                actor=actor,
                now=now,
            )
        for fn in after:
            fn(event.id)
        db.flush()
    return read_order(db, order=order, principal=actor, now=now)


def _check_requirements(t: Transition, req: ActionRequest) -> None:
    problems: list[tuple[str, FieldError]] = []
    for name in t.requires:
        if getattr(req, name) in (None, "", []):
            problems.append(
                (
                    "param_required",
                    field_error(
                        name, f"{name} is required for {t.action}", f"“{t.label_zh}”需要填写 {name}"
                    ),
                )
            )
    if t.note_required and not req.note.strip():
        problems.append(
            (
                "note_required",
                field_error("note", f"Say why ({t.action})", f"“{t.label_zh}”请填写说明"),
            )
        )
    if t.action == "reject" and req.reason and req.reason not in lifecycle.REJECT_REASONS:
        problems.append(
            (
                "bad_reason",
                field_error(
                    "reason",
                    f"reason must be one of {sorted(lifecycle.REJECT_REASONS)}",
                    "不予受理原因应为：非水务事项、信息无效或重复诉求",
                ),
            )
        )
    raise_fields(problems)


def _apply(
    db: Session,
    *,
    order: WorkOrder,
    t: Transition,
    req: ActionRequest,
    actor: Principal,
    now: datetime,
    data: dict[str, Any],
    after: list[Any],
    to_state: str,
) -> None:
    """The side of each action beyond the state change. Fills `data` for the event and
    `after` with notifications that need the event id."""
    action = t.action
    refs = geo_locate.view(db).departments

    def code_of(dept_id: int | None) -> str | None:
        return refs[dept_id].code if dept_id in refs else None

    if action == "accept":
        order.accepted_at = now

    elif action == "reject":
        order.rejected_reason = req.reason
        data["reason"] = req.reason
        jobs.cancel_all(db, order_id=order.id, now=now)
        _close_supervisions(db, order_id=order.id, deadlines=None, reason="rejected", now=now)
        reason_zh = lifecycle.REJECT_REASONS[req.reason or "invalid"][0]
        after.append(
            lambda eid: flows.to_reporters(
                db,
                orders=[order],
                about=order,
                event_id=eid,
                topic="workorder.rejected",
                text_zh=f"不予受理（{reason_zh}）",
                now=now,
            )
        )

    elif action in ("dispatch", "reassign"):
        desk = people.desk_department_id(db)
        if req.department_code:
            order.department_id = _department_or_error(db, req.department_code, "department_code")
        if order.department_id is None or order.department_id == desk:
            raise AppError(
                422,
                "department_required",
                "Choose the department to handle it",
                "请选择承办部门",
                [field_error("department_code", "Choose a department", "请选择承办部门")],
            )
        if req.co_department_codes is not None:
            data["co_departments"] = _set_co_handlers(
                db, order=order, codes=req.co_department_codes, now=now
            )
        if req.priority and order.handling_started_at is None:
            # The desk may re-grade the order before its handling clock starts.
            order.priority = req.priority
            cat = db.get(Category, order.category_id)
            if cat is not None:
                order.handling_limit = {**cat.deadlines[req.priority]["handling"], "extended_by": 0}
            data["priority"] = req.priority
        data["department"] = code_of(order.department_id)
        order.dispatched_at = now
        if order.handling_started_at is None:
            order.handling_started_at = now
            warnings = _recompute(db, order=order, deadline="handling", now=now)
            order.deadline_warnings = sorted(set(order.deadline_warnings or []) | set(warnings))
            data["handling_due_at"] = (
                order.handling_due_at.isoformat() if order.handling_due_at else None
            )
        after.append(
            lambda eid: flows.dispatched(db, order=order, event_id=eid, action=action, now=now)
        )

    elif action == "return":
        data["from_department"] = code_of(order.department_id)
        order.department_id = people.desk_department_id(db)
        after.append(
            lambda eid: flows.returned(db, order=order, event_id=eid, note=req.note, now=now)
        )

    elif action in ("respond", "check_in"):
        if req.mode:
            data["mode"] = req.mode
        if action == "check_in":
            data["check_in"] = True
        if order.responded_at is None:
            order.responded_at = now
            data["response_on_time"] = bool(order.response_due_at and now <= order.response_due_at)
            jobs.cancel_deadline(db, order_id=order.id, deadline="response", now=now)
            _close_supervisions(
                db, order_id=order.id, deadlines={"response"}, reason=action, now=now
            )

    elif action == "resolve":
        order.resolved_at = now
        if order.responded_at is None:  # pragma: no cover - resolve needs a response first
            order.responded_at = now
        data["handling_on_time"] = bool(order.handling_due_at and now <= order.handling_due_at)
        jobs.cancel_all(db, order_id=order.id, now=now)
        _close_supervisions(
            db, order_id=order.id, deadlines={"response", "handling"}, reason="resolved", now=now
        )
        after.append(
            lambda eid: flows.to_reporters(
                db,
                orders=_reporters_of(db, order),
                about=order,
                event_id=eid,
                topic="workorder.resolved",
                text_zh=f"已办结：{req.note.strip()[:60]}",
                now=now,
            )
        )
        after.append(
            lambda eid: flows.to_handlers(
                db,
                order=order,
                event_id=eid,
                topic="workorder.resolved",
                subject_zh="已办结",
                body=f"{order.number} 已办结。",
                now=now,
            )
        )

    elif action == "verify":
        order.verified_at = now

    elif action == "close":
        order.closed_at = now
        jobs.cancel_all(db, order_id=order.id, now=now)
        _close_supervisions(db, order_id=order.id, deadlines=None, reason="closed", now=now)

    elif action == "reopen":
        order.resolved_at = order.verified_at = order.closed_at = None
        order.rating = None
        order.rating_comment = None
        order.rated_at = None
        limit = dict(order.handling_limit)
        limit["amount"] = float(limit["amount"]) - float(limit.get("extended_by", 0))
        limit["extended_by"] = 0
        order.handling_limit = limit
        order.handling_started_at = now
        warnings = _recompute(db, order=order, deadline="handling", now=now)
        order.deadline_warnings = sorted(set(order.deadline_warnings or []) | set(warnings))
        data["handling_due_at"] = (
            order.handling_due_at.isoformat() if order.handling_due_at else None
        )
        after.append(
            lambda eid: flows.dispatched(db, order=order, event_id=eid, action="reopen", now=now)
        )
        after.append(
            lambda eid: flows.to_reporters(
                db,
                orders=[order],
                about=order,
                event_id=eid,
                topic="workorder.reopened",
                text_zh="已重新打开办理",
                now=now,
            )
        )

    elif action == "suspend":
        order.suspended_from = order.state
        db.add(
            OrderSuspension(
                order_id=order.id, suspended_at=now, reason=(req.reason or req.note.strip())[:64]
            )
        )
        jobs.cancel_all(db, order_id=order.id, now=now)
        db.flush()

    elif action == "resume":
        s = db.scalar(
            select(OrderSuspension).where(
                OrderSuspension.order_id == order.id, OrderSuspension.resumed_at.is_(None)
            )
        )
        if s is not None:
            s.resumed_at = now
        db.flush()
        order.suspended_from = None
        order.state = to_state  # still_running() in the timers looks at the state
        resumed_warnings: list[str] = []
        if order.responded_at is None:
            resumed_warnings += _recompute(db, order=order, deadline="response", now=now)
            data["response_due_at"] = (
                order.response_due_at.isoformat() if order.response_due_at else None
            )
        if order.handling_started_at is not None:
            resumed_warnings += _recompute(db, order=order, deadline="handling", now=now)
            data["handling_due_at"] = (
                order.handling_due_at.isoformat() if order.handling_due_at else None
            )
        order.deadline_warnings = sorted(set(order.deadline_warnings or []) | set(resumed_warnings))

    elif action == "request_extension":
        if order.extension_pending:
            raise AppError(
                409,
                "extension_pending",
                "An extension request is already pending",
                "已有待审批的延期申请",
            )
        if order.handling_started_at is None:  # pragma: no cover - states imply dispatch
            raise AppError(409, "not_dispatched", "Not dispatched yet", "尚未派单")
        unit = req.unit or order.handling_limit["unit"]
        if unit != order.handling_limit["unit"]:
            raise AppError(
                422,
                "bad_unit",
                f"Extend in {order.handling_limit['unit']}",
                "延期单位须与处置时限单位一致",
                [field_error("unit", f"must be {order.handling_limit['unit']}", "单位不一致")],
            )
        order.extension_pending = {
            "amount": req.amount,
            "unit": unit,
            "reason": req.note.strip(),
            "requested_at": now.isoformat(),
            "requested_by": actor.user_id,
        }
        data.update(amount=req.amount, unit=unit)
        after.append(
            lambda eid: flows.extension_requested(
                db,
                order=order,
                event_id=eid,
                amount=float(req.amount or 0),
                unit=unit,
                note=req.note.strip(),
                now=now,
            )
        )

    elif action in ("approve_extension", "refuse_extension"):
        ext = order.extension_pending
        if not ext:
            raise AppError(
                409, "no_extension", "No extension request is pending", "没有待审批的延期申请"
            )
        data.update(amount=ext["amount"], unit=ext["unit"])
        order.extension_pending = None
        if action == "approve_extension":
            limit = dict(order.handling_limit)
            limit["amount"] = float(limit["amount"]) + float(ext["amount"])
            limit["extended_by"] = float(limit.get("extended_by", 0)) + float(ext["amount"])
            order.handling_limit = limit
            data["previous_due_at"] = (
                order.handling_due_at.isoformat() if order.handling_due_at else None
            )
            if order.state != "suspended":
                _recompute(db, order=order, deadline="handling", now=now)
            data["handling_due_at"] = (
                order.handling_due_at.isoformat() if order.handling_due_at else None
            )
        verdict = "延期已批准" if action == "approve_extension" else "延期未获批准"
        after.append(
            lambda eid: flows.to_handlers(
                db,
                order=order,
                event_id=eid,
                topic=f"workorder.{action}",
                subject_zh=verdict,
                body=f"{verdict}；处置时限 {flows.local_time(order.handling_due_at)}",
                now=now,
            )
        )

    elif action == "merge":
        target_id = order_id_for_number(db, number=req.into_number or "")
        target = get_order_row(db, order_id=target_id, for_update=True)
        check_read(db, order=target, principal=actor)
        if target.id == order.id or target.state in FINAL_STATES:
            raise AppError(
                409,
                "bad_merge_target",
                f"{target.number} cannot take duplicates (it is {target.state})",
                f"不能并入 {target.number}（{lifecycle.STATE_LABELS[target.state][0]}）",
            )
        order.merged_into_id = target.id
        data["into"] = target.number
        jobs.cancel_all(db, order_id=order.id, now=now)
        _close_supervisions(db, order_id=order.id, deadlines=None, reason="merged", now=now)
        reporters = _reporters_of(db, order)

        def survivor_event(eid: int) -> None:
            db.add(
                OrderEvent(
                    order_id=target.id,
                    at=now,
                    action="merged_in",
                    from_state=target.state,
                    to_state=target.state,
                    note=req.note.strip(),
                    data={"from": order.number, "event_id": eid},
                    **actor_fields(db, actor, None),
                )
            )
            text = f"已并入同类诉求{target.number}统一办理"
            if target.state in DONE_STATES:
                text += "，该诉求已办结"
            flows.to_reporters(
                db,
                orders=reporters,
                about=target,
                event_id=eid,
                topic="workorder.merged",
                text_zh=text,
                now=now,
            )

        after.append(survivor_event)

    elif action == "supervise":
        sup = Supervision(
            order_id=order.id,
            deadline="manual",
            state="open",
            opened_at=now,
            due_at=order.handling_due_at or order.response_due_at,
            reason=req.note.strip(),
            opened_by_user_id=actor.user_id,
        )
        db.add(sup)
        db.flush()
        data["supervision_id"] = sup.id
        after.append(
            lambda eid: flows.supervised(
                db, order=order, event_id=eid, note=req.note.strip(), now=now
            )
        )

    elif action == "comment":
        pass
