"""Database fixtures shared by the inspection and permit tests, on SQLite and (when
configured) PostgreSQL through the root conftest's `backend` parameter.

Each backend gets a fresh database: migrated with Alembic, then the Guangming registry demo
and the working calendar. Each test works in
a transaction rolled back at its end; timer sweeps (run_due) get sessions on the same
connection through savepoints, so they see and keep the test's data."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from tests.conftest import rolled_back_session

import watergrid.models  # noqa: F401  (every domain's tables)
from watergrid.inspections import jobs as _insp_jobs  # noqa: F401  (registers timer handlers)
from watergrid.permits import jobs as _permit_jobs  # noqa: F401
from watergrid.timers import models as _timer_models  # noqa: F401

# 2026-03-02 is a Monday; 01:00 UTC is 09:00 in Asia/Shanghai.
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def make_url(backend: str, tmp_path_factory: pytest.TempPathFactory, tag: str) -> Iterator[str]:
    from tests.conftest import create_database

    from watergrid import db as dbmod
    from watergrid.demo.load import load_demo
    from watergrid.inspections.jobs import reset_calendar_cache
    from watergrid.migrate import upgrade
    from watergrid.timers.calendar import seed_calendar

    url, drop = create_database(backend, tmp_path_factory.mktemp(f"{tag}-{backend}"))
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
        seed_calendar(s, years=range(2025, 2027))
    reset_calendar_cache()
    yield url
    dbmod.get_engine().dispose()
    drop()  # type: ignore[operator]


def engine_for(url: str) -> Engine:
    from watergrid import db as dbmod

    dbmod.configure(url)
    return dbmod.get_engine()


def session_on(engine: Engine) -> Iterator[Session]:
    from watergrid import db as dbmod

    dbmod.configure(engine.url.render_as_string(hide_password=False))
    with rolled_back_session(engine) as session:
        yield session


def savepoint_factory(db: Session) -> Callable[[], Session]:
    conn = db.get_bind()
    return lambda: Session(
        bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


def client_for(db: Session, url: str) -> Iterator[TestClient]:
    from watergrid.app import create_app
    from watergrid.deps import get_db

    app = create_app(url, embedded_worker=False)
    app.dependency_overrides[get_db] = lambda: db
    with TestClient(app) as c:
        yield c


def principal(db: Session, username: str):  # type: ignore[no-untyped-def]
    from watergrid.auth import service as auth_service

    user = auth_service.get_by_username(db, username=username)
    assert user is not None, username
    return auth_service.load_principal(db, user=user)


def count(db: Session, model: type) -> int:
    db.flush()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def jpeg(size: tuple[int, int] = (64, 48), exif: bool = False) -> bytes:
    from PIL import Image

    img = Image.new("RGB", size, (30, 120, 200))
    buf = io.BytesIO()
    if exif:
        ex = Image.Exif()
        ex[0x010F] = "PhoneMaker"  # Make
        ex[0x0112] = 6  # Orientation: rotate 90° to display
        img.save(buf, "JPEG", exif=ex.tobytes())
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


def grid_point(db: Session, code: str, shift: int = 0) -> tuple[float, float]:
    """A point well inside a grid (a different one for each `shift`)."""
    from shapely.geometry import shape

    from watergrid.geo import service as geo_service

    poly = shape(geo_service.get_or_404(db, code=code).geometry).buffer(-0.002)
    c = poly.representative_point()
    minx, miny, maxx, maxy = poly.bounds
    for k in range(200):
        x = c.x + ((k * 37 + shift * 11) % 19 - 9) * (maxx - minx) / 40
        y = c.y + ((k * 53 + shift * 7) % 17 - 8) * (maxy - miny) / 40
        from shapely.geometry import Point

        if poly.contains(Point(x, y)) and (k > 0 or shift == 0):
            return round(x, 6), round(y, 6)
    return round(c.x, 6), round(c.y, 6)
