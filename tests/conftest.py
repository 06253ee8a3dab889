"""Shared fixtures. Every database test runs once per backend: SQLite always, PostgreSQL when
WATERGRID_TEST_DATABASE_URL is set. Under CI=true PostgreSQL is required and an unreachable
server fails the run instead of skipping it.

Each backend gets a fresh database for the session, migrated with Alembic (so the migrations
are exercised by every run) and loaded with the Guangming demo; each test then works inside a
transaction that is rolled back, so tests never see each other's writes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

# Tests drive the sweeper and delivery themselves, with a controllable clock; an app started
# by a test (or a live server it spawns) must not run its own background loops.
os.environ["WATERGRID_EMBEDDED_WORKER"] = "false"
# Tests post many public reports from one client address; the intake rate limit has tests of
# its own (tests/security) that switch it on.
os.environ["WATERGRID_INTAKE_RATE_PER_MINUTE"] = "0"

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("WATERGRID_TEST_DATABASE_URL", "")
if IN_CI and not PG_URL:
    PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_reachable(url: str) -> str | None:
    try:
        eng = create_engine(url)
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:  # the reason is shown in the skip or failure message
        return str(exc).splitlines()[0]


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def create_database(backend: str, tmp: Path) -> tuple[str, object]:
    """A fresh, empty database; returns its URL and a callable that drops it."""
    if backend == "sqlite":
        path = tmp / f"wg-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}", lambda: None
    problem = _pg_reachable(PG_URL)
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL required under CI=true but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"wg_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@contextmanager
def rolled_back_session(engine: Engine, *, expire_on_commit: bool = False) -> Iterator[Session]:
    """A session in a transaction that is rolled back at the end, whatever it committed
    (its commits are savepoints): the tests' data never outlives the test."""
    conn = engine.connect()
    trans = conn.begin()
    session = Session(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=expire_on_commit
    )
    try:
        yield session
    finally:
        session.close()
        trans.rollback()
        conn.close()


@pytest.fixture(scope="session", params=backends())
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def demo_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database holding the Guangming demo, shared by the session's tests."""
    from watergrid import db as dbmod
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade

    url, drop = create_database(backend, tmp_path_factory.mktemp(backend))
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
    yield url
    dbmod.get_engine().dispose()
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def demo_engine(demo_url: str) -> Engine:
    from watergrid import db as dbmod

    dbmod.configure(demo_url)
    return dbmod.get_engine()


@pytest.fixture
def db(demo_engine: Engine) -> Iterator[Session]:
    """A session over the demo database whose writes are rolled back after the test."""
    with rolled_back_session(demo_engine) as session:
        yield session


@pytest.fixture
def client(db: Session, demo_url: str) -> Iterator[TestClient]:
    """The app with every request using the test's rolled-back session."""
    from watergrid.app import create_app
    from watergrid.deps import get_db

    app = create_app(demo_url)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        yield c


def login_token(client: TestClient, username: str, password: str = "demo1234") -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def api_routes(app: object) -> list[tuple[str, set[str], object]]:
    """(path, methods, dependant) of every API route, including those of included routers.
    FastAPI 0.165 keeps included routers as one entry each; older versions flatten them."""
    from fastapi.routing import APIRoute

    out: list[tuple[str, set[str], object]] = []
    for r in app.routes:  # type: ignore[attr-defined]
        if isinstance(r, APIRoute):
            out.append((r.path, set(r.methods), r.dependant))
        elif hasattr(r, "effective_route_contexts"):
            for ctx in r.effective_route_contexts():
                if isinstance(ctx.original_route, APIRoute):
                    out.append((ctx.path, set(ctx.methods or ()), ctx.dependant))
    return out
