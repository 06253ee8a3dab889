"""Durable due items: schedule, cancel, claim, complete, fail — and running their handlers.

A due item is a row; the timer is the row. Workers (any number, any process) claim rows
whose time has come with a conditional UPDATE that succeeds for exactly one of them, run the
handler registered for the row's kind, and mark the row done in the same transaction as the
handler's own writes. A worker that dies holding a claim loses nothing: after the lease the
row is claimed again. docs/deadlines.md explains why this is safe with many workers.

Functions taking a Session never commit; run_due() opens and commits its own short
transactions because it is the unit of work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    CursorResult,
    Executable,
    Table,
    Update,
    delete,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from watergrid.db import Statement, begin_write, json_param, pg_insert_from_json, utcnow
from watergrid.timers.models import DueItem
from watergrid.timers.spans import require_aware

log = logging.getLogger(__name__)

# How long a claim protects an item. A worker that has not finished by then is presumed
# dead and the item is claimed again; handlers are short database writes, so minutes are
# plenty, while a crashed worker's items wait no longer than this.
LEASE = timedelta(minutes=5)
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)
ERROR_MAX_CHARS = 4000
OPEN_STATES = ("pending", "claimed")
_IDENTITY = ("kind", "subject_type", "subject_id", "key")

Handler = Callable[[Session, DueItem, datetime], None]
H = TypeVar("H", bound=Handler)


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help (the subject is gone, the data is
    invalid). The item is cancelled with the error kept in last_error instead of retried."""


class Registry:
    """Kind -> handler. Handlers run as handler(db, item, now) inside the transaction that
    marks the item done; they must not commit, and should only write rows (outbox messages,
    history, next due items) — sending happens elsewhere."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def register(self, kind: str) -> Callable[[H], H]:
        if not kind or len(kind) > 64:
            raise ValueError("kind must be 1-64 characters")

        def decorator(fn: H) -> H:
            with self._lock:
                current = self._handlers.get(kind)
                # Re-importing a module registers the same function again; two different
                # functions for one kind would make which one runs an accident.
                if current is not None and _qualname(current) != _qualname(fn):
                    raise ValueError(
                        f"a handler for {kind!r} is already registered: {_qualname(current)}"
                    )
                self._handlers[kind] = fn
            return fn

        return decorator

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# The process-wide registry; domains register their handlers when their jobs module loads.
REGISTRY = Registry()


def register(kind: str) -> Callable[[H], H]:
    """Decorator: `@register("order.response_reminder")` on `def handler(db, item, now)`."""
    return REGISTRY.register(kind)


# -- scheduling -------------------------------------------------------------------------


def schedule(
    db: Session,
    *,
    kind: str,
    subject_type: str,
    subject_id: str,
    key: str = "",
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> DueItem:
    """Make sure (kind, subject, key) is due at `due_at`. Idempotent:

    - no such item: a pending one is created;
    - asked again for the same due time: nothing changes, whatever the state (so a retried
      request or a recomputation never makes a reminder fire twice);
    - pending with another due time: the due time moves;
    - claimed or done, with another due time: armed again (pending) for the new time — a
      worker still holding the old claim finds it gone and skips it;
    - cancelled: armed again.

    `payload` replaces the stored one when given. Does not commit."""
    subject_id = str(subject_id)
    now = now or utcnow()
    values = _fresh_rows([Fresh(kind, subject_type, subject_id, key, due_at, payload)], now)[0]
    created = _insert_if_absent(db, [values])
    stmt = (
        select(DueItem)
        .where(
            DueItem.kind == kind,
            DueItem.subject_type == subject_type,
            DueItem.subject_id == subject_id,
            DueItem.key == key,
        )
        .execution_options(populate_existing=True)
    )
    if _dialect(db) == "postgresql":
        # Hold the row while deciding, so a worker finishing it cannot slip in between.
        stmt = stmt.with_for_update()
    item = db.scalars(stmt).one()
    if created:
        return item
    same_time = item.requested_due_at == due_at
    if item.state == "pending":
        if not same_time:
            # A pending item may sit at a retry time; only a new request moves it.
            item.due_at = item.requested_due_at = due_at
        if payload is not None:
            item.payload = payload
    elif item.state == "cancelled" or not same_time:
        _arm(item, due_at=due_at, payload=payload)
    db.flush()
    return item


@dataclass(frozen=True)
class Fresh:
    """One item for schedule_fresh_many."""

    kind: str
    subject_type: str
    subject_id: str
    key: str
    due_at: datetime
    payload: dict[str, Any] | None = None


def schedule_fresh(
    db: Session,
    *,
    kind: str,
    subject_type: str,
    subject_id: str,
    key: str = "",
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """schedule() for a subject made in this very transaction (a new work order), which
    cannot have items yet: one INSERT and nothing read back, where schedule() also reads
    the row to return it. Should the item exist after all, schedule() takes over, so the
    outcome is the same either way. Does not commit."""
    schedule_fresh_many(
        db, [Fresh(kind, subject_type, str(subject_id), key, due_at, payload)], now=now
    )


def schedule_fresh_many(
    db: Session, items: Sequence[Fresh], *, now: datetime | None = None
) -> None:
    """schedule_fresh() for many subjects at once (a batch of new work orders): one
    multi-row INSERT. Items that turn out to exist already go through schedule(), which
    leaves one asked for at the same time as it is."""
    if not items:
        return
    now = now or utcnow()
    rows = _fresh_rows(items, now)
    if _insert_if_absent(db, rows):
        return
    for it in items:
        schedule(
            db,
            kind=it.kind,
            subject_type=it.subject_type,
            subject_id=str(it.subject_id),
            key=it.key,
            due_at=it.due_at,
            payload=it.payload,
            now=now,
        )


def fresh_many_pg(items: Sequence[Fresh], *, now: datetime) -> Statement | None:
    """schedule_fresh_many()'s INSERT as a statement to send with others (db.pg_together,
    PostgreSQL), for subjects made in the same transaction. They cannot have items yet, so
    nothing is read back and nothing is skipped: should an item exist after all, the
    statement fails with the unique constraint rather than leave it as it is."""
    if not items:
        return None
    rows = _fresh_rows(items, now)
    sql = pg_insert_from_json(cast(Table, DueItem.__table__), tuple(rows[0]), "rows", many=True)
    return sql, {"rows": json_param(rows)}


def _fresh_rows(items: Sequence[Fresh], now: datetime) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for it in items:
        require_aware(it.due_at, "due_at")
        if it.payload is not None and not isinstance(it.payload, dict):
            raise TypeError("payload must be a dict")
        rows.append(
            {
                "kind": it.kind,
                "subject_type": it.subject_type,
                "subject_id": str(it.subject_id),
                "key": it.key,
                "due_at": it.due_at,
                "requested_due_at": it.due_at,
                "state": "pending",
                "attempts": 0,
                "payload": it.payload or {},
                "created_at": now,
            }
        )
    return rows


def _arm(item: DueItem, *, due_at: datetime, payload: dict[str, Any] | None) -> None:
    item.state = "pending"
    item.due_at = item.requested_due_at = due_at
    item.attempts = 0
    item.claimed_by = item.claimed_at = item.done_at = None
    item.last_error = None
    if payload is not None:
        item.payload = payload


_SQLITE_INSERT_IF_ABSENT = (
    sqlite_insert(cast(Table, DueItem.__table__))
    .on_conflict_do_nothing(index_elements=list(_IDENTITY))
    .returning(cast(Table, DueItem.__table__).c.id)
)
_PG_INSERT_IF_ABSENT: dict[tuple[str, ...], str] = {}


def _insert_if_absent(db: Session, rows: list[dict[str, Any]]) -> bool:
    """INSERT the rows whose identity is not there yet, in one statement and without
    raising when two writers race (ON CONFLICT DO NOTHING); True when every row was new."""
    table = cast(Table, DueItem.__table__)
    dialect = _dialect(db)
    if dialect == "postgresql":
        # The rows as one JSON parameter: the same statement text whatever their number,
        # so psycopg prepares it once (a VALUES list would be a new statement per count).
        names = tuple(rows[0])
        sql = _PG_INSERT_IF_ABSENT.get(names)
        if sql is None:
            sql = _PG_INSERT_IF_ABSENT[names] = (
                f"{pg_insert_from_json(table, names, 'rows', many=True)} "
                f"ON CONFLICT ({', '.join(_IDENTITY)}) DO NOTHING RETURNING id"
            )
        made = db.connection().exec_driver_sql(sql, {"rows": json_param(rows)}).all()
        return len(made) == len(rows)
    if dialect == "sqlite":
        # With RETURNING, the rows of an executemany come back as one result: those
        # skipped return nothing, so the count says whether all were new.
        made = db.execute(
            _SQLITE_INSERT_IF_ABSENT, rows, execution_options={"synchronize_session": False}
        ).all()
        return len(made) == len(rows)
    new = True
    for row in rows:
        try:
            with db.begin_nested():
                db.add(DueItem(**row))
        except IntegrityError:
            new = False
    return new


def cancel(
    db: Session,
    *,
    kind: str | None = None,
    subject_type: str,
    subject_id: str,
    key: str | None = None,
    now: datetime | None = None,
) -> int:
    """Cancel the subject's open items (all kinds, or one kind, or one key). A worker that
    has already claimed one finds it gone and does not run it. Returns how many were
    cancelled. Does not commit."""
    stmt = (
        update(DueItem)
        .where(
            DueItem.subject_type == subject_type,
            DueItem.subject_id == str(subject_id),
            DueItem.state.in_(OPEN_STATES),
        )
        .values(state="cancelled", done_at=now or utcnow())
    )
    if kind is not None:
        stmt = stmt.where(DueItem.kind == kind)
    if key is not None:
        stmt = stmt.where(DueItem.key == key)
    n = _rowcount(db, stmt)
    _expire(db)
    return n


def get(
    db: Session, *, kind: str, subject_type: str, subject_id: str, key: str = ""
) -> DueItem | None:
    return db.scalar(
        select(DueItem).where(
            DueItem.kind == kind,
            DueItem.subject_type == subject_type,
            DueItem.subject_id == str(subject_id),
            DueItem.key == key,
        )
    )


def list_for_subject(db: Session, *, subject_type: str, subject_id: str) -> list[DueItem]:
    return list(
        db.scalars(
            select(DueItem)
            .where(DueItem.subject_type == subject_type, DueItem.subject_id == str(subject_id))
            .order_by(DueItem.due_at, DueItem.id)
        )
    )


# -- claiming and finishing -------------------------------------------------------------


def claim_due(
    db: Session,
    *,
    worker_id: str,
    now: datetime,
    limit: int = 100,
    lease: timedelta = LEASE,
    skip_locked: bool | None = None,
) -> list[DueItem]:
    """Claim up to `limit` items for `worker_id`: first claims older than `lease` (their
    worker is presumed dead), then pending items due by `now`, oldest first.

    Each candidate is taken with `UPDATE … WHERE id = :id AND state = :expected` and kept
    only if exactly one row changed, so two workers never both hold one item, on SQLite and
    PostgreSQL alike. On PostgreSQL candidates are also read FOR UPDATE SKIP LOCKED
    (`skip_locked`, default on there), which only spares workers from queueing behind each
    other. Does not commit; commit soon, the claim is what other workers see."""
    require_aware(now, "now")
    if limit <= 0:
        return []
    lock = _dialect(db) == "postgresql" if skip_locked is None else skip_locked
    cutoff = now - lease
    taken: list[int] = []

    stale_q = (
        select(DueItem.id, DueItem.claimed_by, DueItem.claimed_at)
        .where(DueItem.state == "claimed", DueItem.claimed_at <= cutoff)
        .order_by(DueItem.claimed_at, DueItem.id)
        .limit(limit)
    )
    if lock:
        stale_q = stale_q.with_for_update(skip_locked=True)
    # Updating in id order keeps two workers that lock the same rows from deadlocking.
    for row in sorted(db.execute(stale_q).all(), key=lambda r: r.id):
        since = row.claimed_at.isoformat() if row.claimed_at else "?"
        claim = (
            update(DueItem)
            .where(DueItem.id == row.id, DueItem.state == "claimed", DueItem.claimed_at <= cutoff)
            .values(
                claimed_by=worker_id,
                claimed_at=now,
                attempts=DueItem.attempts + 1,
                last_error=f"lease expired: claimed by {row.claimed_by} at {since}",
            )
        )
        if _rowcount(db, claim) == 1:
            taken.append(row.id)

    room = limit - len(taken)
    if room > 0:
        pending_q = (
            select(DueItem.id)
            .where(DueItem.state == "pending", DueItem.due_at <= now)
            .order_by(DueItem.due_at, DueItem.id)
            .limit(room)
        )
        if lock:
            pending_q = pending_q.with_for_update(skip_locked=True)
        for item_id in sorted(db.scalars(pending_q).all()):
            claim = (
                update(DueItem)
                .where(DueItem.id == item_id, DueItem.state == "pending", DueItem.due_at <= now)
                .values(state="claimed", claimed_by=worker_id, claimed_at=now)
            )
            if _rowcount(db, claim) == 1:
                taken.append(item_id)

    if not taken:
        return []
    return list(
        db.scalars(
            select(DueItem)
            .where(DueItem.id.in_(taken))
            .order_by(DueItem.due_at, DueItem.id)
            .execution_options(populate_existing=True)
        )
    )


def complete(db: Session, *, item_id: int, worker_id: str, now: datetime | None = None) -> bool:
    """Mark a claimed item done. False when the claim is no longer this worker's (lease
    expired and someone else took it, or it was cancelled or rescheduled) — then whatever the
    caller did for it must be rolled back. Does not commit."""
    stmt = _mine(item_id, worker_id).values(state="done", done_at=now or utcnow())
    return _changed(db, stmt, item_id)


def fail(
    db: Session,
    *,
    item_id: int,
    worker_id: str,
    error: str,
    retry_in: timedelta,
    now: datetime | None = None,
) -> bool:
    """Give a claimed item back for another try `retry_in` from now, counting the failure.
    Pushing the due time forward, rather than retrying at once, keeps one broken item from
    spinning a worker. Does not commit."""
    now = now or utcnow()
    stmt = _mine(item_id, worker_id).values(
        state="pending",
        due_at=now + max(retry_in, timedelta(0)),
        attempts=DueItem.attempts + 1,
        last_error=error[:ERROR_MAX_CHARS],
        claimed_by=None,
        claimed_at=None,
    )
    return _changed(db, stmt, item_id)


def give_up(
    db: Session, *, item_id: int, worker_id: str, error: str, now: datetime | None = None
) -> bool:
    """Cancel a claimed item that cannot succeed, keeping the error. Does not commit."""
    stmt = _mine(item_id, worker_id).values(
        state="cancelled",
        done_at=now or utcnow(),
        attempts=DueItem.attempts + 1,
        last_error=error[:ERROR_MAX_CHARS],
    )
    return _changed(db, stmt, item_id)


def release(db: Session, *, item_ids: Iterable[int], worker_id: str) -> int:
    """Hand claimed items back untouched (a worker stopping before it got to them), so they
    need not wait out the lease. Does not commit."""
    ids = list(item_ids)
    if not ids:
        return 0
    stmt = (
        update(DueItem)
        .where(DueItem.id.in_(ids), DueItem.state == "claimed", DueItem.claimed_by == worker_id)
        .values(state="pending", claimed_by=None, claimed_at=None)
    )
    n = _rowcount(db, stmt)
    _expire(db, set(ids))
    return n


def retry_delay(attempts: int) -> timedelta:
    """Back-off after the (attempts + 1)th failure: 30 s, 1 min, 2 min … at most 1 h."""
    delay: timedelta = RETRY_BASE * (2 ** min(max(attempts, 0), 20))
    return min(delay, RETRY_MAX)


def _mine(item_id: int, worker_id: str) -> Update:
    """An UPDATE that matches only while the item is claimed by this worker."""
    return (
        update(DueItem)
        .where(DueItem.id == item_id, DueItem.state == "claimed", DueItem.claimed_by == worker_id)
        .execution_options(synchronize_session=False)
    )


# -- running ----------------------------------------------------------------------------


def run_due(
    session_factory: Callable[[], Session],
    *,
    worker_id: str,
    now: datetime,
    limit: int = 100,
    lease: timedelta = LEASE,
    registry: Registry | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """One sweep: claim up to `limit` due items in a short transaction, then run each in a
    transaction of its own that marks it done and runs its handler; commit both or neither.
    A handler that raises rolls back its work and the item is retried later (with back-off);
    PermanentFailure cancels it. When `stop_event` is set the current item is finished and
    the rest are released. Returns how many items were run (whatever their outcome)."""
    reg = registry if registry is not None else REGISTRY
    with session_factory() as db:
        begin_write(db)
        batch = [
            (item.id, item.kind, item.attempts)
            for item in claim_due(db, worker_id=worker_id, now=now, limit=limit, lease=lease)
        ]
        db.commit()
    ran = 0
    for pos, (item_id, kind, attempts) in enumerate(batch):
        if stop_event is not None and stop_event.is_set():
            _release_rest(session_factory, [b[0] for b in batch[pos:]], worker_id)
            break
        _run_one(
            session_factory,
            reg,
            item_id=item_id,
            kind=kind,
            attempts=attempts,
            worker_id=worker_id,
            now=now,
        )
        ran += 1
    return ran


def _run_one(
    session_factory: Callable[[], Session],
    reg: Registry,
    *,
    item_id: int,
    kind: str,
    attempts: int,
    worker_id: str,
    now: datetime,
) -> str:
    fields = {"item_id": item_id, "kind": kind, "worker_id": worker_id}
    handler = reg.get(kind)
    try:
        with session_factory() as db:
            begin_write(db)
            # Done first: on PostgreSQL this locks the row for the whole handler, so nobody
            # can take it over meanwhile; and a handler that re-schedules its own item (a
            # repeating reminder) re-arms a done row instead of having its work undone.
            if not complete(db, item_id=item_id, worker_id=worker_id, now=now):
                db.rollback()
                log.warning("claim lost before running; skipped", extra={"fields": fields})
                return "lost"
            item = db.get(DueItem, item_id, populate_existing=True)
            if item is None:  # pragma: no cover - the UPDATE above just found it
                raise LookupError(f"due item {item_id} vanished")
            if handler is None:
                # A newer deployment may know this kind; retry rather than drop it.
                raise LookupError(f"no handler registered for kind {kind!r}")
            handler(db, item, now)
            db.commit()
            return "done"
    except PermanentFailure as exc:
        error, permanent = _describe(exc), True
        log.error("due item failed permanently", extra={"fields": {**fields, "error": error}})
    except Exception as exc:
        error, permanent = _describe(exc), False
        log.exception("due item failed; will retry", extra={"fields": {**fields, "error": error}})
    try:
        with session_factory() as db:
            begin_write(db)
            if permanent:
                give_up(db, item_id=item_id, worker_id=worker_id, error=error, now=now)
            else:
                fail(
                    db,
                    item_id=item_id,
                    worker_id=worker_id,
                    error=error,
                    retry_in=retry_delay(attempts),
                    now=now,
                )
            db.commit()
    except Exception:
        # The claim stays; the lease brings the item back. Nothing is lost.
        log.exception("could not record a failure", extra={"fields": fields})
    return "gave_up" if permanent else "failed"


def _release_rest(session_factory: Callable[[], Session], ids: list[int], worker_id: str) -> None:
    try:
        with session_factory() as db:
            begin_write(db)
            release(db, item_ids=ids, worker_id=worker_id)
            db.commit()
    except Exception:
        log.exception("could not release claims; the lease will", extra={"fields": {"ids": ids}})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


# -- housekeeping -----------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    pending: int
    claimed: int
    done: int
    cancelled: int
    # pending and due: what the sweepers have yet to reach
    overdue: int
    oldest_overdue_at: datetime | None
    # pending after at least one failure
    retrying: int
    # claimed for longer than the lease: a worker probably died
    stale_claims: int


def queue_stats(db: Session, *, now: datetime, lease: timedelta = LEASE) -> QueueStats:
    by_state: dict[str, int] = {
        state: int(n)
        for state, n in db.execute(select(DueItem.state, func.count()).group_by(DueItem.state))
    }
    overdue, oldest = db.execute(
        select(func.count(), func.min(DueItem.due_at)).where(
            DueItem.state == "pending", DueItem.due_at <= now
        )
    ).one()
    retrying = db.scalar(
        select(func.count()).where(DueItem.state == "pending", DueItem.attempts > 0)
    )
    stale = db.scalar(
        select(func.count()).where(DueItem.state == "claimed", DueItem.claimed_at <= now - lease)
    )
    return QueueStats(
        pending=by_state.get("pending", 0),
        claimed=by_state.get("claimed", 0),
        done=by_state.get("done", 0),
        cancelled=by_state.get("cancelled", 0),
        overdue=int(overdue),
        oldest_overdue_at=oldest,
        retrying=int(retrying or 0),
        stale_claims=int(stale or 0),
    )


def purge_finished(db: Session, *, before: datetime) -> int:
    """Delete done and cancelled items that finished before `before`. Does not commit."""
    stmt = delete(DueItem).where(DueItem.state.in_(("done", "cancelled")), DueItem.done_at < before)
    return _rowcount(db, stmt)


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name


def _rowcount(db: Session, stmt: Executable) -> int:
    # Conditional updates are judged by the row count; the session's copies are refreshed
    # separately (_expire, populate_existing) rather than guessed by the ORM.
    result = db.execute(stmt, execution_options={"synchronize_session": False})
    return int(cast(CursorResult[Any], result).rowcount)


def _changed(db: Session, stmt: Executable, item_id: int) -> bool:
    changed = _rowcount(db, stmt) == 1
    _expire(db, {item_id})
    return changed


def _expire(db: Session, ids: set[int] | None = None) -> None:
    """Make the session reload due items an UPDATE statement may have changed."""
    for obj in list(db.identity_map.values()):
        if not isinstance(obj, DueItem):
            continue
        # The identity key, unlike obj.id, never triggers a load of an expired object.
        identity = inspect(obj).identity
        if ids is None or (identity is not None and identity[0] in ids):
            db.expire(obj)
