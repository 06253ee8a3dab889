"""Fixtures of the inspection tests (see fixtures.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from tests.inspections import fixtures as fx


@pytest.fixture(scope="session")
def insp_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fx.make_url(backend, tmp_path_factory, "insp")


@pytest.fixture(scope="session")
def insp_engine(insp_url: str) -> Engine:
    return fx.engine_for(insp_url)


@pytest.fixture
def db(insp_engine: Engine) -> Iterator[Session]:
    yield from fx.session_on(insp_engine)


@pytest.fixture
def factory(db: Session) -> Callable[[], Session]:
    return fx.savepoint_factory(db)


@pytest.fixture
def client(db: Session, insp_url: str) -> Iterator[TestClient]:
    yield from fx.client_for(db, insp_url)


# -- browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.inspections import browser

    yield from browser.serve(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    from tests.inspections import browser

    yield from browser.chromium()


@pytest.fixture
def phone(chromium: object) -> Iterator[object]:
    from tests.inspections.browser import Tab

    tab = Tab(chromium, phone=True)
    yield tab
    tab.close()


@pytest.fixture
def desk(chromium: object) -> Iterator[object]:
    from tests.inspections.browser import Tab

    tab = Tab(chromium, phone=False)
    yield tab
    tab.close()
