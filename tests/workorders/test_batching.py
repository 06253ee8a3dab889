"""Reports written together (workorders.batching, intake.create_orders): each report of a
batch is answered as if it had come alone, and one bad report costs only itself."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tests.workorders.helpers import T0, counts, grid_point, report

from watergrid.auth.principal import Principal
from watergrid.errors import AppError
from watergrid.notify.models import OutboxMessage
from watergrid.ops.metrics import INTAKE_BATCH
from watergrid.timers.models import DueItem
from watergrid.workorders import batching
from watergrid.workorders.intake import CreateRequest, create_orders
from watergrid.workorders.models import IdempotencyRecord, OrderEvent, WorkOrder
from watergrid.workorders.schemas import CreateResult, OrderCreate


def _req(key: str | None = None, *, at: int = 0, **over: object) -> CreateRequest:
    return CreateRequest(
        OrderCreate(**report(**over)), "public_web", None, key, T0 + timedelta(seconds=at)
    )


def test_a_batch_answers_each_report_on_its_own(db: Session) -> None:
    lon, lat = grid_point(db, "W12")
    far_lon, far_lat = grid_point(db, "W03")
    before = counts(db)
    out = create_orders(
        db,
        [
            _req("k-1", lon=lon, lat=lat),
            _req(None, at=1, category_code="no.such", lon=lon, lat=lat),  # turned down
            _req("k-2", at=2, lon=far_lon, lat=far_lat),
            _req("k-1", at=3, lon=lon, lat=lat),  # the first one again: a retry
            _req("k-2", at=4, lon=lon, lat=lat, description="另一件事"),  # key reused
            _req(None, at=5, lon=lon, lat=lat),  # same spot as the first
        ],
    )
    first, bad, second, retry, conflict, third = out
    assert isinstance(first, CreateResult) and not first.replayed
    assert isinstance(bad, AppError) and bad.status == 422
    assert [f.field for f in bad.fields] == ["category_code"]
    assert isinstance(second, CreateResult) and isinstance(third, CreateResult)
    assert isinstance(retry, CreateResult) and retry.replayed
    assert retry.receipt == first.receipt
    assert isinstance(conflict, AppError) and conflict.status == 409

    numbers = [r.receipt.number for r in (first, second, third)]
    assert len(set(numbers)) == 3
    # The third report was taken after the first, at the same spot: a possible duplicate,
    # as it would be had each come alone.
    assert [c.number for c in third.receipt.possible_duplicates] == [first.receipt.number]
    assert first.receipt.possible_duplicates == []

    after = counts(db)
    assert after["work_order"] - before["work_order"] == 3
    assert after["order_event"] - before["order_event"] == 3
    assert after["idempotency_key"] - before["idempotency_key"] == 2
    ids = [r.receipt.id for r in (first, second, third)]
    due = db.scalar(
        select(func.count())
        .select_from(DueItem)
        .where(DueItem.subject_type == "work_order", DueItem.subject_id.in_([str(i) for i in ids]))
    )
    assert due == 3  # each order's response clock is running
    for oid in ids:
        assert db.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.subject_id == str(oid), OutboxMessage.topic == "workorder.created")
        ), f"order {oid} was not announced"
    stored = db.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "k-1"))
    assert stored is not None and stored.order_id == first.receipt.id
    event = db.scalar(select(OrderEvent).where(OrderEvent.order_id == third.receipt.id))
    assert event is not None and event.data["possible_duplicates"] == [first.receipt.number]


def test_a_report_the_database_refuses_costs_only_itself(db: Session) -> None:
    lon, lat = grid_point(db, "W12")
    # Staff whose user row does not exist: the order's created_by_user_id breaks a foreign
    # key, which only the database notices, and the batch's transaction fails.
    ghost = Principal(
        user_id=999_999, username="ghost", display_name="ghost", roles=frozenset({"grid_member"})
    )
    bind = db.connection()
    answers = batching.write_batch(
        bind,
        [
            _req("ok-1", lon=lon, lat=lat),
            CreateRequest(OrderCreate(**report(lon=lon, lat=lat)), "patrol", ghost, None, T0),
            _req("ok-2", at=1, lon=lon, lat=lat),
        ],
    )
    good1, refused, good2 = answers
    assert isinstance(good1, CreateResult) and isinstance(good2, CreateResult)
    # On PostgreSQL the order is written in a pipeline (db.pg_together): its error still
    # comes out as SQLAlchemy's, as from any statement.
    assert isinstance(refused, IntegrityError)
    for r in (good1, good2):
        assert db.get(WorkOrder, r.receipt.id) is not None
    assert (
        db.scalar(
            select(func.count())
            .select_from(WorkOrder)
            .where(WorkOrder.created_by_user_id == 999_999)
        )
        == 0
    )


def test_reports_arriving_together_share_transactions(db: Session) -> None:
    lon, lat = grid_point(db, "W07")
    bind = db.connection()
    batches_before = _batches()

    async def burst() -> list[CreateResult | BaseException]:
        queue = batching.IntakeQueue()
        return await asyncio.gather(
            *(queue.submit(bind, _req(f"burst-{i}", at=i, lon=lon, lat=lat)) for i in range(12)),
            return_exceptions=True,
        )

    results = asyncio.run(burst())
    assert all(isinstance(r, CreateResult) for r in results), results
    receipts = [r.receipt for r in results if isinstance(r, CreateResult)]
    assert len({r.number for r in receipts}) == 12
    for r in receipts:
        assert db.get(WorkOrder, r.id) is not None
    # Twelve reports, fewer transactions: the ones that came while a batch was being
    # written went in together.
    assert 1 <= _batches() - batches_before < 12


def test_a_report_right_after_a_batch_is_not_left_waiting(db: Session) -> None:
    lon, lat = grid_point(db, "W05")
    bind = db.connection()

    async def one_after_another() -> tuple[CreateResult, CreateResult]:
        queue = batching.IntakeQueue()
        first = await queue.submit(bind, _req("seq-1", lon=lon, lat=lat))
        # The writer has just run out of work and ended; this report must get one.
        second = await queue.submit(bind, _req("seq-2", at=1, lon=lon, lat=lat))
        return first, second

    first, second = asyncio.run(asyncio.wait_for(one_after_another(), 20))
    assert first.receipt.number != second.receipt.number


def test_a_full_queue_turns_reports_away_with_503(db: Session, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(batching, "MAX_WAITING", 0)
    before = counts(db)

    async def one() -> None:
        await batching.IntakeQueue().submit(db.connection(), _req("full-1"))

    try:
        asyncio.run(one())
    except AppError as e:
        assert e.status == 503 and e.code == "overloaded"
    else:
        raise AssertionError("a full queue took the report")
    assert counts(db) == before


def _batches() -> float:
    return next(
        s.value for m in INTAKE_BATCH.collect() for s in m.samples if s.name.endswith("_count")
    )
