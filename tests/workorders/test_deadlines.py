"""Deadlines and escalation, driven by a controllable clock: reminders at 50 % and 80 %, the
chain leader at the deadline, the bureau and a supervision record later; responding or
resolving stops what is pending. Nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.workorders.helpers import T0, grid_point, report, zone_point

from watergrid.auth import service as auth_service
from watergrid.auth.principal import Principal
from watergrid.notify.models import OutboxMessage
from watergrid.org import service as org_service
from watergrid.timers.clock import FrozenClock
from watergrid.timers.models import DueItem
from watergrid.timers.service import run_due
from watergrid.workorders import jobs, people, service
from watergrid.workorders.models import OrderEvent, Supervision, WorkOrder
from watergrid.workorders.schemas import OrderCreate


def who(db: Session, username: str) -> Principal:
    user = auth_service.get_by_username(db, username=username)
    assert user is not None
    return auth_service.load_principal(db, user=user)


class Sweeper:
    """Runs the timers as a worker would, at the clock's time."""

    def __init__(self, db: Session, factory: Callable[[], Session], clock: FrozenClock) -> None:
        self.db, self.factory, self.clock = db, factory, clock

    def at(self, delta: timedelta) -> int:
        self.clock.set(T0 + delta)
        ran = run_due(self.factory, worker_id="test-worker", now=self.clock.now())
        self.db.expire_all()
        return ran


def topics(db: Session, order_id: int) -> list[tuple[str, int | None]]:
    return [
        (m.topic, m.person_id)
        for m in db.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.subject_id == str(order_id), OutboxMessage.channel == "inapp")
            .order_by(OutboxMessage.id)
        )
    ]


def recipients(db: Session, order_id: int, topic: str) -> set[int | None]:
    return {p for t, p in topics(db, order_id) if t == topic}


def test_overdue_path_reminders_chain_leader_then_bureau(
    db: Session, factory: Callable[[], Session]
) -> None:
    lon, lat = zone_point(db, "Z01")
    body = report(
        lon=lon, lat=lat, category_code="disaster.waterlogging", attributes={"depth": "30to50"}
    )
    r = service.create_order(
        db, data=OrderCreate(**body), source="public_web", actor=None, idempotency_key=None, now=T0
    ).receipt
    # Waterlogging is an emergency: respond within 1 clock hour.
    assert r.priority == "emergency" and r.response_due_at == T0 + timedelta(hours=1)
    order = db.get(WorkOrder, r.id)
    assert order is not None
    handlers = set(people.department_person_ids(db, department_ids={order.department_id or -1}))
    assert handlers
    chain = org_service.zone_people(db, zone_id=order.zone_id or -1, role="chain_leader")[0].id
    leaders = set(people.role_person_ids(db, role="bureau_leader"))
    assert leaders and chain not in handlers

    s = Sweeper(db, factory, FrozenClock(T0))
    s.at(timedelta(minutes=29))
    assert recipients(db, r.id, "workorder.response_reminder") == set()

    s.at(timedelta(minutes=30))  # 50 %
    assert recipients(db, r.id, "workorder.response_reminder") == handlers
    n50 = len(topics(db, r.id))

    s.at(timedelta(minutes=47))
    assert len(topics(db, r.id)) == n50
    s.at(timedelta(minutes=48))  # 80 %
    reminders = [t for t in topics(db, r.id) if t[0] == "workorder.response_reminder"]
    assert len(reminders) == 2 * len(handlers)

    s.at(timedelta(minutes=59))
    assert recipients(db, r.id, "workorder.response_overdue") == set()
    s.at(timedelta(hours=1))  # the deadline: the zone's chain leader (and the handlers)
    assert chain in recipients(db, r.id, "workorder.response_overdue")
    assert db.scalar(select(Supervision).where(Supervision.order_id == r.id)) is None

    s.at(timedelta(hours=2, minutes=59))
    assert recipients(db, r.id, "workorder.response_escalated") == set()
    s.at(timedelta(hours=3))  # 2 h later: the bureau leaders and a supervision record
    assert recipients(db, r.id, "workorder.response_escalated") == leaders
    sup = db.scalar(select(Supervision).where(Supervision.order_id == r.id))
    assert sup is not None and sup.state == "open" and sup.deadline == "response"
    assert sup.due_at == T0 + timedelta(hours=1)
    actions = list(
        db.scalars(
            select(OrderEvent.action).where(OrderEvent.order_id == r.id).order_by(OrderEvent.id)
        )
    )
    assert actions == ["create", "overdue", "escalate"]

    # A sweep later does nothing twice.
    before = topics(db, r.id)
    assert s.at(timedelta(hours=5)) == 0
    assert topics(db, r.id) == before

    # The supervision shows on the leader's list and closes once the response comes.
    listed = service.list_supervisions(db, principal=who(db, "leader"), state="open")
    assert sup.id in {x.id for x in listed}
    service.transition(
        db, order_id=r.id, action="accept", actor=who(db, "duty"), now=T0 + timedelta(hours=5)
    )
    service.transition(
        db, order_id=r.id, action="dispatch", actor=who(db, "duty"), now=T0 + timedelta(hours=5)
    )
    got = service.transition(
        db, order_id=r.id, action="check_in", actor=who(db, "chain1"), now=T0 + timedelta(hours=6)
    )
    assert got.responded_at == T0 + timedelta(hours=6)
    db.refresh(sup)
    assert sup.state == "closed" and sup.closed_reason == "check_in"


def test_responding_and_resolving_cancel_what_is_pending(
    db: Session, factory: Callable[[], Session]
) -> None:
    lon, lat = grid_point(db, "W20")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    duty = who(db, "duty")
    service.transition(db, order_id=r.id, action="accept", actor=duty, now=T0)
    d = service.transition(db, order_id=r.id, action="dispatch", actor=duty, now=T0)
    # Blocked drain, normal priority: handle within 5 working days: next Monday 09:00.
    assert d.handling_due_at == T0 + timedelta(days=7)
    order = db.get(WorkOrder, r.id)
    assert order is not None
    steps = {s.key: s.at for s in jobs.deadline_steps(db, order=order, deadline="handling")}
    # 50 % of 5 working days from Monday 09:00 is Wednesday 21:00 local (13:00 UTC); 80 %
    # is Friday 09:00; the escalation one working day after the deadline.
    assert steps == {
        "handling:remind:50": T0 + timedelta(days=2, hours=12),
        "handling:remind:80": T0 + timedelta(days=4),
        "handling:overdue": T0 + timedelta(days=7),
        "handling:escalate": T0 + timedelta(days=8),
    }
    armed = db.execute(
        select(DueItem.key, DueItem.due_at).where(
            DueItem.subject_id == str(r.id), DueItem.state == "pending"
        )
    ).all()
    assert sorted(armed) == [
        ("handling:remind:50", T0 + timedelta(days=2, hours=12)),
        ("response:remind:50", T0 + timedelta(hours=12)),
    ]

    service.transition(
        db,
        order_id=r.id,
        action="respond",
        actor=duty,
        now=T0 + timedelta(hours=2),
        mode="contacted",
    )
    states = {
        i.key: i.state for i in db.scalars(select(DueItem).where(DueItem.subject_id == str(r.id)))
    }
    assert all(v == "cancelled" for k, v in states.items() if k.startswith("response:"))
    assert all(v == "pending" for k, v in states.items() if k.startswith("handling:"))

    s = Sweeper(db, factory, FrozenClock(T0))
    s.at(timedelta(days=2, hours=12))
    assert recipients(db, r.id, "workorder.handling_reminder")
    assert recipients(db, r.id, "workorder.response_reminder") == set()

    service.transition(
        db, order_id=r.id, action="resolve", actor=duty, now=T0 + timedelta(days=3), note="已清掏"
    )
    s.at(timedelta(days=10))
    assert recipients(db, r.id, "workorder.handling_overdue") == set()
    assert db.scalar(select(Supervision).where(Supervision.order_id == r.id)) is None


def test_outside_every_zone_the_party_group_leader_is_told(
    db: Session, factory: Callable[[], Session]
) -> None:
    lon, lat = grid_point(db, "W20")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    order = db.get(WorkOrder, r.id)
    assert order is not None
    if order.zone_id is not None:  # the demo's grid happens to lie in a zone: nothing to show
        return
    group = org_service.party_group_for_grid(db, grid_id=order.grid_id or -1)
    assert group is not None and group.leader_id is not None
    s = Sweeper(db, factory, FrozenClock(T0))
    # The sweepers were down until the response deadline (1 working day): the first sweep
    # finds the stale 50 % reminder and drops it, the next one delivers the overdue notice.
    s.at(timedelta(days=1))
    s.at(timedelta(days=1))
    assert recipients(db, r.id, "workorder.response_reminder") == set()
    assert group.leader_id in recipients(db, r.id, "workorder.response_overdue")


def test_suspended_orders_are_not_chased(db: Session, factory: Callable[[], Session]) -> None:
    lon, lat = grid_point(db, "W21")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    duty = who(db, "duty")
    service.transition(db, order_id=r.id, action="accept", actor=duty, now=T0)
    service.transition(db, order_id=r.id, action="dispatch", actor=duty, now=T0)
    service.transition(
        db,
        order_id=r.id,
        action="suspend",
        actor=duty,
        now=T0 + timedelta(hours=1),
        note="等待施工单位配合",
    )
    s = Sweeper(db, factory, FrozenClock(T0))
    s.at(timedelta(days=20))
    assert [t for t, _ in topics(db, r.id) if "reminder" in t or "overdue" in t] == []
    # Resumed 10 days later (Thursday 12th, 09:00 + 1 h): the clocks pick up where they stopped.
    resumed = service.transition(
        db, order_id=r.id, action="resume", actor=duty, now=T0 + timedelta(days=10, hours=1)
    )
    # Response: 1 working day, 1 h used before the suspension -> 23 h after resuming.
    assert resumed.response_due_at == T0 + timedelta(days=11)
    assert not resumed.overdue


def test_a_deadline_in_a_year_without_calendar_data_carries_the_warning(db: Session) -> None:
    # The fixture seeds 2024–2026 only: a normal report on New Year's Eve 2026 runs into
    # 2027, which the calendar does not know yet.
    from datetime import UTC, datetime

    lon, lat = grid_point(db, "W22")
    eve = datetime(2026, 12, 31, 8, 0, tzinfo=UTC)
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=eve,
    ).receipt
    assert r.warnings == ["2027年节假日未录入，按周一至周五计算"]
    order = db.get(WorkOrder, r.id)
    assert order is not None and order.deadline_warnings == r.warnings
    assert r.number.startswith("GM-2026-")


def test_deadline_plan_shows_the_chain_and_the_armed_step(db: Session) -> None:
    lon, lat = grid_point(db, "W23")
    r = service.create_order(
        db,
        data=OrderCreate(**report(lon=lon, lat=lat)),
        source="public_web",
        actor=None,
        idempotency_key=None,
        now=T0,
    ).receipt
    plan = service.deadline_plan(db, order_id=r.id)
    assert [(s.deadline, s.key, s.armed) for s in plan] == [
        ("response", "response:remind:50", True),
        ("response", "response:remind:80", False),
        ("response", "response:overdue", False),
        ("response", "response:escalate", False),
    ]
    assert plan[2].at == r.response_due_at
    assert plan[3].at == T0 + timedelta(days=1, hours=2)
