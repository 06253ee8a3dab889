"""Fixtures of the flood tests: one database per backend for the session (tables from the
models, the registry demo and three users), shared by the tests. Ingestion and the MQTT
consumer commit in their own transactions, so tests keep out of each other's way by naming
everything they create with a unique tag; a test summing over a whole subdistrict gets a
database of its own (`fresh_sf`).

PostgreSQL runs when WATERGRID_TEST_DATABASE_URL is set (always under CI=true), as in the
root conftest. MQTT tests need Mosquitto on 127.0.0.1:1883: skipped when it is down, except
under CI=true, where that fails the run."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from tests.conftest import IN_CI, backends, create_database, rolled_back_session
from tests.flood.mqtt_helpers import PrivateBroker, free_port

from watergrid.db import Base, make_engine

BROKER = ("127.0.0.1", 1883)
USERS = (("duty", "duty_officer"), ("grid01", "grid_member"))


@pytest.fixture(scope="session", params=backends())
def flood_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _seed(session: Session) -> None:
    from watergrid.auth import service as auth_service
    from watergrid.demo.org import build_demo_registry
    from watergrid.geo import service as geo_service
    from watergrid.registry.service import import_data

    import_data(session, data=build_demo_registry().data)
    session.flush()
    grid = geo_service.get_or_404(session, code="W01", kind="grid")
    for username, role in USERS:
        scope = ("grid", grid.id) if role == "grid_member" else ("district", None)
        auth_service.create_user(
            session,
            username=username,
            display_name=username,
            password="demo1234",
            roles=[role],
            scopes=[scope],
        )


@pytest.fixture(scope="session")
def flood_url(flood_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import watergrid.models  # noqa: F401  (every table)

    url, drop = create_database(flood_backend, tmp_path_factory.mktemp(f"flood-{flood_backend}"))
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        _seed(s)
        s.commit()
    engine.dispose()
    yield url
    drop()  # type: ignore[operator]


@pytest.fixture(scope="session")
def flood_engine(flood_url: str) -> Iterator[Engine]:
    engine = make_engine(flood_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sf(flood_engine: Engine) -> sessionmaker[Session]:
    """Sessions that commit for real, as the consumer's do."""
    return sessionmaker(bind=flood_engine, expire_on_commit=False)


@pytest.fixture
def db(flood_engine: Engine) -> Iterator[Session]:
    """A session whose writes are rolled back after the test."""
    with rolled_back_session(flood_engine) as session:
        yield session


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def t0() -> datetime:
    """A recent 5-minute boundary: readings around it pass the late and future limits when
    ingested with `now` near it."""
    now = datetime.now(UTC)
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0) - timedelta(
        hours=6
    )


@pytest.fixture
def fresh_sf(flood_backend: str, tmp_path: object) -> Iterator[sessionmaker[Session]]:
    """A database of the test's own (registry only), for sums over a whole subdistrict."""
    from pathlib import Path

    import watergrid.models  # noqa: F401  (every table)

    url, drop = create_database(flood_backend, Path(str(tmp_path)))
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        from watergrid.demo.org import build_demo_registry
        from watergrid.registry.service import import_data

        import_data(s, data=build_demo_registry().data)
        s.commit()
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()
    drop()  # type: ignore[operator]


def broker_problem(host: str = BROKER[0], port: int = BROKER[1]) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc}"


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    problem = broker_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"Mosquitto required under CI=true but unreachable: {problem}")
        pytest.skip(f"Mosquitto unreachable: {problem}")
    return BROKER


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A Mosquitto of the test's own, for tests that restart the broker."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        if IN_CI:
            pytest.fail("the mosquitto binary is required under CI=true")
        pytest.skip("mosquitto binary not installed")
    broker = PrivateBroker(tmp_path, free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
