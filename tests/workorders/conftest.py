"""Fixtures of the work-order tests, on SQLite and (when configured) PostgreSQL through the
shared `backend` parameter.

The database is the demo one, migrated with Alembic; tables the migration chain does not
(yet) hold are created from the models, so these tests run while migrations catch up. The
categories and the working calendar are seeded on top (both idempotent). Each test works in
a transaction rolled back at its end, as in tests/conftest.py; timer sweeps (run_due) get
sessions on the same connection through savepoints so they see and keep the test's data."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session

import watergrid.models  # noqa: F401  (every domain's tables)
from watergrid.notify import models as _notify_models  # noqa: F401
from watergrid.timers import models as _timer_models  # noqa: F401
from watergrid.workorders import jobs as _jobs  # noqa: F401  (registers timer handlers)


@pytest.fixture(scope="session")
def wo_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import create_database

    from watergrid import db as dbmod
    from watergrid.db import Base, make_engine
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories

    url, drop = create_database(backend, tmp_path_factory.mktemp(f"wo-{backend}"))
    upgrade(url)
    engine = make_engine(url)
    Base.metadata.create_all(engine)  # only what the migrations did not create
    engine.dispose()
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
        seed_categories(s)
        seed_calendar(s, years=range(2024, 2027))
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def wo_engine(wo_url: str) -> Iterator[Engine]:
    from watergrid.db import make_engine

    # Our own engine: other test folders may re-point the process-wide one meanwhile.
    engine = make_engine(wo_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(wo_engine: Engine) -> Iterator[Session]:
    with rolled_back_session(wo_engine) as session:
        yield session


@pytest.fixture
def factory(db: Session) -> Callable[[], Session]:
    """Sessions for run_due() on the test's connection: their commits are savepoints."""
    conn = db.get_bind()
    return lambda: Session(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def client(db: Session, wo_url: str) -> Iterator[TestClient]:
    from watergrid.app import create_app
    from watergrid.deps import get_db

    app = create_app(wo_url)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        yield c
