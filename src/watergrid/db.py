"""Engine, sessions and the declarative base: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import ExecStatus
from sqlalchemy import JSON, DateTime, Engine, MetaData, Table, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Always timezone-aware UTC in Python. SQLite keeps no zone, so a naive value read back
    is UTC by construction; a naive value written is refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON that compares and serialises the same on both engines.
JSONType = JSON().with_variant(JSON(none_as_null=True), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- PostgreSQL: rows handed over as JSON ------------------------------------------------------
#
# The busiest write paths (a work order's create, its notifications) write several rows of
# several tables at once. As one JSON parameter per table, PostgreSQL turning it into the
# table's row type, that is one statement of fixed text whatever the number of rows or
# columns: psycopg caches and prepares it (a parameter per value would pass psycopg's
# limit for that and change the text with every row count), and the rows of several
# tables can go in one round trip as data-modifying CTEs.


def json_param(value: Any) -> str:
    """JSON text as the engine writes it, with datetimes as ISO 8601 with their offset."""
    return json.dumps(value, ensure_ascii=False, default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def pg_insert_from_json(table: Table, names: Sequence[str], param: str, *, many: bool) -> str:
    """INSERT INTO `table` (`names`) of the row in JSON parameter `param` (an object), or of
    its rows (`many`: an array of objects), for exec_driver_sql with psycopg. Columns left
    out take their server defaults, not the models' Python ones: name every column."""
    cols = ", ".join(table.c[n].name for n in names)
    fn = "json_populate_recordset" if many else "json_populate_record"
    return (
        f"INSERT INTO {table.name} ({cols}) "
        f"SELECT {cols} FROM {fn}(NULL::{table.name}, %({param})s::json)"
    )


# A statement for psycopg, SQL with %(name)s placeholders, and its parameters.
Statement = tuple[str, Mapping[str, Any]]


def pg_together(db: Session, statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
    """Run `statements` in order on the session's PostgreSQL connection, in its transaction,
    in one round trip (psycopg's pipeline mode) rather than one each; each one's rows (none
    for a statement without). A round trip is a wait for the server each time, and on a busy
    host a wait for a core too: a batch of reports wrote in nine of them (docs/performance.md).
    An error is raised as Connection.execute raises it (SQLAlchemy's exception around
    psycopg's), and the transaction is then failed, as after any error; a connection lost
    on the way is invalidated, so the pool replaces it."""
    conn = db.connection()
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection), "pg_together is for PostgreSQL (psycopg)"
    cursors: list[psycopg.Cursor[Any]] = []
    try:
        with raw.pipeline():
            for sql, params in statements:
                cur = raw.cursor()
                cur.execute(sql, params)
                cursors.append(cur)
        # (Asked of the result's status: cursor.description would build every column's
        # description only to be compared with None.)
        return [
            cur.fetchall() if cur.pgresult and cur.pgresult.status == ExecStatus.TUPLES_OK else []
            for cur in cursors
        ]
    except psycopg.Error as exc:
        lost = raw.broken
        if lost:
            # As SQLAlchemy does when a connection is lost under its own execute: the pool
            # throws it away instead of handing it out again.
            conn.invalidate(exc)
        raise DBAPIError.instance(
            "; ".join(sql for sql, _ in statements),
            None,
            exc,
            psycopg.Error,
            connection_invalidated=lost,
        ) from exc
    finally:
        for cur in cursors:
            cur.close()


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions start (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the lock up front so it never fails half-way with SQLITE_BUSY on
        # upgrade from a read lock; readers stay deferred and never block anyone under WAL.
        mode = "IMMEDIATE" if conn.get_execution_options().get("wg_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def max_connections(pool_size: int) -> int:
    """Connections one process's engine hands out at most: the pool and as many again in
    overflow. The app admits no more requests at once than the pool keeps (app.py), so a
    request never waits for a connection in a worker thread that others need to give theirs
    back, and the overflow stays free for background sessions (the embedded worker)."""
    return 2 * pool_size


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pooling: dict[str, Any] = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            overflow = max_connections(pool_size) - pool_size
            pooling = {"pool_size": pool_size, "max_overflow": overflow}
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            json_serializer=lambda o: json.dumps(o, ensure_ascii=False),
            **pooling,
        )
        _sqlite_pragmas(engine, busy_timeout_ms)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_connections(pool_size) - pool_size,
        json_serializer=lambda o: json.dumps(o, ensure_ascii=False),
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection that has sat unused this long is pinged before it is handed out.
PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """What pool_pre_ping does, but only for connections that have been idle a while: a ping
    on every checkout is a round trip on every request, and a connection handed back a
    moment ago is as good as a ping says. One the server dropped while it idled (a restart,
    an idle timeout) is found here and replaced; one that dies mid-burst fails its request
    once, and the pool then replaces every connection as old as it."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["wg_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("wg_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception:
            alive = False
        if not alive:
            # The pool discards this connection and checks out another (a fresh one).
            raise DisconnectionError("connection found dead after idling")


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_write_factory: sessionmaker[Session] | None = None
_configured_url: str | None = None


def configure(url: str | None = None) -> Engine:
    """(Re)bind the process-wide engine; tests and the CLI call it with their own URL."""
    from watergrid.settings import get_settings

    global _engine, _factory, _write_factory, _configured_url
    s = get_settings()
    url = url or s.database_url
    if _engine is not None:
        if _configured_url == url:
            return _engine
        _engine.dispose()
    _configured_url = url
    _engine = make_engine(url, busy_timeout_ms=s.sqlite_busy_timeout_ms, pool_size=s.db_pool_size)
    _factory = sessionmaker(bind=_engine, expire_on_commit=False)
    # Sessions of writers: every transaction they begin is a writer's (BEGIN IMMEDIATE on
    # SQLite, see _on_begin), without touching the database before their first statement.
    _write_factory = sessionmaker(
        bind=_engine.execution_options(wg_write=True), expire_on_commit=False
    )
    return _engine


def get_engine() -> Engine:
    return _engine if _engine is not None else configure()


def session_factory() -> sessionmaker[Session]:
    if _factory is None:
        configure()
    assert _factory is not None
    return _factory


def new_session(*, write: bool) -> Session:
    """A session that touches the database only at its first statement; a writer's
    transactions begin as writers. Creating one is safe on the event loop."""
    if _write_factory is None:
        configure()
    assert _factory is not None and _write_factory is not None
    return (_write_factory if write else _factory)()


def begin_write(session: Session) -> None:
    """Start the session's transaction as a writer (BEGIN IMMEDIATE on SQLite)."""
    session.connection(execution_options={"wg_write": True})


@contextmanager
def session_scope(*, write: bool = True) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on error. Service functions never
    commit; whoever opens the scope does."""
    session = session_factory()()
    if write:
        begin_write(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_overload(exc: BaseException) -> bool:
    """Errors that mean "too much at once", not "broken": no pooled connection free in time,
    SQLite's writer lock not had within the busy timeout, and PostgreSQL refusing connections
    or cancelling a statement that waited too long for a lock. Nothing was written (the
    transaction is rolled back), so the client may simply try again."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return "database is locked" in text or "database table is locked" in text
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg raises connection failures (the server shutting down or restarting, a
        # connection dropped) without a SQLSTATE: the database is away for a moment, and a
        # client retrying with its Idempotency-Key gets its answer once (faults/).
        return type(orig).__module__.startswith("psycopg")
    # 53300 too_many_connections, 57P03 cannot_connect_now, 55P03 lock_not_available,
    # 57P01/57P02 the server terminating connections (shutdown, crash), 08xxx connection
    # exceptions.
    return sqlstate in {"53300", "57P03", "55P03", "57P01", "57P02"} or sqlstate.startswith("08")
