"""The Alembic chain and the models describe the same schema, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import watergrid.models
from watergrid.db import Base


def test_models_and_migrations_agree(demo_engine: Engine) -> None:
    # demo_engine was created by `alembic upgrade head` (see conftest), not by create_all.
    assert watergrid.models.metadata is Base.metadata
    with demo_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models differ from migrations: {diff}"


def test_every_table_is_created_by_migrations(demo_engine: Engine) -> None:
    from sqlalchemy import inspect

    tables = set(inspect(demo_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
