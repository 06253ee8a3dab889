"""Databases for the registry tests, per backend (see tests/conftest.py).

`reg_db` is the shared rolled-back `db` over the migrated demo database once the project
has an Alembic revision; before that the shared fixture has no tables, so `reg_db` builds its
own demo database with Base.metadata.create_all. `empty_db` is a fresh database with the
schema and nothing else, for imports that must start from nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session

PG_URL = os.environ.get("WATERGRID_TEST_DATABASE_URL", "")
if os.environ.get("CI", "").lower() == "true" and not PG_URL:
    PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def has_revisions() -> bool:
    from watergrid.migrate import MIGRATIONS

    return any((MIGRATIONS / "versions").glob("*.py"))


def _new_database(backend: str, tmp: Path) -> tuple[str, object]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / f'reg-{uuid.uuid4().hex[:8]}.db'}", lambda: None
    name = f"wg_reg_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # same policy as tests/conftest.py: skip, but fail under CI
        admin.dispose()
        reason = f"PostgreSQL unreachable: {str(exc).splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), drop


def _with_schema(url: str) -> Engine:
    import watergrid.models  # noqa: F401  (every table on Base.metadata)
    from watergrid.db import Base, make_engine
    from watergrid.migrate import upgrade

    if has_revisions():
        upgrade(url)
    engine = make_engine(url)
    if not has_revisions():
        Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def empty_db(backend: str, tmp_path: Path) -> Iterator[Session]:
    """A session over a brand-new database holding the schema and no rows."""
    url, drop = _new_database(backend, tmp_path)
    engine = _with_schema(url)
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        engine.dispose()
        drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def _own_demo_engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    from watergrid.demo.load import load_demo

    url, drop = _new_database(backend, tmp_path_factory.mktemp(f"reg-{backend}"))
    engine = _with_schema(url)
    with Session(engine) as s:
        load_demo(s)
        s.commit()
    yield engine
    engine.dispose()
    drop()  # type: ignore[operator]


@pytest.fixture
def reg_db(request: pytest.FixtureRequest, backend: str) -> Iterator[Session]:
    """A session over a database holding the demo; its writes are rolled back."""
    if has_revisions():
        yield request.getfixturevalue("db")
        return
    engine: Engine = request.getfixturevalue("_own_demo_engine")
    with rolled_back_session(engine) as session:
        yield session
