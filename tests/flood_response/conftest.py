"""Fixtures of the flood response tests (warnings, CAP, plans, call-and-response, dispatch,
cards, board), on SQLite and — when WATERGRID_TEST_DATABASE_URL is set, always under CI=true
— PostgreSQL, through the shared `backend` parameter.

The database of a backend is made once per session: migrated with Alembic, then the registry
demo, the flood demo's assets (no readings, so no alarm is open at the start) and the flood
response demo are loaded at a fixed time T0. Each test
works in a transaction rolled back at its end; timer sweeps get sessions on the same
connection whose commits are savepoints, so run_due sees and keeps the test's data, and a
FrozenClock says what time it is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session

import watergrid.models  # noqa: F401  (every domain's tables)
from watergrid.flood import wiring  # noqa: F401  (alarm hooks, timer handlers)
from watergrid.timers.clock import FrozenClock

# 10:00 in Shenzhen on 1 June 2025: the flood season.
T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def fr_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import create_database

    from watergrid import db as dbmod
    from watergrid.demo.load import load_demo
    from watergrid.flood.demo import load_flood_demo
    from watergrid.flood.response_demo import load_flood_response_demo
    from watergrid.migrate import upgrade

    url, drop = create_database(backend, tmp_path_factory.mktemp(f"fr-{backend}"))
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
    with dbmod.session_scope() as s:
        load_flood_demo(s, now=T0, with_readings=False)
    with dbmod.session_scope() as s:
        load_flood_response_demo(s, now=T0, catch_up=False)
    yield url
    dbmod.get_engine().dispose()
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def fr_engine(fr_url: str) -> Engine:
    from watergrid import db as dbmod

    dbmod.configure(fr_url)
    return dbmod.get_engine()


@pytest.fixture
def db(fr_engine: Engine) -> Iterator[Session]:
    from watergrid import db as dbmod

    dbmod.configure(fr_engine.url.render_as_string(hide_password=False))
    with rolled_back_session(fr_engine) as session:
        yield session


@pytest.fixture
def factory(db: Session) -> Callable[[], Session]:
    """Sessions for run_due() on the test's connection: their commits are savepoints."""
    conn = db.get_bind()
    return lambda: Session(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def sweep(factory: Callable[[], Session], clock: FrozenClock, db: Session) -> Callable[[], int]:
    """Run every due item at the clock's time, as a sweeper would; returns how many ran."""
    from watergrid.timers.service import run_due

    def run() -> int:
        total = 0
        while True:
            n = run_due(factory, worker_id="test-sweeper", now=clock.now(), limit=500)
            total += n
            if n < 500:
                break
        db.expire_all()
        return total

    return run


@pytest.fixture
def client(db: Session, fr_url: str) -> Iterator[TestClient]:
    """The app with every request on the test's session; nudges do nothing (tests drive
    the timers with `sweep`)."""
    from watergrid.app import create_app
    from watergrid.deps import get_db
    from watergrid.flood.flood_api2 import get_nudger

    app = create_app(fr_url, embedded_worker=False)
    app.dependency_overrides[get_db] = lambda: db
    app.dependency_overrides[get_nudger] = lambda: lambda: None
    with TestClient(app) as c:
        yield c


def login(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": "demo1234"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def actor() -> Any:
    from watergrid.flood.warnings import Actor

    return Actor(user_id=None, name="测试值班员")


def outbox_for_calls(db: Session, call_ids: list[int] | None = None) -> list[Any]:
    from watergrid.notify.models import OutboxMessage

    q = select(OutboxMessage).where(OutboxMessage.subject_type == "flood_call")
    if call_ids is not None:
        q = q.where(OutboxMessage.subject_id.in_([str(i) for i in call_ids]))
    return list(db.scalars(q.order_by(OutboxMessage.id)))


# Chromium through Playwright, as the web tests drive it (skipped without the browser).
from tests.web.conftest import artifacts, browser_context, page  # noqa: E402,F401
