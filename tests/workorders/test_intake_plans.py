"""The statements of a batch of reports look rows up by index, whatever the size of the
tables: a plan that scans every order (or every idempotency key) once per batch costs more
with each report stored, which is how intake once slowed down as a busy day went on
(docs/performance.md, "Plans that grew with the table")."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select
from sqlalchemy.orm import Session
from tests.workorders.helpers import T0, grid_point, report

from watergrid.db import Statement, pg_together
from watergrid.workorders import intake
from watergrid.workorders.intake import CreateRequest, create_orders
from watergrid.workorders.models import IdempotencyRecord, WorkOrder
from watergrid.workorders.schemas import OrderCreate

FILLER = 3000
SCANNED = ("work_order", "idempotency_key")


def _fill(db: Session, template_id: int) -> None:
    """FILLER more open orders of the same category spread over the district, and as many
    idempotency keys: enough rows for a full scan to be the costly plan it is in service."""
    conn = db.connection()
    orders = WorkOrder.__table__
    row = dict(conn.execute(select(orders).where(orders.c.id == template_id)).mappings().one())
    del row["id"]
    rng = random.Random(3)
    rows = []
    for n in range(FILLER):
        rows.append(
            {
                **row,
                "number": f"PLAN-{n:06d}",
                "track_token_sha256": f"{n:064x}",
                "lon": rng.uniform(113.85, 113.99),
                "lat": rng.uniform(22.70, 22.83),
            }
        )
    conn.execute(insert(orders), rows)
    keys = IdempotencyRecord.__table__
    conn.execute(
        insert(keys),
        [
            {"key": f"plan-{n}", "request_sha256": "0" * 64, "receipt": None, "created_at": T0}
            for n in range(FILLER)
        ],
    )
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE work_order, idempotency_key")
    else:
        conn.exec_driver_sql("ANALYZE")


def _plan(conn: Connection, statement: str, params: Any) -> str:
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql("EXPLAIN " + statement, params).all()
        return "\n".join(r[0] for r in rows)
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


def _full_scans(plan: str, dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [t for t in SCANNED if f"Seq Scan on {t}" in plan]
    # SQLite: "SCAN work_order" is a full scan, "SEARCH work_order USING INDEX" a look-up.
    return [t for t in SCANNED if any(line.strip() == f"SCAN {t}" for line in plan.splitlines())]


def test_a_batch_reads_and_updates_by_index_on_a_full_table(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    lon, lat = grid_point(db, "W12")
    (first,) = create_orders(
        db, [CreateRequest(OrderCreate(**report(lon=lon, lat=lat)), "public_web", None, "p-0", T0)]
    )
    assert not isinstance(first, Exception)
    _fill(db, first.receipt.id)

    conn = db.connection()
    seen: list[tuple[str, Any]] = []

    def note(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool) -> None:
        if not many and any(t in statement for t in SCANNED):
            seen.append((statement, params))

    def together(session: Session, statements: Sequence[Statement]) -> Any:
        # PostgreSQL's statements that go in one round trip (db.pg_together), seen too.
        for statement, params in statements:
            note(None, None, statement, params, None, False)
        return pg_together(session, statements)

    monkeypatch.setattr(intake, "pg_together", together)
    event.listen(conn, "before_cursor_execute", note)
    try:
        out = create_orders(
            db,
            [
                CreateRequest(
                    OrderCreate(**report(lon=lon + 0.0002 * i, lat=lat)),
                    "public_web",
                    None,
                    f"p-{i}",
                    T0,
                )
                for i in range(1, 9)  # from 6 reports on, the old plans scanned
            ],
        )
    finally:
        event.remove(conn, "before_cursor_execute", note)
    assert all(not isinstance(o, Exception) for o in out)
    # The batch found the first report as a possible duplicate: the look-up ran.
    assert all(o.receipt.possible_duplicates for o in out)  # type: ignore[union-attr]

    dialect = conn.dialect.name
    looked = [s for s, _ in seen if s.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE"))]
    assert looked, "the batch read or updated orders and keys"
    for statement, params in seen:
        if not statement.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE")):
            continue
        plan = _plan(conn, statement, params)
        assert _full_scans(plan, dialect) == [], f"{statement}\n---\n{plan}"
