"""At overload the server says so: 503 with a JSON error and Retry-After, not a 500.

SQLite's writer lock not had within the busy timeout, and no pooled PostgreSQL connection
free in time, both mean "try again shortly"; any other database fault stays a 500."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from watergrid.app import RETRY_AFTER_S, create_app
from watergrid.db import is_overload


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _raise(exc: Exception):  # type: ignore[no-untyped-def]
    def route() -> None:
        raise exc

    return route


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = create_app("sqlite://", embedded_worker=False)
    cases: dict[str, Exception] = {
        "locked": OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")),
        "pool": SQLAlchemyTimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        "pg_full": OperationalError("connect", {}, _PgError("53300")),
        "broken": OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")),
    }
    for name, exc in cases.items():
        app.add_api_route(f"/api/v1/_overload/{name}", _raise(exc), methods=["POST"])
        app.add_api_route(f"/open311/_overload/{name}.xml", _raise(exc), methods=["POST"])
    return app


@pytest.mark.parametrize("case", ["locked", "pool", "pg_full"])
def test_overload_is_a_503_with_retry_after(app: FastAPI, case: str) -> None:
    with TestClient(app) as c:
        r = c.post(f"/api/v1/_overload/{case}")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == str(RETRY_AFTER_S)
    err = r.json()["error"]
    assert err["code"] == "overloaded" and err["message_zh"] == "系统繁忙，请稍后再试"


def test_open311_clients_get_the_spec_error_list(app: FastAPI) -> None:
    with TestClient(app) as c:
        r = c.post("/open311/_overload/locked.xml")
    assert r.status_code == 503 and r.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert "<errors>" in r.text and "<code>503</code>" in r.text


def test_other_database_faults_stay_500(app: FastAPI) -> None:
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/v1/_overload/broken")
    assert r.status_code == 500
    assert "Retry-After" not in r.headers


def test_requests_beyond_the_pool_wait_their_turn_then_get_503() -> None:
    """One slot: a second request waits while the first runs, and is told to come back
    once its wait is over; the slot is free again afterwards."""
    import asyncio

    import httpx

    from watergrid.app import Admission

    inner = FastAPI()

    @inner.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(0.3)
        return {"ok": True}

    guarded = Admission(inner, slots=1, wait_s=0.1)

    async def run() -> tuple[list[int], int]:
        transport = httpx.ASGITransport(app=guarded)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first, second = await asyncio.gather(
                c.get("/slow"), c.get("/api/v1/x", headers={"accept": "application/json"})
            )
            after = await c.get("/slow")
        assert second.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert second.json()["error"]["code"] == "overloaded"
        return [first.status_code, second.status_code], after.status_code

    statuses, after = asyncio.run(run())
    assert statuses == [200, 503] and after == 200


@pytest.mark.parametrize(
    ("orig", "overload"),
    [
        # What a PostgreSQL restart looks like to the app (faults/restart_postgres.py).
        (psycopg.OperationalError("connection failed: the database system is shutting down"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.errors.LockNotAvailable("could not obtain lock"), True),
        # Faults of the statement itself stay server errors.
        (psycopg.errors.DivisionByZero("division by zero"), False),
        (sqlite3.OperationalError("no such table: work_order"), False),
    ],
)
def test_only_a_busy_or_restarting_database_counts_as_overload(
    orig: Exception, overload: bool
) -> None:
    assert is_overload(OperationalError("SELECT 1", {}, orig)) is overload
