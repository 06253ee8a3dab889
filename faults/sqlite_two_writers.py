"""Scenario sqlite_two_writers: two `watergrid serve` processes and a `watergrid worker` on one
SQLite file, under a burst of creates sent alternately to both servers.

SQLite lets one writer in at a time. Each server's busy timeout is cut to
`busy_timeout_ms` (default 50 ms instead of the production 10 s) so that writers really do
time out waiting for the lock: such a request must be answered 503 with Retry-After (the
transaction rolled back, nothing written) and the client, retrying with the same
Idempotency-Key after the advertised wait, must get its order — once. The worker (timers,
notify, default busy timeout) writes at the same time, delivering the notifications the
orders queue to a local HTTP sink.

Counted at the end:
  - submitted = stored: one order per key, nothing partial, every key's replay 200 with
    the number first acknowledged (crash_intake's check);
  - errors only 503 with Retry-After: any other 5xx, any 5xx without the header, or any
    request without an answer fails the run;
  - due = delivered: every external outbox message received by the sink under its id.

    python faults/sqlite_two_writers.py [--requests 400] [--busy-timeout-ms 50]"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.common import (
    Processes,
    app_env,
    burst,
    demo_database,
    due_vs_delivered,
    exit_on_sigterm,
    free_port,
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
    workdir,
)

NAME = "sqlite_two_writers"


def run(*, requests: int = 400, concurrency: int = 16, busy_timeout_ms: int = 50) -> dict[str, Any]:
    started = time.monotonic()
    with workdir(NAME) as tmp, demo_database("sqlite", tmp) as url:
        sink = quiet_sink()
        procs = Processes()
        try:
            people = route_people_to(url, sink.url)
            env = app_env(url, **notify_env(sink))
            serve_env = env | {"WATERGRID_SQLITE_BUSY_TIMEOUT_MS": str(busy_timeout_ms)}
            ports = [free_port(), free_port()]
            servers = [
                start_server(
                    procs, f"serve-{i}", serve_env, port=p, workers=1, log=tmp / f"serve-{i}.log"
                )
                for i, p in enumerate(ports, 1)
            ]
            worker = start_worker(procs, "worker", env, loops="timers,notify", log=tmp / "w.log")
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            items = plan(requests, uuid.uuid4().hex[:8])
            t0 = time.monotonic()
            first = burst(bases, items, concurrency=concurrency, give_up_s=60)
            burst_s = time.monotonic() - t0
            replay = burst(bases, items, concurrency=concurrency, give_up_s=60)
            t1 = time.monotonic()
            drained = wait_delivered(url, 60)
            drain_s = time.monotonic() - t1
            time.sleep(0.5)
            received = sink_counts(sink)
            codes = [procs.terminate(c) for c in (*servers, worker)]
            stored = submitted_vs_stored(url, items, first, replay)
            delivered = due_vs_delivered(url, received)
        finally:
            procs.kill_all()
            sink.close()

    def bad_errors(t: Any) -> dict[str, int]:
        """Outcomes other than 2xx and 503-with-Retry-After."""
        out = {k: n for k, n in t.outcomes.items() if not (k.startswith("2") or k == "503")}
        out.update({f"{k} without Retry-After": n for k, n in t.without_retry_after.items()})
        return out

    bad = {"burst": bad_errors(first), "replay": bad_errors(replay)}
    return {
        "settings": {
            "requests": requests,
            "concurrency": concurrency,
            "servers": 2,
            "server_busy_timeout_ms": busy_timeout_ms,
            "people_routed_to_sink": people,
        },
        "burst": first.summary() | {"elapsed_s": round(burst_s, 2)},
        "replay": replay.summary(),
        "errors_other_than_503_with_retry_after": bad,
        "submitted_vs_stored": stored,
        "due_vs_delivered": delivered | {"drained": drained, "drain_s": round(drain_s, 2)},
        "exit_codes": codes,
        "duration_s": round(time.monotonic() - started, 1),
        "ok": stored["ok"]
        and delivered["ok"]
        and drained
        and not any(bad.values())
        and not first.gave_up
        and not replay.gave_up,
    }


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--busy-timeout-ms", type=int, default=50)
    args = ap.parse_args()
    return report(NAME, run(requests=args.requests, busy_timeout_ms=args.busy_timeout_ms))


if __name__ == "__main__":
    raise SystemExit(main())
