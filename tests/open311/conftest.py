"""Fixtures of the Open311 tests, on SQLite and (when configured) PostgreSQL through the
shared `backend` parameter.

The database is the demo one, migrated with Alembic; tables the migration chain does not
yet hold are created from the models. The work-order categories and the working calendar are
seeded on top (both idempotent). Each test works in a transaction rolled back at its end."""

from __future__ import annotations

from collections.abc import Iterator

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
def o311_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import create_database

    from watergrid import db as dbmod
    from watergrid.db import Base, make_engine
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories

    url, drop = create_database(backend, tmp_path_factory.mktemp(f"o311-{backend}"))
    upgrade(url)
    engine = make_engine(url)
    Base.metadata.create_all(engine)  # only what the migrations did not create
    engine.dispose()
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
        seed_categories(s)
        seed_calendar(s, years=range(2024, 2028))
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def o311_engine(o311_url: str) -> Iterator[Engine]:
    from watergrid.db import make_engine

    engine = make_engine(o311_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(o311_engine: Engine) -> Iterator[Session]:
    with rolled_back_session(o311_engine) as session:
        yield session


@pytest.fixture
def client(db: Session, o311_url: str) -> Iterator[TestClient]:
    from watergrid.app import create_app
    from watergrid.deps import get_db

    app = create_app(o311_url)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        yield c


@pytest.fixture
def api_key(db: Session) -> str:
    """A live Open311 client key. Committed (to the test's savepoint) so that a refused POST,
    which rolls its own work back, does not take the key with it."""
    from watergrid.auth import service as auth_service

    key = auth_service.issue_api_key(db, client_name="Open311 test client")
    db.commit()
    return key
