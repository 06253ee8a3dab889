"""Several worker processes on one database: no item is claimed or run twice, none is lost,
and a worker that dies mid-way loses nothing."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import begin_write, make_engine
from watergrid.timers import service
from watergrid.timers.models import DueItem

NOW = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
SPAWN = mp.get_context("spawn")  # children build their own engines, as real workers do

# What handlers "do" in these tests: one row per run, so a double run is visible.
effects_md = MetaData()
effects = Table(
    "timers_test_effect",
    effects_md,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, nullable=False),
    Column("worker_id", String(64), nullable=False),
)


def add_due_items(engine: Engine, n: int, *, kind: str = "test.claim") -> list[int]:
    rows = [
        {
            "kind": kind,
            "subject_type": "test",
            "subject_id": str(i),
            "key": "",
            "due_at": NOW - timedelta(seconds=i % 600),
            "requested_due_at": NOW - timedelta(seconds=i % 600),
            "state": "pending",
            "attempts": 0,
            "payload": {},
            "created_at": NOW,
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        conn.execute(insert(DueItem), rows)
        return list(conn.scalars(select(DueItem.id).where(DueItem.kind == kind)))


# -- child processes -------------------------------------------------------------------------


def pace(began: float) -> None:
    """Stands for the work a real worker does between claims, as long as the claim took. A
    SQLite writer that loops straight back to BEGIN IMMEDIATE starves the other (whose busy
    handler sleeps in steps of up to 100 ms), and a race nobody else runs in proves nothing."""
    time.sleep(max(0.002, time.perf_counter() - began))


def claimer(url: str, worker_id: str, skip_locked: bool | None, start: Any, out: str) -> None:
    engine = make_engine(url, pool_size=1)
    factory = sessionmaker(bind=engine)
    taken: list[int] = []
    with engine.connect():
        pass  # connected before the race starts, so both really run at once
    start.wait(60)
    while True:
        began = time.perf_counter()
        with factory() as db:
            begin_write(db)
            got = [
                item.id
                for item in service.claim_due(
                    db, worker_id=worker_id, now=NOW, limit=50, skip_locked=skip_locked
                )
            ]
            left = db.scalar(select(func.count()).where(DueItem.state == "pending"))
            db.commit()
        taken.extend(got)
        if not got and not left:
            break
        pace(began)
    Path(out).write_text(json.dumps(taken))
    engine.dispose()


def runner(url: str, worker_id: str, start: Any, out: str) -> None:
    engine = make_engine(url, pool_size=1)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    reg = service.Registry()

    @reg.register("test.effect")
    def effect(db: Session, item: DueItem, now: datetime) -> None:
        db.execute(insert(effects).values(item_id=item.id, worker_id=worker_id))

    with engine.connect():
        pass
    start.wait(60)
    ran = 0
    while True:
        began = time.perf_counter()
        n = service.run_due(factory, worker_id=worker_id, now=NOW, limit=10, registry=reg)
        ran += n
        if not n:
            with factory() as db:
                if not db.scalar(select(func.count()).where(DueItem.state != "done")):
                    break
        pace(began)
    Path(out).write_text(json.dumps(ran))
    engine.dispose()


def crasher(url: str, mode: str) -> None:
    """Dies without cleaning up: after committing claims, or in the middle of a handler."""
    engine = make_engine(url, pool_size=1)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    if mode == "after_claim":
        with factory() as db:
            begin_write(db)
            service.claim_due(db, worker_id="doomed", now=NOW, limit=50)
            db.commit()
        os._exit(17)
    reg = service.Registry()

    @reg.register("test.effect")
    def half_done(db: Session, item: DueItem, now: datetime) -> None:
        db.execute(insert(effects).values(item_id=item.id, worker_id="doomed"))
        db.flush()
        os._exit(17)  # killed while the item is marked done but not yet committed

    service.run_due(factory, worker_id="doomed", now=NOW, limit=50, registry=reg)


def run_children(target: Any, args_list: list[tuple[Any, ...]], start: Any = None) -> list[int]:
    procs = [SPAWN.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    if start is not None:
        start.wait(60)
    for p in procs:
        p.join(90)
        if p.is_alive():
            p.kill()
            pytest.fail("worker process hung")
    return [p.exitcode or 0 for p in procs]


# -- tests -----------------------------------------------------------------------------------


def claim_cases(backend: str) -> list[tuple[bool | None, int]]:
    """(skip_locked, items). On PostgreSQL also show that the conditional UPDATE alone is
    enough without SKIP LOCKED (fewer items: there the workers queue behind each other)."""
    return [(None, 2000), (False, 500)] if backend == "postgresql" else [(None, 2000)]


@pytest.mark.slow
def test_two_processes_claim_2000_items_each_exactly_once(
    db_url: str, engine: Engine, backend: str, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    for skip_locked, n in claim_cases(backend):
        with engine.begin() as conn:
            conn.execute(delete(DueItem))
        all_ids = set(add_due_items(engine, n))
        start = SPAWN.Barrier(3)  # two workers and this test
        outs = [tmp_path / f"w{i}-{skip_locked}.json" for i in range(2)]
        codes = run_children(
            claimer,
            [(db_url, f"w{i}", skip_locked, start, str(outs[i])) for i in range(2)],
            start,
        )
        assert codes == [0, 0]
        a, b = (json.loads(p.read_text()) for p in outs)
        assert len(a) == len(set(a)) and len(b) == len(set(b))
        assert not set(a) & set(b), "an item was claimed twice"
        assert set(a) | set(b) == all_ids, "an item was never claimed"
        if skip_locked is None:
            # Without SKIP LOCKED the worker that loses a row waits for the winner's commit
            # and so starts every next round behind it: correct, but one may take it all.
            assert a and b, "both workers should have taken part"
        with factory() as db:
            by_worker = dict(
                db.execute(
                    select(DueItem.claimed_by, func.count()).group_by(DueItem.claimed_by)
                ).all()
            )
        assert by_worker == {w: len(ids) for w, ids in (("w0", a), ("w1", b)) if ids}


@pytest.mark.slow
def test_two_processes_running_handlers_run_each_item_once(
    db_url: str, engine: Engine, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    effects_md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(effects.delete())
    ids = add_due_items(engine, 200, kind="test.effect")
    start = SPAWN.Barrier(3)
    outs = [tmp_path / f"r{i}.json" for i in range(2)]
    codes = run_children(runner, [(db_url, f"r{i}", start, str(outs[i])) for i in range(2)], start)
    assert codes == [0, 0]
    ran = [json.loads(p.read_text()) for p in outs]
    assert sum(ran) == len(ids) and all(ran)
    with factory() as db:
        per_item: dict[int, int] = dict(
            db.execute(select(effects.c.item_id, func.count()).group_by(effects.c.item_id)).all()
        )
        assert per_item == {i: 1 for i in ids}
        states = db.scalars(select(DueItem.state).where(DueItem.kind == "test.effect")).all()
        assert set(states) == {"done"}


@pytest.mark.slow
def test_a_worker_that_dies_after_claiming_loses_nothing(
    db_url: str, engine: Engine, factory: sessionmaker[Session]
) -> None:
    ids = set(add_due_items(engine, 50))
    assert run_children(crasher, [(db_url, "after_claim")]) == [17]
    with factory() as db:
        begin_write(db)
        assert (
            service.claim_due(db, worker_id="w2", now=NOW + service.LEASE - timedelta(seconds=1))
            == []
        )
        got = service.claim_due(db, worker_id="w2", now=NOW + service.LEASE, limit=100)
        assert {i.id for i in got} == ids
        assert all(i.attempts == 1 and "doomed" in (i.last_error or "") for i in got)
        db.commit()


@pytest.mark.slow
def test_a_worker_that_dies_inside_a_handler_loses_nothing_and_does_nothing_twice(
    db_url: str, engine: Engine, factory: sessionmaker[Session]
) -> None:
    effects_md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(effects.delete())
    [item_id] = add_due_items(engine, 1, kind="test.effect")
    assert run_children(crasher, [(db_url, "in_handler")]) == [17]
    with factory() as db:
        item = db.get(DueItem, item_id)
        assert item is not None and item.state == "claimed" and item.claimed_by == "doomed"
        assert db.scalar(select(func.count()).select_from(effects)) == 0  # rolled back

    reg = service.Registry()

    @reg.register("test.effect")
    def effect(db: Session, item: DueItem, now: datetime) -> None:
        db.execute(insert(effects).values(item_id=item.id, worker_id="w2"))

    later = NOW + service.LEASE
    assert service.run_due(factory, worker_id="w2", now=later, registry=reg) == 1
    with factory() as db:
        item = db.get(DueItem, item_id)
        assert item is not None and item.state == "done" and item.attempts == 1
        assert db.execute(select(effects.c.worker_id)).scalars().all() == ["w2"]
