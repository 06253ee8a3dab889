"""Due items: scheduling, cancelling, claiming, finishing and running handlers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import begin_write
from watergrid.timers import service
from watergrid.timers.models import DueItem
from watergrid.timers.service import PermanentFailure, Registry

T0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def sched(
    db: Session,
    subject_id: str = "42",
    *,
    kind: str = "order.response_reminder",
    key: str = "",
    due_at: datetime = T0,
    **kw: object,
) -> DueItem:
    return service.schedule(
        db,
        kind=kind,
        subject_type="order",
        subject_id=subject_id,
        key=key,
        due_at=due_at,
        **kw,  # type: ignore[arg-type]
    )


def commit_items(factory: sessionmaker[Session], *items: tuple[str, str, datetime]) -> list[int]:
    """Schedule (kind, subject_id, due_at) items and commit; returns their ids."""
    with factory() as db:
        begin_write(db)
        ids = [sched(db, sid, kind=kind, due_at=due).id for kind, sid, due in items]
        db.commit()
    return ids


def state_of(factory: sessionmaker[Session], item_id: int) -> DueItem:
    with factory() as db:
        item = db.get(DueItem, item_id)
        assert item is not None
        db.expunge(item)
        return item


# -- scheduling ----------------------------------------------------------------------------


def test_scheduling_twice_is_one_item(db: Session) -> None:
    a = sched(db, payload={"level": 1})
    b = sched(db)
    assert a.id == b.id
    assert b.state == "pending" and b.due_at == T0 and b.payload == {"level": 1}
    assert len(db.scalars(select(DueItem)).all()) == 1


def test_rescheduling_a_pending_item_moves_it(db: Session) -> None:
    sched(db)
    moved = sched(db, due_at=T0 + 30 * MIN, payload={"level": 2})
    assert moved.due_at == T0 + 30 * MIN and moved.payload == {"level": 2}


def test_keys_tell_items_of_one_kind_apart(db: Session) -> None:
    half = sched(db, key="50pct", due_at=T0)
    most = sched(db, key="80pct", due_at=T0 + MIN)
    assert half.id != most.id


def test_a_done_item_is_not_rearmed_by_the_same_request(db: Session) -> None:
    item = sched(db)
    [claimed] = service.claim_due(db, worker_id="w1", now=T0)
    assert service.complete(db, item_id=claimed.id, worker_id="w1", now=T0)
    again = sched(db)  # e.g. a retried request recomputes the same reminder
    assert again.id == item.id and again.state == "done"
    later = sched(db, due_at=T0 + 60 * MIN)  # a new deadline after an extension
    assert later.state == "pending" and later.due_at == T0 + 60 * MIN and later.attempts == 0


def test_a_retried_item_keeps_its_retry_time_when_scheduled_again(db: Session) -> None:
    sched(db)
    [item] = service.claim_due(db, worker_id="w1", now=T0)
    service.fail(db, item_id=item.id, worker_id="w1", error="boom", retry_in=5 * MIN, now=T0)
    again = sched(db)
    assert again.due_at == T0 + 5 * MIN and again.requested_due_at == T0 and again.attempts == 1


def test_cancel_then_schedule_rearms(db: Session) -> None:
    sched(db)
    assert service.cancel(db, subject_type="order", subject_id="42") == 1
    item = service.get(db, kind="order.response_reminder", subject_type="order", subject_id="42")
    assert item is not None and item.state == "cancelled" and item.done_at is not None
    assert sched(db).state == "pending"


def test_cancel_by_kind_and_key_and_never_finished_items(db: Session) -> None:
    sched(db, kind="order.response_reminder", key="50pct")
    sched(db, kind="order.response_reminder", key="80pct")
    sched(db, kind="order.escalate_chain_leader")
    sched(db, "43")
    assert (
        service.cancel(
            db, kind="order.response_reminder", key="50pct", subject_type="order", subject_id="42"
        )
        == 1
    )
    assert (
        service.cancel(db, kind="order.response_reminder", subject_type="order", subject_id="42")
        == 1
    )
    assert service.cancel(db, subject_type="order", subject_id="42") == 1
    assert service.cancel(db, subject_type="order", subject_id="42") == 0
    states = {
        (i.kind, i.key): i.state
        for i in service.list_for_subject(db, subject_type="order", subject_id="42")
    }
    assert set(states.values()) == {"cancelled"}
    other = service.list_for_subject(db, subject_type="order", subject_id="43")
    assert [i.state for i in other] == ["pending"]


def test_naive_due_time_is_refused(db: Session) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sched(db, due_at=datetime(2025, 6, 2, 9, 0))


def test_concurrent_scheduling_of_one_thing_makes_one_row(factory: sessionmaker[Session]) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def go(n: int) -> None:
        try:
            barrier.wait()
            with factory() as db:
                begin_write(db)
                sched(db, due_at=T0 + n * MIN)
                db.commit()
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as db:
        assert len(db.scalars(select(DueItem)).all()) == 1


# -- claiming ------------------------------------------------------------------------------


def test_claim_takes_only_due_items_oldest_first_up_to_the_limit(db: Session) -> None:
    for i, offset in enumerate([3, 1, 2, 10]):
        sched(db, str(i), due_at=T0 + offset * MIN)
    got = service.claim_due(db, worker_id="w1", now=T0 + 5 * MIN, limit=2)
    assert [i.subject_id for i in got] == ["1", "2"]
    assert all(i.state == "claimed" and i.claimed_by == "w1" for i in got)
    rest = service.claim_due(db, worker_id="w2", now=T0 + 5 * MIN, limit=10)
    assert [i.subject_id for i in rest] == ["0"]
    assert service.claim_due(db, worker_id="w2", now=T0 + 5 * MIN) == []


def test_a_crashed_claim_is_reclaimed_after_the_lease(db: Session) -> None:
    sched(db)
    [item] = service.claim_due(db, worker_id="crashed", now=T0)
    lease = service.LEASE
    assert service.claim_due(db, worker_id="w2", now=T0 + lease - MIN) == []
    [again] = service.claim_due(db, worker_id="w2", now=T0 + lease)
    assert again.id == item.id and again.claimed_by == "w2" and again.attempts == 1
    assert again.last_error is not None and "lease expired" in again.last_error
    # The crashed worker, should it wake up, can no longer finish it.
    assert not service.complete(db, item_id=item.id, worker_id="crashed")
    assert service.complete(db, item_id=item.id, worker_id="w2")


def test_fail_pushes_the_due_time_and_counts(db: Session) -> None:
    sched(db)
    [item] = service.claim_due(db, worker_id="w1", now=T0)
    assert not service.fail(db, item_id=item.id, worker_id="other", error="x", retry_in=MIN)
    assert service.fail(
        db, item_id=item.id, worker_id="w1", error="timeout", retry_in=2 * MIN, now=T0
    )
    db.refresh(item)
    assert (item.state, item.due_at, item.attempts, item.last_error) == (
        "pending",
        T0 + 2 * MIN,
        1,
        "timeout",
    )
    assert item.claimed_by is None
    assert service.claim_due(db, worker_id="w1", now=T0 + MIN) == []
    assert len(service.claim_due(db, worker_id="w1", now=T0 + 2 * MIN)) == 1


def test_retry_delay_backs_off_to_an_hour() -> None:
    delays = [service.retry_delay(n) for n in range(10)]
    assert delays[:3] == [timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2)]
    assert delays == sorted(delays) and delays[-1] == timedelta(hours=1)
    assert service.retry_delay(10_000) == timedelta(hours=1)


# -- running handlers ----------------------------------------------------------------------


def test_run_due_runs_handlers_and_commits_their_writes_with_the_item(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()
    seen: list[tuple[str, datetime]] = []

    @reg.register("order.response_reminder")
    def remind(db: Session, item: DueItem, now: datetime) -> None:
        seen.append((item.subject_id, now))
        # A handler's own write (here: the next step of an escalation) commits with it.
        service.schedule(
            db,
            kind="order.escalate_chain_leader",
            subject_type="order",
            subject_id=item.subject_id,
            due_at=now + 30 * MIN,
        )

    [a, b] = commit_items(
        factory,
        ("order.response_reminder", "1", T0),
        ("order.response_reminder", "2", T0 + 10 * MIN),
    )
    assert service.run_due(factory, worker_id="w1", now=T0, limit=10, registry=reg) == 1
    assert seen == [("1", T0)]
    assert state_of(factory, a).state == "done" and state_of(factory, b).state == "pending"
    with factory() as db:
        nxt = service.get(
            db, kind="order.escalate_chain_leader", subject_type="order", subject_id="1"
        )
        assert nxt is not None and nxt.due_at == T0 + 30 * MIN


def test_a_failing_handler_is_retried_later_and_does_not_stop_the_others(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()
    calls: list[str] = []

    @reg.register("flood.call_timeout")
    def timeout(db: Session, item: DueItem, now: datetime) -> None:
        calls.append(item.subject_id)
        # Its writes must vanish with the failure.
        service.schedule(
            db,
            kind="flood.escalate",
            subject_type="call",
            subject_id=item.subject_id,
            due_at=now + timedelta(hours=1),
        )
        if item.subject_id == "bad":
            raise RuntimeError("gateway down")

    with factory() as db:
        begin_write(db)
        for sid in ["a", "bad", "c"]:
            service.schedule(
                db, kind="flood.call_timeout", subject_type="call", subject_id=sid, due_at=T0
            )
        db.commit()
    assert service.run_due(factory, worker_id="w1", now=T0, registry=reg) == 3
    assert sorted(calls) == ["a", "bad", "c"]
    with factory() as db:
        items = {
            i.subject_id: i
            for i in db.scalars(select(DueItem).where(DueItem.kind == "flood.call_timeout"))
        }
        bad = items["bad"]
        assert (bad.state, bad.attempts, bad.due_at) == ("pending", 1, T0 + timedelta(seconds=30))
        assert bad.last_error == "RuntimeError: gateway down"
        assert items["a"].state == items["c"].state == "done"
        escalations = db.scalars(
            select(DueItem.subject_id).where(DueItem.kind == "flood.escalate")
        ).all()
        assert sorted(escalations) == ["a", "c"]
    # Nothing is due again until the back-off has passed; then it runs again.
    assert (
        service.run_due(factory, worker_id="w1", now=T0 + timedelta(seconds=29), registry=reg) == 0
    )
    assert (
        service.run_due(factory, worker_id="w1", now=T0 + timedelta(seconds=30), registry=reg) == 1
    )
    assert calls.count("bad") == 2


def test_a_permanent_failure_cancels_the_item_and_keeps_the_error(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()

    @reg.register("order.response_reminder")
    def gone(db: Session, item: DueItem, now: datetime) -> None:
        raise PermanentFailure("work order 1 was deleted")

    [a] = commit_items(factory, ("order.response_reminder", "1", T0))
    service.run_due(factory, worker_id="w1", now=T0, registry=reg)
    item = state_of(factory, a)
    assert item.state == "cancelled" and "deleted" in (item.last_error or "")


def test_an_unknown_kind_is_retried_not_dropped(factory: sessionmaker[Session]) -> None:
    [a] = commit_items(factory, ("order.nobody_handles_this", "1", T0))
    service.run_due(factory, worker_id="w1", now=T0, registry=Registry())
    item = state_of(factory, a)
    assert item.state == "pending" and "no handler" in (item.last_error or "")


def test_an_item_cancelled_while_claimed_is_not_run(factory: sessionmaker[Session]) -> None:
    reg = Registry()
    ran: list[str] = []

    @reg.register("order.response_reminder")
    def remind(db: Session, item: DueItem, now: datetime) -> None:
        ran.append(item.subject_id)
        # Closing order 1 cancels order 2's reminder, already claimed in this batch.
        service.cancel(db, subject_type="order", subject_id="2")

    [a, b] = commit_items(
        factory, ("order.response_reminder", "1", T0), ("order.response_reminder", "2", T0 + MIN)
    )
    assert service.run_due(factory, worker_id="w1", now=T0 + MIN, registry=reg) == 2
    assert ran == ["1"]
    assert state_of(factory, b).state == "cancelled"


def test_a_handler_can_rearm_its_own_item(factory: sessionmaker[Session]) -> None:
    reg = Registry()

    @reg.register("flood.call_timeout")
    def again(db: Session, item: DueItem, now: datetime) -> None:
        if item.payload.get("round", 0) < 2:
            service.schedule(
                db,
                kind=item.kind,
                subject_type=item.subject_type,
                subject_id=item.subject_id,
                due_at=now + 5 * MIN,
                payload={"round": item.payload.get("round", 0) + 1},
            )

    [a] = commit_items(factory, ("flood.call_timeout", "7", T0))
    now = T0
    for expected_round in (1, 2):
        assert service.run_due(factory, worker_id="w1", now=now, registry=reg) == 1
        item = state_of(factory, a)
        assert item.state == "pending" and item.payload == {"round": expected_round}
        now += 5 * MIN
    service.run_due(factory, worker_id="w1", now=now, registry=reg)
    assert state_of(factory, a).state == "done"


def test_stop_finishes_the_item_in_hand_and_releases_the_rest(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()
    stop = threading.Event()

    @reg.register("order.response_reminder")
    def remind(db: Session, item: DueItem, now: datetime) -> None:
        stop.set()  # SIGTERM arrives while the first item is running

    ids = commit_items(factory, *[("order.response_reminder", str(i), T0) for i in range(3)])
    assert service.run_due(factory, worker_id="w1", now=T0, registry=reg, stop_event=stop) == 1
    states = [state_of(factory, i) for i in ids]
    assert [s.state for s in states] == ["done", "pending", "pending"]
    assert all(s.claimed_by is None for s in states[1:])


def test_registering_two_handlers_for_one_kind_is_refused() -> None:
    reg = Registry()

    @reg.register("order.x")
    def one(db: Session, item: DueItem, now: datetime) -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @reg.register("order.x")
        def two(db: Session, item: DueItem, now: datetime) -> None: ...

    reg.register("order.x")(one)  # the same function again (a re-import) is fine
    assert reg.kinds() == ["order.x"]


# -- housekeeping --------------------------------------------------------------------------


def test_queue_stats_and_purge(db: Session) -> None:
    sched(db, "1", due_at=T0)
    sched(db, "2", due_at=T0 + MIN)
    sched(db, "3", due_at=T0 + 60 * MIN)
    sched(db, "4", due_at=T0)
    [first, second] = service.claim_due(db, worker_id="w1", now=T0, limit=2)
    service.complete(db, item_id=first.id, worker_id="w1", now=T0)
    stats = service.queue_stats(db, now=T0 + 2 * MIN)
    assert (stats.pending, stats.claimed, stats.done, stats.cancelled) == (2, 1, 1, 0)
    assert stats.overdue == 1 and stats.oldest_overdue_at == T0 + MIN
    assert stats.stale_claims == 0
    assert service.queue_stats(db, now=T0 + service.LEASE).stale_claims == 1
    assert service.purge_finished(db, before=T0) == 0
    assert service.purge_finished(db, before=T0 + MIN) == 1
    assert second.state == "claimed"
