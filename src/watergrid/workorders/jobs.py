"""Deadline timers of work orders, on the shared timers module.

Each running deadline (response from intake, handling from dispatch) is a chain of steps,
all due items with subject ("work_order", order id); one step is armed at a time and each
handler arms the next, as an escalation policy runs (and intake writes one timer, not four):

  workorders.remind    key "<deadline>:remind:<pct>"  at each reminder fraction of the
                       counted time (timers.deadlines.fraction_point) -> the handlers
  workorders.overdue   key "<deadline>:overdue"       at the deadline -> the zone's chain
                       leader (or the grid's party group leader when in no zone)
  workorders.escalate  key "<deadline>:escalate"      a set time later (2 clock hours for
                       response, 1 working day for handling) -> the bureau leaders and a
                       supervision record (督办)

Handlers look at the order when they run and do nothing (and arm nothing) when the deadline
no longer stands (work done, order suspended, merged, or the due time has moved since the
item was set), so a late cancel can never produce a wrong reminder; a reminder that comes
after a later step was due (sweepers were down) is dropped in favour of that step.

Importing this module registers the handlers: the web app and `watergrid worker` must
import it (workorders.service and workorders.api do)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.db import Statement
from watergrid.timers import service as timers
from watergrid.timers.calendar import WorkCalendar
from watergrid.timers.deadlines import DueResult, Paused, compute_due_suspended, fraction_point
from watergrid.timers.models import DueItem
from watergrid.workorders import flows
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.lifecycle import DONE_STATES, FINAL_STATES
from watergrid.workorders.models import OrderEvent, OrderSuspension, Supervision, WorkOrder

Deadline = Literal["response", "handling"]
KIND_REMIND = "workorders.remind"
KIND_OVERDUE = "workorders.overdue"
KIND_ESCALATE = "workorders.escalate"
SUBJECT_TYPE = flows.SUBJECT_TYPE

# -- the working calendar -----------------------------------------------------------------

# Loading the calendar is a few hundred rows; intake must not pay that per order. A change
# made by an administrator is picked up within this many seconds (or at once through
# reset_calendar_cache, which the calendar's admin routes may call).
CALENDAR_TTL_S = 300.0
_cal_lock = threading.Lock()
_cal_cache: dict[str, tuple[float, WorkCalendar]] = {}


def _bind_key(db: Session) -> str:
    # A session may be bound to an Engine or to a Connection (tests, savepoint sessions);
    # both know their engine.
    return str(db.get_bind().engine.url)


def calendar(db: Session) -> WorkCalendar:
    key = _bind_key(db)
    hit = _cal_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CALENDAR_TTL_S:
        return hit[1]
    with _cal_lock:
        cal = WorkCalendar.load(db)
        _cal_cache[key] = (time.monotonic(), cal)
        return cal


def reset_calendar_cache() -> None:
    with _cal_lock:
        _cal_cache.clear()


# -- deadline arithmetic ------------------------------------------------------------------


def suspensions(db: Session, *, order_id: int) -> list[tuple[datetime, datetime | None]]:
    return [
        (s.suspended_at, s.resumed_at)
        for s in db.scalars(
            select(OrderSuspension)
            .where(OrderSuspension.order_id == order_id)
            .order_by(OrderSuspension.suspended_at)
        )
    ]


def due_of(
    db: Session, *, order_id: int, start: datetime, limit: dict[str, Any]
) -> DueResult | Paused:
    """The due time of a limit running from `start`, with the order's suspensions cut out."""
    return compute_due_suspended(
        start,
        amount=float(limit["amount"]),
        unit=limit["unit"],
        calendar=calendar(db),
        suspensions=suspensions(db, order_id=order_id),
    )


def escalation_time(db: Session, *, deadline: Deadline, due_at: datetime) -> datetime:
    cfg = get_wo_settings()
    if deadline == "response":
        return due_at + timedelta(hours=cfg.response_escalation_hours)
    return calendar(db).add_working_days(due_at, cfg.handling_escalation_workdays)


def _start_of(order: WorkOrder, deadline: Deadline) -> datetime | None:
    return order.created_at if deadline == "response" else order.handling_started_at


def _limit_of(order: WorkOrder, deadline: Deadline) -> dict[str, Any]:
    return order.response_limit if deadline == "response" else order.handling_limit


def _due_column(order: WorkOrder, deadline: Deadline) -> datetime | None:
    return order.response_due_at if deadline == "response" else order.handling_due_at


# -- scheduling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a deadline's chain: a reminder, the overdue notice or the escalation."""

    kind: str
    key: str
    at: datetime
    payload: dict[str, Any]


def _chain(
    db: Session,
    *,
    deadline: Deadline,
    start: datetime,
    due: datetime,
    limit: dict[str, Any],
    holes: list[tuple[datetime, datetime | None]],
) -> Iterator[Step]:
    """The steps of one deadline's chain, in order, each worked out only when asked for:
    arming stops at the first step worth taking, so intake does not pay for the rest."""
    base = {"deadline": deadline, "due_at": due.isoformat()}
    for fraction in sorted(f for f in get_wo_settings().reminder_fractions if 0 < f < 1):
        at = fraction_point(
            start, due, fraction, unit=limit["unit"], calendar=calendar(db), suspensions=holes
        )
        yield Step(
            KIND_REMIND,
            f"{deadline}:remind:{round(fraction * 100)}",
            at,
            {**base, "fraction": fraction},
        )
    yield Step(KIND_OVERDUE, f"{deadline}:overdue", due, base)
    yield Step(
        KIND_ESCALATE,
        f"{deadline}:escalate",
        escalation_time(db, deadline=deadline, due_at=due),
        base,
    )


def deadline_steps(
    db: Session,
    *,
    order: WorkOrder,
    deadline: Deadline,
    holes: list[tuple[datetime, datetime | None]] | None = None,
) -> list[Step]:
    """Every step of one deadline, in order, from the due time stored on the order (empty
    when the deadline is not running). Pages may show them ("next reminder at …")."""
    due = _due_column(order, deadline)
    start = _start_of(order, deadline)
    if due is None or start is None:
        return []
    if holes is None:
        holes = suspensions(db, order_id=order.id)
    return list(
        _chain(
            db,
            deadline=deadline,
            start=start,
            due=due,
            limit=_limit_of(order, deadline),
            holes=holes,
        )
    )


def _first_step(steps: Iterable[Step], *, now: datetime) -> Step | None:
    """The first step still worth taking: reminder points already past are skipped, so
    there is no "50 %" notice at 90 %."""
    for step in steps:
        if step.kind == KIND_REMIND and step.at <= now:
            continue
        return step
    return None


def _arm(db: Session, *, order: WorkOrder, steps: Iterable[Step], now: datetime) -> Step | None:
    """Schedule the first step still worth taking. Only one item per deadline is pending at a
    time; each handler arms the next (a chain, as escalation policies run), which keeps
    intake to a single timer write."""
    step = _first_step(steps, now=now)
    if step is not None:
        timers.schedule(
            db,
            kind=step.kind,
            subject_type=SUBJECT_TYPE,
            subject_id=str(order.id),
            key=step.key,
            due_at=step.at,
            payload=step.payload,
            now=now,
        )
    return step


def schedule_deadline(
    db: Session, *, order: WorkOrder, deadline: Deadline, now: datetime, fresh: bool = False
) -> None:
    """(Re)arm one deadline's chain from the due time stored on the order; whatever was armed
    for an earlier due time is cancelled first. `fresh`: the order was created in this
    transaction, so it has neither items nor suspensions yet."""
    if fresh:
        arm_new_order(
            db,
            order_id=order.id,
            deadline=deadline,
            start=_start_of(order, deadline),
            due=_due_column(order, deadline),
            limit=_limit_of(order, deadline),
            now=now,
        )
        return
    cancel_deadline(db, order_id=order.id, deadline=deadline, now=now)
    steps = deadline_steps(db, order=order, deadline=deadline)
    _arm(db, order=order, steps=steps, now=now)


class NewDeadline(NamedTuple):
    """A deadline of an order made in this transaction, as arm_new_orders takes them."""

    order_id: int
    deadline: Deadline
    start: datetime | None
    due: datetime | None
    limit: dict[str, Any]


def arm_new_order(
    db: Session,
    *,
    order_id: int,
    deadline: Deadline,
    start: datetime | None,
    due: datetime | None,
    limit: dict[str, Any],
    now: datetime,
) -> Step | None:
    """Arm the first step of a deadline of an order made in this transaction: it has no
    items and no suspensions yet, so nothing is cancelled or read, and the step is one
    INSERT (timers.schedule_fresh)."""
    return arm_new_orders(db, [NewDeadline(order_id, deadline, start, due, limit)], now=now)[0]


def arm_new_orders(
    db: Session, deadlines: Sequence[NewDeadline], *, now: datetime
) -> list[Step | None]:
    """arm_new_order() for many new orders (a batch of reports): one INSERT for all."""
    steps, fresh = _first_steps(db, deadlines, now=now)
    timers.schedule_fresh_many(db, fresh, now=now)
    return steps


def arm_new_orders_pg(
    db: Session, deadlines: Sequence[NewDeadline], *, now: datetime
) -> Statement | None:
    """arm_new_orders() as a statement to send with others (db.pg_together, PostgreSQL).
    None: no deadline to arm."""
    _, fresh = _first_steps(db, deadlines, now=now)
    return timers.fresh_many_pg(fresh, now=now)


def _first_steps(
    db: Session, deadlines: Sequence[NewDeadline], *, now: datetime
) -> tuple[list[Step | None], list[timers.Fresh]]:
    """The first armed step of each new order's deadline, and the due items that arm them."""
    steps: list[Step | None] = []
    fresh: list[timers.Fresh] = []
    for d in deadlines:
        step = None
        if d.due is not None and d.start is not None:
            step = _first_step(
                _chain(db, deadline=d.deadline, start=d.start, due=d.due, limit=d.limit, holes=[]),
                now=now,
            )
        steps.append(step)
        if step is not None:
            fresh.append(
                timers.Fresh(
                    step.kind, SUBJECT_TYPE, str(d.order_id), step.key, step.at, step.payload
                )
            )
    return steps, fresh


def _steps_after(db: Session, *, order: WorkOrder, item: DueItem) -> list[Step]:
    """The steps that follow `item` in its deadline's chain."""
    steps = deadline_steps(db, order=order, deadline=item.payload["deadline"])
    keys = [s.key for s in steps]
    return steps[keys.index(item.key) + 1 :] if item.key in keys else []


def cancel_deadline(db: Session, *, order_id: int, deadline: Deadline, now: datetime) -> int:
    n = 0
    for item in timers.list_for_subject(db, subject_type=SUBJECT_TYPE, subject_id=str(order_id)):
        if item.key.startswith(f"{deadline}:") and item.state in timers.OPEN_STATES:
            n += timers.cancel(
                db, subject_type=SUBJECT_TYPE, subject_id=str(order_id), key=item.key, now=now
            )
    return n


def cancel_all(db: Session, *, order_id: int, now: datetime) -> int:
    return timers.cancel(db, subject_type=SUBJECT_TYPE, subject_id=str(order_id), now=now)


def pending_items(db: Session, *, order_id: int) -> list[DueItem]:
    """The order's open timer items (pages show "next reminder at …")."""
    return [
        i
        for i in timers.list_for_subject(db, subject_type=SUBJECT_TYPE, subject_id=str(order_id))
        if i.state in timers.OPEN_STATES
    ]


# -- handlers -----------------------------------------------------------------------------


def still_running(order: WorkOrder, deadline: str, due_iso: str | None) -> bool:
    """Whether a deadline item set for `due_iso` still applies to the order as it is now."""
    if order.state in FINAL_STATES or order.state == "suspended":
        return False
    if deadline == "response":
        if order.responded_at is not None or order.state in DONE_STATES:
            return False
        due = order.response_due_at
    elif deadline == "handling":
        if order.state in DONE_STATES or order.handling_started_at is None:
            return False
        due = order.handling_due_at
    else:
        return False
    return due is not None and due_iso == due.isoformat()


def _load(db: Session, item: DueItem) -> WorkOrder:
    order = db.get(WorkOrder, int(item.subject_id), with_for_update=_pg(db))
    if order is None:
        raise timers.PermanentFailure(f"work order {item.subject_id} does not exist")
    return order


def _pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _cause(item: DueItem) -> str:
    # Stable for this item and this due time: a retried run finds the outbox rows it wrote.
    return f"t:{item.key}:{item.requested_due_at.isoformat()}"


def _system_event(
    db: Session, *, order: WorkOrder, action: str, now: datetime, note: str, data: dict[str, Any]
) -> OrderEvent:
    ev = OrderEvent(
        order_id=order.id,
        at=now,
        action=action,
        from_state=order.state,
        to_state=order.state,
        actor_role="system",
        note=note,
        data=data,
    )
    db.add(ev)
    db.flush()
    return ev


@timers.register(KIND_REMIND)
def handle_remind(db: Session, item: DueItem, now: datetime) -> None:
    order = _load(db, item)
    deadline = str(item.payload.get("deadline"))
    if not still_running(order, deadline, item.payload.get("due_at")):
        return
    rest = _steps_after(db, order=order, item=item)
    _arm(db, order=order, steps=rest, now=now)
    if any(step.at <= now for step in rest):
        return  # the sweepers were down: a later step has come too and says more than this
    flows.reminder(
        db,
        order=order,
        deadline=deadline,
        fraction=float(item.payload.get("fraction", 0)),
        due_at=datetime.fromisoformat(item.payload["due_at"]),
        cause=_cause(item),
        now=now,
    )


@timers.register(KIND_OVERDUE)
def handle_overdue(db: Session, item: DueItem, now: datetime) -> None:
    order = _load(db, item)
    deadline = str(item.payload.get("deadline"))
    if not still_running(order, deadline, item.payload.get("due_at")):
        return
    due_at = datetime.fromisoformat(item.payload["due_at"])
    _system_event(
        db,
        order=order,
        action="overdue",
        now=now,
        note="",
        data={"deadline": deadline, "due_at": item.payload["due_at"]},
    )
    flows.overdue(db, order=order, deadline=deadline, due_at=due_at, cause=_cause(item), now=now)
    _arm(db, order=order, steps=_steps_after(db, order=order, item=item), now=now)


@timers.register(KIND_ESCALATE)
def handle_escalate(db: Session, item: DueItem, now: datetime) -> None:
    order = _load(db, item)
    deadline = str(item.payload.get("deadline"))
    if not still_running(order, deadline, item.payload.get("due_at")):
        return
    due_at = datetime.fromisoformat(item.payload["due_at"])
    sup = db.scalar(
        select(Supervision).where(
            Supervision.order_id == order.id,
            Supervision.deadline == deadline,
            Supervision.state == "open",
        )
    )
    if sup is None:
        what = "响应" if deadline == "response" else "处置"
        sup = Supervision(
            order_id=order.id,
            deadline=deadline,
            state="open",
            opened_at=now,
            due_at=due_at,
            reason=f"{what}超时未完成，自动升级督办 / {deadline} deadline missed",
        )
        db.add(sup)
        db.flush()
    _system_event(
        db,
        order=order,
        action="escalate",
        now=now,
        note="",
        data={"deadline": deadline, "due_at": item.payload["due_at"], "supervision_id": sup.id},
    )
    flows.escalated(
        db,
        order=order,
        deadline=deadline,
        due_at=due_at,
        supervision_id=sup.id,
        cause=_cause(item),
        now=now,
    )


def kinds() -> tuple[str, ...]:
    return (KIND_REMIND, KIND_OVERDUE, KIND_ESCALATE)
