"""`watergrid worker` does not live on with part of its loops: when one dies (here the
delivery loop, on settings it refuses), the worker stops the others and exits non-zero, so
its supervisor restarts it and an operator sees it — instead of timers running and
notifications silently piling up in the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.workorders_scale.procs import Processes, child_env, wait_until, worker_argv

from watergrid.db import Base, make_engine

pytestmark = pytest.mark.slow


def _empty_database(tmp: Path) -> str:
    import watergrid.models  # noqa: F401  (every domain's tables)

    url = f"sqlite:///{tmp / 'worker.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return url


def test_a_loop_that_dies_stops_the_worker_with_an_error(tmp_path: Path, procs: Processes) -> None:
    url = _empty_database(tmp_path)
    env = child_env(
        WATERGRID_DATABASE_URL=url,
        WATERGRID_LOG_LEVEL="INFO",
        # A send timeout longer than the lease allows: NotifySettings refuses it when the
        # delivery loop starts.
        WATERGRID_NOTIFY_HTTP_TIMEOUT_S="500",
    )
    argv = worker_argv("exit-probe", "timers,notify")
    w = procs.start("w", argv, env=env, log=tmp_path / "w.log")
    assert wait_until(lambda: not w.alive(), timeout_s=60), "the worker kept running:\n" + w.tail()
    assert w.proc.returncode == 1, w.tail()
    log = w.log.read_text(encoding="utf-8", errors="replace")
    assert "worker loop ended unexpectedly" in log
    # The sweeper was asked to stop and did, rather than being killed mid-item.
    assert "sweeper stopped" in log


def test_sigterm_still_ends_the_worker_cleanly(tmp_path: Path, procs: Processes) -> None:
    url = _empty_database(tmp_path)
    env = child_env(WATERGRID_DATABASE_URL=url, WATERGRID_LOG_LEVEL="INFO")
    argv = worker_argv("term-probe", "timers,notify")
    w = procs.start("w", argv, env=env, log=tmp_path / "w.log")
    assert wait_until(lambda: "delivery worker started" in w.tail(50), timeout_s=60), w.tail()
    assert procs.terminate(w) == 0, w.tail()
