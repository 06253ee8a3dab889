"""`watergrid worker --loops`: production runs the MQTT loop in one process only (its client
id is fixed) and timers,notify in the others, so the option must start exactly the loops
named and refuse a name it does not know instead of quietly running less."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from typer.testing import CliRunner

from watergrid import db as dbmod
from watergrid.cli import app
from watergrid.ops import worker as worker_mod


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records what the command would start, and starts nothing."""
    calls: list[dict[str, Any]] = []

    def fake_start(**kwargs: Any) -> worker_mod.Worker:
        calls.append(kwargs)
        return worker_mod.Worker()  # no threads: join() returns at once

    monkeypatch.setattr(worker_mod, "start", fake_start)
    monkeypatch.setattr(dbmod, "configure", lambda *a, **k: None)
    # The command installs SIGTERM/SIGINT handlers; they must not outlive the test.
    monkeypatch.setattr(signal, "signal", lambda *a, **k: None)
    return calls


def test_runs_only_the_loops_named(started: list[dict[str, Any]]) -> None:
    r = CliRunner().invoke(app, ["worker", "--worker-id", "w2", "--loops", " timers, notify "])
    assert r.exit_code == 0, r.output
    assert started == [{"worker_id": "w2", "loops": ("timers", "notify")}]


def test_all_loops_by_default(started: list[dict[str, Any]]) -> None:
    r = CliRunner().invoke(app, ["worker"])
    assert r.exit_code == 0, r.output
    assert started[0]["loops"] == worker_mod.LOOPS


@pytest.mark.parametrize("loops", ["timer,notify", "timers,mqqt", ",", ""])
def test_an_unknown_or_empty_loop_list_is_refused(
    started: list[dict[str, Any]], loops: str
) -> None:
    # Wide enough that the error box does not wrap the message.
    r = CliRunner().invoke(app, ["worker", "--loops", loops], env={"COLUMNS": "200"})
    assert r.exit_code == 2
    assert "Invalid value for --loops" in r.output
    assert "choose from timers, notify, mqtt" in r.output
    assert started == []


def test_start_launches_a_thread_per_named_loop_only(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def targets(worker_id: str, stop: Any) -> dict[str, Any]:
        return {name: (lambda n=name: (ran.append(n), stop.wait())) for name in worker_mod.LOOPS}

    monkeypatch.setattr(worker_mod, "_loop_targets", targets)
    monkeypatch.setattr(worker_mod, "register_handlers", lambda: [])
    w = worker_mod.start(worker_id="t", loops=("timers", "notify"))
    try:
        assert sorted(t.name for t in w.threads) == ["notify-t", "timers-t"]
    finally:
        w.stop(timeout=5)
    assert sorted(ran) == ["notify", "timers"]
