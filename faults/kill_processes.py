"""Scenario kill_processes: SIGKILL an app worker process under a burst of idempotent creates,
and SIGKILL a `watergrid worker` while it delivers the notifications those creates queue.

On PostgreSQL (the production setup): `watergrid serve --workers 2`, one `watergrid worker`
(timers, notify) whose webhooks go to a local HTTP sink, everyone's channel routed there.
  1. clients send creates, each with its own Idempotency-Key, retrying on no answer or a
     5xx with the same key and body;
  2. once `kill_app_after` creates are acknowledged, SIGKILL one of the two uvicorn worker
     processes (the supervisor starts another; the other worker keeps serving);
  3. once the sink has `kill_worker_after` requests, SIGKILL the delivery worker's process
     group mid-batch, and start a new worker at once: the killed one's claimed messages
     come back when their lease (9 s) runs out;
  4. after the burst, every create is sent once more: each answers 200 with its number;
  5. count: submitted = stored (one order per key, nothing partial) and due = delivered
     (every external outbox message received by the sink under its message id; repeats
     of an id are the at-least-once redeliveries of the killed worker's batch).

    python faults/kill_processes.py [--requests 400]"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.common import (
    Answer,
    Processes,
    app_env,
    app_workers,
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
    wait_until,
    workdir,
)

NAME = "kill_processes"


def run(
    *,
    requests: int = 400,
    kill_app_after: int = 100,
    kill_worker_after: int = 150,
    concurrency: int = 12,
    backend: str = "postgresql",
) -> dict[str, Any]:
    started = time.monotonic()
    events: list[dict[str, Any]] = []
    with workdir(NAME) as tmp, demo_database(backend, tmp) as url:
        sink = quiet_sink()
        procs = Processes()
        try:
            people = route_people_to(url, sink.url)
            env = app_env(url, **notify_env(sink))
            port = free_port()
            server = start_server(procs, "serve", env, port=port, workers=2, log=tmp / "serve.log")
            workers = [
                start_worker(procs, "worker-1", env, loops="timers,notify", log=tmp / "w1.log")
            ]
            base = f"http://127.0.0.1:{port}"
            items = plan(requests, uuid.uuid4().hex[:8])
            acked = 0
            app_killed = threading.Event()

            def on_answer(a: Answer) -> None:
                nonlocal acked
                acked += a.ok

            def inject() -> None:
                t0 = time.monotonic()
                if not wait_until(lambda: acked >= kill_app_after, 120, every_s=0.02):
                    return
                before = app_workers(server.proc.pid)
                victim = before[0]
                os.kill(victim, signal.SIGKILL)
                app_killed.set()
                events.append(
                    {
                        "at_s": round(time.monotonic() - t0, 2),
                        "event": "SIGKILL app worker",
                        "pid": victim,
                        "acknowledged_so_far": acked,
                    }
                )
                if not wait_until(lambda: len(sink.requests) >= kill_worker_after, 120, 0.02):
                    return
                procs.kill(workers[0])
                events.append(
                    {
                        "at_s": round(time.monotonic() - t0, 2),
                        "event": "SIGKILL delivery worker",
                        "sink_requests_so_far": len(sink.requests),
                        "acknowledged_so_far": acked,
                    }
                )
                workers.append(
                    start_worker(procs, "worker-2", env, loops="timers,notify", log=tmp / "w2.log")
                )
                # The supervisor's replacement for the killed app worker, if any.
                wait_until(lambda: len(app_workers(server.proc.pid)) >= 2, 20)
                after = app_workers(server.proc.pid)
                events.append(
                    {
                        "at_s": round(time.monotonic() - t0, 2),
                        "event": "app workers after kill",
                        "before": before,
                        "after": after,
                        "replaced": victim not in after and len(after) >= 2,
                    }
                )

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            t_burst = time.monotonic()
            first = burst([base], items, concurrency=concurrency, on_answer=on_answer)
            burst_s = time.monotonic() - t_burst
            injector.join(30)
            replay = burst([base], items, concurrency=concurrency)
            t_drain = time.monotonic()
            drained = wait_delivered(url, 60)
            drain_s = time.monotonic() - t_drain
            # The sink may still be answering a last request while the states settle.
            time.sleep(0.5)
            received = sink_counts(sink)
            codes = [procs.terminate(server)] + [procs.terminate(w) for w in workers[1:]]
            stored = submitted_vs_stored(url, items, first, replay)
            delivered = due_vs_delivered(url, received)
            logs = {c.name: c.tail(15) for c in procs.children if c.proc.returncode not in (0, -9)}
        finally:
            procs.kill_all()
            sink.close()
    faults_hit = len(events) >= 2 and app_killed.is_set()
    return {
        "settings": {
            "backend": backend,
            "requests": requests,
            "concurrency": concurrency,
            "server_workers": 2,
            "kill_app_after_acks": kill_app_after,
            "kill_worker_after_sink_requests": kill_worker_after,
            "people_routed_to_sink": people,
        },
        "events": events,
        "burst": first.summary() | {"elapsed_s": round(burst_s, 2)},
        "replay": replay.summary(),
        "submitted_vs_stored": stored,
        "due_vs_delivered": delivered | {"drained": drained, "drain_s": round(drain_s, 2)},
        "exit_codes": codes,
        "unclean_logs": logs,
        "faults_injected": faults_hit,
        "duration_s": round(time.monotonic() - started, 1),
        "ok": faults_hit
        and stored["ok"]
        and delivered["ok"]
        and drained
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
