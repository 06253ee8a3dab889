"""Scenario restart_postgres: PostgreSQL restarts (pg_ctl restart -m fast) in the middle of a
burst of creates and deliveries.

The shared server is never touched: the scenario makes a PostgreSQL cluster of its own
(initdb into a temporary directory with the Debian binaries under
/usr/lib/postgresql/*/bin, trust authentication, a free port; as the `postgres` user through
runuser when this runs as root, since initdb refuses root), loads the demo into it, and
runs `watergrid serve --workers 2` and a `watergrid worker` (timers, notify) against it.

  1. clients send creates with their Idempotency-Key, retrying on no answer or a 5xx with
     the same key and body (what the requests in flight at the restart get: the server
     drops their connections);
  2. once `restart_after` creates are acknowledged and the sink has started receiving,
     pg_ctl restart -m fast; the app and the worker find their pooled connections dead
     and reconnect;
  3. after the burst, every create is sent once more: each answers 200 with its number;
  4. count: submitted = stored and due = delivered (every external outbox message at the
     sink under its id; repeats counted).

    python faults/restart_postgres.py [--requests 400]"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.common import (
    Answer,
    Processes,
    app_env,
    burst,
    due_vs_delivered,
    exit_on_sigterm,
    free_port,
    load_demo,
    notify_env,
    plan,
    quiet_sink,
    report,
    route_people_to,
    sink_counts,
    start_server,
    start_worker,
    submitted_vs_stored,
    wait_delivered,
    wait_until,
    workdir,
)

NAME = "restart_postgres"


def pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries Debian installed, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port, owned by `postgres` when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="wg-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            cwd=self.dir,
        )

    def pg_ctl(self, *args: str) -> float:
        t0 = time.monotonic()
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            *args,
        )
        return time.monotonic() - t0

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c max_connections=200 -c shared_buffers=64MB"
        )
        self.pg_ctl("-o", opts, "start")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            if self.data.exists():
                self.pg_ctl("-m", "immediate", "stop")
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    cluster = PrivateCluster(bindir)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()


def _server_errors(log: Path) -> dict[str, int]:
    from collections import Counter

    out: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        exc = rec.get("exc") if isinstance(rec, dict) else None
        if exc:
            # The exception line ("sqlalchemy.exc.OperationalError: (psycopg…) …"), not
            # SQLAlchemy's link to its error page that follows it.
            lines = [x.strip() for x in exc.splitlines() if "Error: " in x or "Error)" in x]
            out[(lines[-1] if lines else exc.strip().splitlines()[-1])[:200]] += 1
    return dict(out.most_common(10))


def run(*, requests: int = 400, restart_after: int = 120, concurrency: int = 12) -> dict[str, Any]:
    started = time.monotonic()
    events: list[dict[str, Any]] = []
    with workdir(NAME) as tmp, private_cluster() as cluster:
        t_setup = time.monotonic()
        url = cluster.create_database("watergrid")
        load_demo(url)
        setup_s = time.monotonic() - t_setup
        sink = quiet_sink()
        procs = Processes()
        try:
            people = route_people_to(url, sink.url)
            env = app_env(url, **notify_env(sink))
            port = free_port()
            server = start_server(procs, "serve", env, port=port, workers=2, log=tmp / "serve.log")
            worker = start_worker(procs, "worker", env, loops="timers,notify", log=tmp / "w.log")
            base = f"http://127.0.0.1:{port}"
            items = plan(requests, uuid.uuid4().hex[:8])
            acked = 0

            def on_answer(a: Answer) -> None:
                nonlocal acked
                acked += a.ok

            def inject() -> None:
                t0 = time.monotonic()
                if not wait_until(
                    lambda: acked >= restart_after and len(sink.requests) > 0, 120, every_s=0.02
                ):
                    return
                at = {"acknowledged_so_far": acked, "sink_requests_so_far": len(sink.requests)}
                took = cluster.pg_ctl("-m", "fast", "restart")
                events.append(
                    {
                        "at_s": round(time.monotonic() - t0, 2),
                        "event": "pg_ctl restart -m fast",
                        "restart_s": round(took, 2),
                        **at,
                        "acknowledged_after": acked,
                        "sink_requests_after": len(sink.requests),
                    }
                )

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            t_burst = time.monotonic()
            first = burst([base], items, concurrency=concurrency, on_answer=on_answer)
            burst_s = time.monotonic() - t_burst
            injector.join(90)
            replay = burst([base], items, concurrency=concurrency)
            t_drain = time.monotonic()
            drained = wait_delivered(url, 60)
            drain_s = time.monotonic() - t_drain
            time.sleep(0.5)
            received = sink_counts(sink)
            alive = {"serve": server.alive(), "worker": worker.alive()}
            codes = [procs.terminate(server), procs.terminate(worker)]
            stored = submitted_vs_stored(url, items, first, replay)
            delivered = due_vs_delivered(url, received)
            worker_log = worker.tail(8)
            server_errors = _server_errors(tmp / "serve.log")
        finally:
            procs.kill_all()
            sink.close()
    restarted = bool(events)
    return {
        "settings": {
            "requests": requests,
            "concurrency": concurrency,
            "server_workers": 2,
            "restart_after_acks": restart_after,
            "postgres": str(cluster.bindir),
            "people_routed_to_sink": people,
        },
        "setup_s": round(setup_s, 1),
        "events": events,
        "burst": first.summary() | {"elapsed_s": round(burst_s, 2)},
        "replay": replay.summary(),
        "submitted_vs_stored": stored,
        "due_vs_delivered": delivered | {"drained": drained, "drain_s": round(drain_s, 2)},
        # What the app answered 500 with: the exception of each logged traceback.
        "server_errors": server_errors,
        "alive_after": alive,
        "exit_codes": codes,
        "worker_log_tail": worker_log if codes[1] != 0 else "",
        "duration_s": round(time.monotonic() - started, 1),
        "ok": restarted
        and stored["ok"]
        and delivered["ok"]
        and drained
        and all(alive.values())
        and not first.gave_up
        and not replay.gave_up,
    }


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args()
    return report(NAME, run(requests=args.requests))


if __name__ == "__main__":
    raise SystemExit(main())
