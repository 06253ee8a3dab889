"""Keeping the rollups right.

Three ways in, one rule (kpi.facts):

- `refresh_orders(db, order_ids=...)`: recompute those orders' facts and add the difference
  to the rollups. Called in the transaction that changed the orders (the work-order hook), by
  the catch-up job, and by anything that writes orders in bulk.
- `catch_up(db)`: the orders touched by order_event rows since the stored watermark. Run
  periodically by the timer kind `kpi.catch_up` (kpi.jobs), so the figures follow the orders
  even where no hook is installed. Idempotent, so it re-reads a margin of recent events:
  event ids are handed out before their transactions commit, and a later id can commit
  first.
- `rebuild(db)`: every fact from the orders and their history, then every rollup from the
  facts in SQL (a second implementation of the same sums: tests compare the two).

Functions take a Session and never commit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from watergrid.kpi.definitions import N_BUCKETS
from watergrid.kpi.facts import (
    FACT_ACTIONS,
    ORDER_COLUMNS,
    Deltas,
    Ev,
    OrderRow,
    build_fact,
    diff,
    merge_into,
)
from watergrid.kpi.models import COUNTERS, KpiState, OrderFact, kpi_daily
from watergrid.workorders.models import OrderEvent, WorkOrder

log = logging.getLogger("watergrid.kpi")

# How far behind the watermark each catch-up looks again (see the module docstring).
CATCH_UP_MARGIN = 2000
CHUNK = 2000
FACT_COLUMNS: tuple[str, ...] = tuple(c.name for c in OrderFact.__table__.columns)


def _pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


# -- reading orders and their history ------------------------------------------------------


def _order_rows(db: Session, ids: Sequence[int], *, lock: bool) -> list[OrderRow]:
    cols = [getattr(WorkOrder, c) for c in ORDER_COLUMNS]
    q = select(*cols).where(WorkOrder.id.in_(ids), WorkOrder.number.is_not(None))
    if lock and _pg(db):
        # Serialise with a transition of the same order (it locks the row the same way), so
        # a fact is never computed from a state that is being replaced.
        q = q.order_by(WorkOrder.id).with_for_update(of=WorkOrder)
    return [OrderRow(*r) for r in db.execute(q).all()]


def _events(db: Session, ids: Sequence[int]) -> dict[int, list[Ev]]:
    out: dict[int, list[Ev]] = {i: [] for i in ids}
    q = (
        select(
            OrderEvent.order_id,
            OrderEvent.action,
            OrderEvent.at,
            OrderEvent.actor_role,
            OrderEvent.actor_person_id,
            OrderEvent.data,
        )
        .where(OrderEvent.order_id.in_(ids), OrderEvent.action.in_(FACT_ACTIONS))
        .order_by(OrderEvent.order_id, OrderEvent.id)
    )
    for oid, action, at, role, person, data in db.execute(q):
        out[oid].append(Ev(action, at, role, person, data or {}))
    return out


def facts_for(db: Session, ids: Sequence[int], *, lock: bool = False) -> dict[int, dict[str, Any]]:
    """Fresh facts of the given orders (those that exist and have a number)."""
    rows = _order_rows(db, ids, lock=lock)
    events = _events(db, [r.id for r in rows])
    return {r.id: build_fact(r, events[r.id]) for r in rows}


def stored_facts(
    db: Session, ids: Sequence[int], *, lock: bool = False
) -> dict[int, dict[str, Any]]:
    cols = [OrderFact.__table__.c[c] for c in FACT_COLUMNS]
    q = select(*cols).where(OrderFact.order_id.in_(ids))
    if lock and _pg(db):
        q = q.order_by(OrderFact.order_id).with_for_update()
    return {r.order_id: dict(r._mapping) for r in db.execute(q)}


# -- writing -------------------------------------------------------------------------------


def _insert(db: Session, table: Any) -> Any:
    return pg_insert(table) if _pg(db) else sqlite_insert(table)


def apply_deltas(db: Session, deltas: Deltas) -> int:
    """Add counters to kpi_daily rows, creating them as needed. Rows are written in key
    order, so two transactions touching the same rows lock them in the same order and
    cannot deadlock. Returns the number of rows touched."""
    if not deltas:
        return 0
    rows = []
    for dim, key, day in sorted(deltas):
        d = deltas[(dim, key, day)]
        rows.append({"dim": dim, "key": key, "day": day, **{c: d.get(c, 0) for c in COUNTERS}})
    ins = _insert(db, kpi_daily)
    stmt = ins.on_conflict_do_update(
        index_elements=["dim", "key", "day"],
        set_={c: kpi_daily.c[c] + ins.excluded[c] for c in COUNTERS},
    )
    for start in range(0, len(rows), 500):
        db.execute(stmt, rows[start : start + 500])
    return len(rows)


def _write_facts(db: Session, facts: dict[int, dict[str, Any]], existing: set[int]) -> None:
    table = OrderFact.__table__
    if not facts:
        return
    ins = _insert(db, table)
    stmt = ins.on_conflict_do_update(
        index_elements=["order_id"],
        set_={c: ins.excluded[c] for c in FACT_COLUMNS if c != "order_id"},
    )
    rows = [facts[i] for i in sorted(facts)]
    for start in range(0, len(rows), 500):
        db.execute(stmt, rows[start : start + 500])


def refresh_orders(db: Session, *, order_ids: Iterable[int]) -> int:
    """Bring the facts of these orders, and the rollups, up to date with the orders as they
    are in this transaction. Safe to call any number of times. Returns how many facts
    changed."""
    ids = sorted({int(i) for i in order_ids})
    changed = 0
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        db.flush()
        new = facts_for(db, part, lock=True)
        old = stored_facts(db, part, lock=True)
        deltas: Deltas = {}
        dirty: dict[int, dict[str, Any]] = {}
        for oid in part:
            n, o = new.get(oid), old.get(oid)
            if n == o:
                continue
            merge_into(deltas, diff(o, n))
            if n is not None:
                dirty[oid] = n
            changed += 1
        apply_deltas(db, deltas)
        _write_facts(db, dirty, set(old))
        gone = [oid for oid in part if oid in old and oid not in new]
        if gone:
            db.execute(delete(OrderFact).where(OrderFact.order_id.in_(gone)))
    return changed


# -- the catch-up job ------------------------------------------------------------------------


def _state(db: Session, *, lock: bool = False) -> KpiState:
    q = select(KpiState).where(KpiState.id == 1)
    if lock and _pg(db):
        q = q.with_for_update()
    st = db.scalar(q)
    if st is None:
        st = KpiState(id=1, event_watermark=0)
        db.add(st)
        db.flush()
    return st


def catch_up(db: Session, *, now: datetime, limit: int = 50_000) -> int:
    """Refresh the orders named by order_event rows newer than the watermark (less the
    margin), at most `limit` events a run; returns how many facts changed."""
    st = _state(db, lock=True)
    since = max(0, st.event_watermark - CATCH_UP_MARGIN)
    rows = db.execute(
        select(OrderEvent.id, OrderEvent.order_id)
        .where(OrderEvent.id > since)
        .order_by(OrderEvent.id)
        .limit(limit)
    ).all()
    if not rows:
        st.caught_up_at = now
        return 0
    changed = refresh_orders(db, order_ids={r.order_id for r in rows})
    st.event_watermark = max(st.event_watermark, max(r.id for r in rows))
    st.caught_up_at = now
    return changed


# -- rebuilding from scratch -------------------------------------------------------------------


def rebuild_facts(db: Session) -> int:
    """Every fact from the orders and their history (the rollups are left alone): one pass
    over the orders and one over their events, both in order id and both streamed from the
    server, merged as they come — a million orders never sit in memory, and the events are
    read sequentially instead of looked up order by order."""
    db.execute(delete(OrderFact))
    table = cast(Table, OrderFact.__table__)
    stream = {"stream_results": True, "yield_per": 5000}
    orders = db.execute(
        select(*[getattr(WorkOrder, c) for c in ORDER_COLUMNS])
        .where(WorkOrder.number.is_not(None))
        .order_by(WorkOrder.id)
        .execution_options(**stream)
    )
    events = iter(
        db.execute(
            select(
                OrderEvent.order_id,
                OrderEvent.action,
                OrderEvent.at,
                OrderEvent.actor_role,
                OrderEvent.actor_person_id,
                OrderEvent.data,
            )
            .where(OrderEvent.action.in_(FACT_ACTIONS))
            .order_by(OrderEvent.order_id, OrderEvent.id)
            .execution_options(**stream)
        )
    )
    pending = next(events, None)
    batch: list[dict[str, Any]] = []
    n = 0
    for raw in orders:
        row = OrderRow(*raw)
        evs: list[Ev] = []
        while pending is not None and pending[0] <= row.id:
            if pending[0] == row.id:
                evs.append(Ev(pending[1], pending[2], pending[3], pending[4], pending[5] or {}))
            pending = next(events, None)
        batch.append(build_fact(row, evs))
        if len(batch) >= CHUNK:
            db.execute(table.insert(), batch)
            n += len(batch)
            batch = []
    if batch:
        db.execute(table.insert(), batch)
        n += len(batch)
    return n


def _flag(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return case((cond, 1), else_=0)


def _cohort_selects(dim: str) -> list[Any]:
    """One SELECT per cohort yielding (key, day, counters...) for `dim`: the SQL twin of
    facts.contributions."""
    f = OrderFact.__table__.c
    zero = literal(0)

    def key_expr(person_col: Any) -> Any:
        if dim == "all":
            return literal("")
        if dim == "person":
            return sql_cast(person_col, String)
        if dim in ("subdistrict", "grid", "zone", "department"):
            return sql_cast(f[f"{dim}_id"], String)
        return {"category": f.group_code, "subcategory": f.category_code, "source": f.source}[dim]

    def select_for(person_col: Any, day_col: Any, where: Any, values: dict[str, Any]) -> Any:
        k = key_expr(person_col)
        cols = [k.label("key"), day_col.label("day")]
        cols += [(values.get(c, zero)).label(c) for c in COUNTERS]
        return select(*cols).where(where, k.is_not(None))

    counted = ("met", "missed", "open")
    valid = f.valid == True  # noqa: E712 - SQL comparison
    created = select_for(
        f.creator_person_id,
        f.created_day,
        literal(True),
        {
            "created": literal(1),
            "valid": _flag(valid),
            "patrol": _flag(and_(valid, f.self_discovered == True)),  # noqa: E712
            "rejected": _flag(f.state == "rejected"),
            "merged": _flag(f.state == "merged"),
        },
    )
    r_timed = f.resp_seconds.is_not(None)
    response = select_for(
        f.responder_person_id,
        f.resp_due_day,
        and_(f.resp_outcome.in_(counted), f.resp_due_day.is_not(None)),
        {
            "r_met": _flag(f.resp_outcome == "met"),
            "r_missed": _flag(f.resp_outcome == "missed"),
            "r_open": _flag(f.resp_outcome == "open"),
            "r_secs": func.coalesce(f.resp_seconds, 0),
            "r_timed": _flag(r_timed),
            **{f"r_b{i:02d}": _flag(f.resp_bucket == i) for i in range(N_BUCKETS)},
        },
    )
    h_timed = f.hand_seconds.is_not(None)
    handling = select_for(
        f.resolver_person_id,
        f.hand_due_day,
        and_(f.hand_outcome.in_(counted), f.hand_due_day.is_not(None)),
        {
            "h_met": _flag(f.hand_outcome == "met"),
            "h_missed": _flag(f.hand_outcome == "missed"),
            "h_open": _flag(f.hand_outcome == "open"),
            "h_secs": func.coalesce(f.hand_seconds, 0),
            "h_timed": _flag(h_timed),
            "h_resolved": _flag(f.resolved == True),  # noqa: E712
            "reworks": f.reworks,
            "extensions": f.extensions,
            **{f"h_b{i:02d}": _flag(f.hand_bucket == i) for i in range(N_BUCKETS)},
        },
    )
    rated = select_for(
        f.resolver_person_id,
        f.rated_day,
        and_(f.rating.is_not(None), f.rated_day.is_not(None)),
        {
            "rated": literal(1),
            "rating_sum": func.coalesce(f.rating, 0),
            "rating_good": _flag(f.rating >= 4),
        },
    )
    return [created, response, handling, rated]


def rebuild_rollups(db: Session) -> int:
    """Every kpi_daily row from the facts, one INSERT … SELECT per dimension."""
    from watergrid.kpi.definitions import DIMS

    db.execute(delete(kpi_daily))
    for dim in DIMS:
        u = union_all(*_cohort_selects(dim)).subquery()
        sums = [sql_cast(func.sum(u.c[c]), BigInteger).label(c) for c in COUNTERS]
        q = select(literal(dim).label("dim"), u.c.key, u.c.day, *sums).group_by(u.c.key, u.c.day)
        db.execute(kpi_daily.insert().from_select(["dim", "key", "day", *COUNTERS], q))
    return cast(int, db.scalar(select(func.count()).select_from(kpi_daily)) or 0)


def rebuild(db: Session, *, now: datetime) -> dict[str, int]:
    """`watergrid kpi recompute`: facts and rollups from history; the watermark moves to the
    newest event, so the catch-up job carries on from there."""
    st = _state(db, lock=True)
    top = int(db.scalar(select(func.max(OrderEvent.id))) or 0)
    facts = rebuild_facts(db)
    rows = rebuild_rollups(db)
    st.event_watermark = top
    st.rebuilt_at = st.caught_up_at = now
    db.flush()
    log.info("kpi rebuilt", extra={"fields": {"facts": facts, "rollup_rows": rows}})
    return {"facts": facts, "rollup_rows": rows, "watermark": top}


def rollup_snapshot(db: Session) -> dict[tuple[str, str, Any], tuple[int, ...]]:
    """Every non-zero kpi_daily row (for comparing an incremental state with a rebuild)."""
    out = {}
    for r in db.execute(select(kpi_daily)):
        values = tuple(int(getattr(r, c)) for c in COUNTERS)
        if any(values):
            out[(r.dim, r.key, r.day)] = values
    return out
