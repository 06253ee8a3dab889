"""The fault scenarios of faults/ that fit in CI, at a smaller size: each must end with
submitted = stored and due = delivered, and its fault must really have happened.

restart_postgres is left to `python faults/run.py`: it needs the PostgreSQL server binaries
and the right to run them as another user (initdb refuses root), which a CI runner may not
give, and loading the demo into a new cluster alone takes longer than these tests together.
Results of a full run are kept in faults/results/."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from faults.common import pg_reachable
from tests.conftest import IN_CI, PG_URL

from faults import kill_processes, restart_mosquitto, sink_failing, sqlite_two_writers

pytestmark = pytest.mark.slow


def _show(name: str, r: dict[str, Any]) -> None:
    # Shown with -s, and in the report when an assertion fails.
    print(json.dumps({name: r}, ensure_ascii=False), file=sys.stderr)


def _postgres() -> None:
    """The scenarios use the server tests/conftest.py points at; under CI=true it must be
    there, elsewhere its absence skips."""
    url = PG_URL or ""
    problem = pg_reachable(url) if url else "WATERGRID_TEST_DATABASE_URL not set"
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL required under CI=true: {problem}")
        pytest.skip(f"PostgreSQL unavailable: {problem}")


@pytest.fixture
def pg_url(monkeypatch: pytest.MonkeyPatch) -> str:
    _postgres()
    import faults.common as common

    monkeypatch.setattr(common, "PG_URL", PG_URL)
    return PG_URL


def _assert_stored(r: dict[str, Any], requests: int) -> None:
    s = r["submitted_vs_stored"]
    assert s["submitted"] == s["stored"] == requests, s
    assert not any(s["violation_counts"].values()), s["violations"]
    assert r["burst"]["gave_up"] == 0 and r["replay"]["gave_up"] == 0
    # The replay found every order: idempotent, never a second create.
    assert r["replay"]["outcomes"].get("200") == requests, r["replay"]


def _assert_delivered(r: dict[str, Any]) -> None:
    d = r["due_vs_delivered"]
    assert d["drained"], d
    assert d["due"] > 0 and d["delivered"] == d["due"], d
    assert d["missing_count"] == 0 and d["unknown_ids"] == 0, d
    assert set(d["outbox_states"]) == {"sent"}, d


def test_sigkill_app_worker_and_delivery_worker(pg_url: str) -> None:
    requests = 240
    r = kill_processes.run(requests=requests, kill_app_after=60, kill_worker_after=100)
    _show("kill_processes", r)
    kinds = [e["event"] for e in r["events"]]
    assert kinds[:2] == ["SIGKILL app worker", "SIGKILL delivery worker"], r["events"]
    # The app kill landed inside the burst.
    assert r["events"][0]["acknowledged_so_far"] < requests
    _assert_stored(r, requests)
    _assert_delivered(r)


def test_notification_sink_failing_then_recovering(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production backend when there is one; the outbox code is the same on SQLite.
    backend = "postgresql" if PG_URL and not pg_reachable(PG_URL) else "sqlite"
    if backend == "postgresql":
        import faults.common as common

        monkeypatch.setattr(common, "PG_URL", PG_URL)
    r = sink_failing.run(messages=200, backend=backend)
    _show("sink_failing", r)
    per_phase = r["sink_requests_per_phase"]
    assert per_phase.get("5xx", 0) > 0 and per_phase.get("timeout", 0) > 0, per_phase
    assert r["outbox_at_recovery"].get("pending", 0) > 0, "the outage held messages back"
    assert r["attempts_by_error_class"].get("transient", 0) > 0
    _assert_delivered(r)
    assert r["ours_delivered"] == 200
    d = r["due_vs_delivered"]
    # Repeats only of ids the outbox holds (unknown_ids is 0), each reported.
    assert d["duplicates"] == d["requests_accepted"] - d["delivered"]


@pytest.mark.mqtt
def test_mosquitto_restart_during_ingestion() -> None:
    # A broker of the scenario's own; under CI=true the binary must be there.
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        if IN_CI:
            pytest.fail("the mosquitto binary is required under CI=true")
        pytest.skip("mosquitto binary not installed (make system-deps)")
    r = restart_mosquitto.run(readings=600, backend="sqlite", gauges=10)
    _show("restart_mosquitto", r)
    kinds = [e["event"] for e in r["events"]]
    assert "broker stopped" in kinds and "broker started" in kinds, r["events"]
    assert r["consumer_disconnects_logged"] > 0, "the consumer saw the broker go"
    assert r["acknowledged_by_broker"] == r["published"]
    assert r["missing_count"] == 0, r["missing"]
    assert r["not_published_but_stored"] == 0
    assert r["stored"] == r["published"] >= 600


def test_two_servers_and_a_worker_on_one_sqlite_file() -> None:
    requests = 300
    r = sqlite_two_writers.run(requests=requests)
    _show("sqlite_two_writers", r)
    bad = r["errors_other_than_503_with_retry_after"]
    assert not bad["burst"] and not bad["replay"], bad
    _assert_stored(r, requests)
    _assert_delivered(r)
