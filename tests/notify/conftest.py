"""Fixtures of the notification tests: a fresh database per backend (tables from the
models), emptied after every test because delivery runs in its own transactions, and the
local sinks.

PostgreSQL comes from WATERGRID_TEST_DATABASE_URL, else the local default below; when it is
unreachable its tests are skipped, except under CI=true, where that fails the run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.sink import HttpSink, SmtpSink

from watergrid.db import Base, make_engine

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = (
    os.environ.get("WATERGRID_TEST_DATABASE_URL")
    or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_problem(url: str) -> str | None:
    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:  # shown in the skip or failure message
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def notify_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def notify_url(notify_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import watergrid.models  # noqa: F401  (every table, ours included)

    if notify_backend == "sqlite":
        path = Path(tmp_path_factory.mktemp("notify")) / "notify.db"
        url = f"sqlite:///{path}"
        drop = None
    else:
        problem = _pg_problem(PG_URL)
        if problem:
            if IN_CI:
                pytest.fail(f"PostgreSQL required under CI=true but unreachable: {problem}")
            pytest.skip(f"PostgreSQL unreachable: {problem}")
        name = f"wg_notify_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield url
    if drop is not None:
        drop()


@pytest.fixture(scope="session")
def _session_engine(notify_url: str) -> Iterator[Engine]:
    engine = make_engine(notify_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_session_engine: Engine) -> Iterator[Engine]:
    yield _session_engine
    # Delivery commits in its own transactions, so tests clean up by emptying the tables.
    # Only those that exist: importing the app registers other domains' tables later.
    existing = set(inspect(_session_engine).get_table_names())
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name in existing]
    # (DELETE, not TRUNCATE: on a few small tables it is several times faster.)
    with _session_engine.begin() as c:
        for t in tables:
            c.execute(t.delete())


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture(scope="session")
def _http_sink() -> Iterator[HttpSink]:
    sink = HttpSink()
    yield sink
    sink.close()


@pytest.fixture
def sink(_http_sink: HttpSink) -> HttpSink:
    _http_sink.reset()
    return _http_sink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    s = SmtpSink()
    yield s
    s.close()
