"""At overload the server says so: 503 with a JSON error and Retry-After, not a 500.

SQLite's writer lock not had within the busy timeout, and no pooled PostgreSQL connection
free in time, both mean "try again shortly"; any other database fault stays a 500."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from watergrid.app import RETRY_AFTER_S, create_app


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
