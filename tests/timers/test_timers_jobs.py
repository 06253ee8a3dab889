"""The clock and the sweeper loop. Time moves by FrozenClock.advance(), never by sleeping."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import begin_write
from watergrid.timers import service
from watergrid.timers.clock import FrozenClock, SystemClock
from watergrid.timers.jobs import (
    default_worker_id,
    install_stop_signals,
    start_embedded,
    sweeper_loop,
)
from watergrid.timers.models import DueItem
from watergrid.timers.service import Registry

T0 = datetime(2025, 7, 1, 8, 0, tzinfo=UTC)
WAIT = 20.0  # generous upper bound for a thread to react; normally milliseconds


def add(
    factory: sessionmaker[Session],
    subject_id: str,
    due_at: datetime,
    kind: str = "flood.call_timeout",
) -> int:
    with factory() as db:
        begin_write(db)
        item = service.schedule(
            db, kind=kind, subject_type="call", subject_id=subject_id, due_at=due_at
        )
        db.commit()
        return item.id


def state(factory: sessionmaker[Session], item_id: int) -> str:
    with factory() as db:
        item = db.get(DueItem, item_id)
        assert item is not None
        return item.state


def test_frozen_clock() -> None:
    clock = FrozenClock(T0)
    assert clock.now() == T0
    assert clock.advance(minutes=5) == T0 + timedelta(minutes=5)
    assert clock.advance(timedelta(hours=1), seconds=1) == T0 + timedelta(
        hours=1, minutes=5, seconds=1
    )
    clock.set(T0)
    assert clock.now() == T0
    with pytest.raises(ValueError):
        clock.advance(minutes=-1)
    with pytest.raises(ValueError):
        clock.set(datetime(2025, 1, 1))
    assert SystemClock().now().tzinfo is UTC


def test_worker_ids_differ() -> None:
    assert default_worker_id() != default_worker_id()
    assert str(os.getpid()) in default_worker_id()


def test_the_sweeper_runs_items_when_the_clock_reaches_them(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()
    ran = threading.Event()
    sweeps = threading.Semaphore(0)

    @reg.register("flood.call_timeout")
    def timeout(db: Session, item: DueItem, now: datetime) -> None:
        ran.set()

    item_id = add(factory, "1", T0 + timedelta(minutes=3))
    clock = FrozenClock(T0)
    stop = threading.Event()

    class CountingClock:
        """Lets the test know a sweep has looked at the time."""

        def now(self) -> datetime:
            sweeps.release()
            return clock.now()

    thread = threading.Thread(
        target=sweeper_loop,
        args=(factory,),
        kwargs={
            "clock": CountingClock(),
            "worker_id": "w1",
            "interval_s": 0.01,
            "stop_event": stop,
            "registry": reg,
        },
    )
    thread.start()
    try:
        for _ in range(3):  # several sweeps at T0: nothing is due yet
            assert sweeps.acquire(timeout=WAIT)
        assert not ran.is_set() and state(factory, item_id) == "pending"
        clock.advance(minutes=3)
        assert ran.wait(WAIT)
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert state(factory, item_id) == "done"


def test_the_sweeper_survives_failing_handlers_and_database_errors(
    factory: sessionmaker[Session],
) -> None:
    reg = Registry()
    calls: dict[str, int] = {}
    second_try = threading.Event()

    @reg.register("flood.call_timeout")
    def flaky(db: Session, item: DueItem, now: datetime) -> None:
        calls[item.subject_id] = calls.get(item.subject_id, 0) + 1
        if item.subject_id == "flaky" and calls["flaky"] == 1:
            raise ConnectionError("SMS gateway timed out")
        if item.subject_id == "flaky":
            second_try.set()

    failures = {"left": 2}

    def unreliable_factory() -> Session:
        # The database is away for the first two sweeps.
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("connect", {}, Exception("server closed the connection"))
        return factory()

    flaky_id = add(factory, "flaky", T0)
    fine_id = add(factory, "fine", T0)
    clock = FrozenClock(T0)
    sweeper = start_embedded(
        unreliable_factory, clock=clock, worker_id="w1", interval_s=0.01, registry=reg
    )
    try:
        pause = threading.Event()  # never set: a bounded wait between looks
        for _ in range(int(WAIT / 0.01)):
            if (
                state(factory, fine_id) == "done"
                and state(factory, flaky_id) == "pending"
                and calls.get("flaky") == 1
            ):
                break
            pause.wait(0.01)
        assert state(factory, fine_id) == "done"
        assert state(factory, flaky_id) == "pending"  # pushed forward, not lost
        assert failures["left"] == 0
        clock.advance(service.retry_delay(0))
        assert second_try.wait(WAIT)
    finally:
        assert sweeper.stop(WAIT)
    assert state(factory, flaky_id) == "done"


def test_stopping_finishes_the_item_in_hand(factory: sessionmaker[Session]) -> None:
    reg = Registry()
    started = threading.Event()
    go_on = threading.Event()

    @reg.register("flood.call_timeout")
    def slow(db: Session, item: DueItem, now: datetime) -> None:
        started.set()
        assert go_on.wait(WAIT)

    ids = [add(factory, str(i), T0) for i in range(3)]
    sweeper = start_embedded(
        factory, clock=FrozenClock(T0), worker_id="w1", interval_s=0.01, registry=reg
    )
    assert started.wait(WAIT)
    sweeper.stop_event.set()  # as SIGTERM would
    go_on.set()
    assert sweeper.stop(WAIT)
    assert [state(factory, i) for i in ids] == ["done", "pending", "pending"]


def test_sigterm_sets_the_stop_event() -> None:
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        install_stop_signals(stop)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(WAIT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
