"""Fixtures of the KPI tests, per backend (SQLite, and PostgreSQL when configured).

The database is migrated with Alembic, then the tables the migration chain does not hold yet
(work orders, timers, KPI) are created from the models, the demo, the categories and the
working calendar are loaded. Each test runs in a transaction rolled back at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session
from tests.web.conftest import artifacts, browser_context, page  # noqa: F401  (browser fixtures)

import watergrid.models  # noqa: F401  (every domain's tables)
from watergrid.notify import models as _notify_models  # noqa: F401
from watergrid.timers import models as _timer_models  # noqa: F401
from watergrid.workorders import jobs as _wo_jobs  # noqa: F401  (registers timer handlers)


@pytest.fixture(scope="session")
def kpi_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import create_database

    from watergrid import db as dbmod
    from watergrid.db import Base, make_engine
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade
    from watergrid.timers.calendar import seed_calendar
    from watergrid.workorders.categories import seed_categories

    url, drop = create_database(backend, tmp_path_factory.mktemp(f"kpi-{backend}"))
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
    dbmod.get_engine().dispose()
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def kpi_engine(kpi_url: str) -> Engine:
    from watergrid import db as dbmod

    dbmod.configure(kpi_url)
    return dbmod.get_engine()


@pytest.fixture
def db(kpi_engine: Engine) -> Iterator[Session]:
    from watergrid import db as dbmod

    dbmod.configure(str(kpi_engine.url.render_as_string(hide_password=False)))
    with rolled_back_session(kpi_engine) as session:
        yield session


@pytest.fixture
def client(db: Session, kpi_url: str) -> Iterator[TestClient]:
    from watergrid.app import create_app
    from watergrid.deps import get_db

    app = create_app(kpi_url)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        yield c
