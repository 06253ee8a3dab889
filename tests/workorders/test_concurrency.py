"""Concurrent writers (threads with their own connections, real commits): a key retried at
the same moment makes one order; numbers never repeat or skip.

These tests commit, so they date their orders late in the year: the other tests' timer
sweeps (weeks after T0 at most) never reach these orders' due items."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from tests.workorders.helpers import T0, grid_point, report

from watergrid.db import begin_write
from watergrid.errors import AppError
from watergrid.workorders import service
from watergrid.workorders.models import IdempotencyRecord, WorkOrder
from watergrid.workorders.schemas import OrderCreate

LATE = T0 + timedelta(days=270)


def _in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # reported by the assertions below
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _create(engine: Engine, body: dict[str, Any], key: str | None) -> service.CreateResult:
    with Session(engine, expire_on_commit=False) as db:
        begin_write(db)
        res = service.create_order(
            db, data=OrderCreate(**body), source="api", actor=None, idempotency_key=key, now=LATE
        )
        db.commit()
        return res


def test_the_same_key_at_the_same_moment_makes_one_order(wo_engine: Engine) -> None:
    with Session(wo_engine) as s:
        lon, lat = grid_point(s, "W25")
    body = report(lon=lon, lat=lat, description="并发重试")
    results = _in_threads(8, lambda i: _create(wo_engine, body, "concurrent-key-1"))
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    receipts = {r.receipt.model_dump_json() for r in results}
    assert len(receipts) == 1
    assert sum(not r.replayed for r in results) == 1
    with Session(wo_engine) as s:
        rec = s.get(IdempotencyRecord, "concurrent-key-1")
        assert rec is not None
        assert (
            s.scalar(
                select(func.count()).select_from(WorkOrder).where(WorkOrder.id == rec.order_id)
            )
            == 1
        )
        same_text = s.scalar(
            select(func.count()).select_from(WorkOrder).where(WorkOrder.description == "并发重试")
        )
        assert same_text == 1


def test_concurrent_creates_get_distinct_consecutive_numbers(wo_engine: Engine) -> None:
    with Session(wo_engine) as s:
        lon, lat = grid_point(s, "W26")
    n = 12
    results = _in_threads(
        n, lambda i: _create(wo_engine, report(lon=lon, lat=lat, description=f"并发编号 {i}"), None)
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    numbers = sorted(int(r.receipt.number.rsplit("-", 1)[1]) for r in results)
    assert len(set(numbers)) == n
    assert numbers == list(range(numbers[0], numbers[0] + n))


def test_a_conflicting_body_under_a_taken_key_is_refused(wo_engine: Engine) -> None:
    with Session(wo_engine) as s:
        lon, lat = grid_point(s, "W27")
    _create(wo_engine, report(lon=lon, lat=lat), "concurrent-key-2")
    try:
        _create(wo_engine, report(lon=lon, lat=lat, address="另一个地址"), "concurrent-key-2")
    except AppError as e:
        assert e.status == 409
    else:
        raise AssertionError("a second body under one key must be refused")
