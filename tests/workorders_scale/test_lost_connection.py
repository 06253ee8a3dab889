"""A batch of reports whose PostgreSQL connection is lost (the server restarted, the
connection cut) fails as an overload, writes nothing, and the next batch gets a connection
that works: the lost one is not handed out again. On PostgreSQL a batch's statements go in
pipelines on the raw connection (db.pg_together), past SQLAlchemy's own execute, so this is
checked here rather than assumed."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from tests.workorders.helpers import grid_point, report

from watergrid.db import is_overload, make_engine
from watergrid.workorders import batching
from watergrid.workorders.intake import CreateRequest
from watergrid.workorders.models import WorkOrder
from watergrid.workorders.schemas import CreateResult, OrderCreate


def _report(key: str, lon: float, lat: float) -> CreateRequest:
    data = OrderCreate(**report(lon=lon, lat=lat))
    return CreateRequest(data, "api", None, key, datetime.now(UTC))


def test_a_batch_on_a_lost_connection_fails_alone_and_the_next_one_works(
    pg_demo_url: str,
) -> None:
    engine = make_engine(pg_demo_url, pool_size=1)
    admin = create_engine(pg_demo_url, poolclass=NullPool)
    try:
        with Session(engine) as s:
            lon, lat = grid_point(s, "W12")
        with admin.connect() as c:
            before = c.execute(select(func.count()).select_from(WorkOrder)).scalar_one()
        (first,) = batching.write_batch(engine, [_report("lost-0", lon, lat)])
        assert isinstance(first, CreateResult), first

        # The pool's one connection is cut while it idles between batches.
        with admin.connect() as c:
            cut = c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        assert cut, "a pooled connection to cut"

        (lost,) = batching.write_batch(engine, [_report("lost-1", lon, lat)])
        assert isinstance(lost, OperationalError), lost
        assert lost.connection_invalidated
        # The error says which statement met the lost connection (not only that the
        # rollback after it failed too).
        assert "order_category" in (lost.statement or ""), lost
        assert is_overload(lost)  # answered 503 with Retry-After, to be tried again

        (again,) = batching.write_batch(engine, [_report("lost-1", lon, lat)])
        assert isinstance(again, CreateResult) and not again.replayed, again
        with admin.connect() as c:
            stored = c.execute(select(func.count()).select_from(WorkOrder)).scalar_one()
        # The first report and the one tried again; nothing of the batch that was lost.
        assert stored == before + 2
    finally:
        engine.dispose()
        admin.dispose()
