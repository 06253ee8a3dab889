"""Fixtures of the multi-process work-order scenarios.

Each test gets a database of its own (migrated with Alembic, tables the migrations do not
hold yet created from the models, the Guangming demo loaded), because real worker and
server processes commit into it: nothing can be rolled back afterwards. PostgreSQL comes
from tests/conftest.py's create_database, so under CI=true an unreachable server fails the
run instead of skipping it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from tests.workorders_scale.procs import Processes


def demo_database(backend: str, tmp: Path) -> tuple[str, object]:
    """A fresh database holding the demo (categories and calendar included); returns its URL
    and the callable that drops it."""
    from tests.conftest import create_database

    import watergrid.models  # noqa: F401  (every domain's tables)
    from watergrid.db import Base, begin_write, make_engine
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade

    url, drop = create_database(backend, tmp)
    try:
        upgrade(url)
        engine = make_engine(url)
        try:
            Base.metadata.create_all(engine)  # only what the migrations did not create
            with Session(engine) as s:
                begin_write(s)
                load_demo(s)
                s.commit()
        finally:
            engine.dispose()
    except BaseException:
        drop()  # type: ignore[operator]
        raise
    return url, drop


@pytest.fixture
def pg_demo_url(tmp_path: Path) -> Iterator[str]:
    url, drop = demo_database("postgresql", tmp_path)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


@pytest.fixture
def procs() -> Iterator[Processes]:
    """Child processes of the test; whatever is still running at the end is killed, so a
    failed assertion never leaves a worker or a server behind."""
    p = Processes()
    try:
        yield p
    finally:
        p.kill_all()
