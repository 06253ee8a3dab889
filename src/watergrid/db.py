"""Engine, sessions and the declarative base: one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
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


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 10) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            json_serializer=lambda o: json.dumps(o, ensure_ascii=False),
        )
        _sqlite_pragmas(engine, busy_timeout_ms)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_serializer=lambda o: json.dumps(o, ensure_ascii=False),
    )


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_configured_url: str | None = None


def configure(url: str | None = None) -> Engine:
    """(Re)bind the process-wide engine; tests and the CLI call it with their own URL."""
    from watergrid.settings import get_settings

    global _engine, _factory, _configured_url
    s = get_settings()
    url = url or s.database_url
    if _engine is not None:
        if _configured_url == url:
            return _engine
        _engine.dispose()
    _configured_url = url
    _engine = make_engine(
        url, busy_timeout_ms=s.sqlite_busy_timeout_ms, pool_size=s.db_pool_size
    )
    _factory = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def get_engine() -> Engine:
    return _engine if _engine is not None else configure()


def session_factory() -> sessionmaker[Session]:
    if _factory is None:
        configure()
    assert _factory is not None
    return _factory


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
