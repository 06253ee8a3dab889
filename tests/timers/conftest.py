"""Database fixtures for the timers tests: every database test runs on SQLite (a temp file)
and, when WATERGRID_TEST_DATABASE_URL is set, on PostgreSQL in a throwaway schema.

The timers need only their own tables, so these fixtures create just those on a fresh
engine instead of migrating the whole demo database. Under CI=true PostgreSQL is required
(the local server when the variable is unset, as in tests/conftest.py) and an unreachable
one fails the run: the multi-worker guarantees are the point of these tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import Engine, Table, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import Base, begin_write, make_engine
from watergrid.timers.models import CalendarDay, CalendarYear, DueItem

PG_ENV = "WATERGRID_TEST_DATABASE_URL"
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get(PG_ENV, "") or (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test" if IN_CI else ""
)
TABLES = [cast(Table, m.__table__) for m in (CalendarDay, CalendarYear, DueItem)]


def _pg_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(reason)


def _create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine, tables=TABLES)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"] if PG_URL else ["sqlite"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A URL for a fresh database holding the timers tables. Child processes connect to it
    with make_engine(url) like any worker would."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('timers') / 'timers.db'}"
        engine = make_engine(url)
        _create_tables(engine)
        engine.dispose()
        yield url
        return

    base = PG_URL
    admin = make_engine(base, pool_size=1)
    schema = f"wg_timers_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        admin.dispose()
        _pg_unavailable(f"PostgreSQL at {make_url(base).render_as_string()} unreachable: {exc}")
        return
    # A private schema keeps these tests clear of other domains' tables in the same database.
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    engine = make_engine(url, pool_size=2)
    _create_tables(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, pool_size=5)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on an empty due_item table (the calendar tables are left as they are)."""
    with engine.begin() as conn:
        conn.execute(delete(DueItem))
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def db(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A write session whose work is rolled back at the end, unless the test commits."""
    session = factory()
    begin_write(session)
    try:
        yield session
    finally:
        session.rollback()
        session.close()
