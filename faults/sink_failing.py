"""Scenario sink_failing: the receiver of notifications fails — 5xx for a while, then it
times out, then it is slow — and recovers; the outbox retries until every due message is
delivered, repeats only of the same message id.

Two `watergrid worker` processes (notify loop) deliver SMS into a local HTTP sink whose
answer changes with time:

  phase        sink answer                                   for the worker
  5xx          503, then 500                                 transient failure, backoff
  timeout      answers after the worker's 1 s timeout        transient failure (the sink did
                                                             get the message: a repeat follows)
  slow         answers 200 after 0.6 s                       success, slowly
  ok           answers 200 at once                           success

Messages are queued before the outage and again in its middle. The backoff is shortened
through WATERGRID_NOTIFY_* (base 0.5 s, cap 2 s) so the scenario takes well under a minute.

Counted at the end: due (external outbox messages) = delivered (message ids the sink
accepted: a request in the timeout, slow or ok phase — in the timeout phase the sink got the
message but the worker could not know it). Every outbox row must be 'sent' (none given up);
repeats of an id are reported as duplicates; an id the outbox does not hold fails the run.

A request is put in a phase by its arrival time. One arriving in the instant of a switch may
get the next phase's answer while counted in the previous phase; the order of phases makes
that err only towards counting less as accepted, never more.

    python faults/sink_failing.py [--messages 300] [--backend postgresql|sqlite]"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.notify.sink import OK, Reply, error

from faults.common import (
    Processes,
    app_env,
    demo_database,
    due_vs_delivered,
    exit_on_sigterm,
    notify_env,
    open_outbox,
    quiet_sink,
    report,
    start_worker,
    wait_delivered,
    workdir,
)

NAME = "sink_failing"
TIMEOUT_S = 1.0
# (name, seconds, reply); the last phase lasts until the end.
PHASES: list[tuple[str, float, Reply]] = [
    ("5xx", 4.0, error(503)),
    ("5xx", 4.0, error(500)),
    ("timeout", 6.0, Reply(delay_s=TIMEOUT_S + 1.5)),
    ("slow", 5.0, Reply(delay_s=TIMEOUT_S * 0.6)),
    ("ok", 0.0, OK),
]
ACCEPTING = {"timeout", "slow", "ok"}


def _enqueue(url: str, n: int, tag: str) -> list[str]:
    from sqlalchemy.orm import Session

    from watergrid.db import begin_write, make_engine
    from watergrid.notify import service

    engine = make_engine(url)
    try:
        with Session(engine) as db:
            begin_write(db)
            rows = service.enqueue(
                db,
                addresses=[("sms", f"139{i:08d}") for i in range(n)],
                topic="flood.warning",
                subject="暴雨红色预警",
                body=f"请立即转移低洼地带人员（{tag}）",
                subject_type="warning",
                subject_id=f"GM-W-FAULT-{tag}",
            )
            db.commit()
            return [r.message_id for r in rows]
    finally:
        engine.dispose()


def run(*, messages: int = 300, backend: str = "postgresql") -> dict[str, Any]:
    started = time.monotonic()
    with workdir(NAME) as tmp, demo_database(backend, tmp) as url:
        sink = quiet_sink()
        procs = Processes()
        switches: list[tuple[float, str]] = []
        try:
            first = _enqueue(url, messages * 2 // 3, "before")
            env = app_env(
                url,
                **notify_env(
                    sink,
                    WATERGRID_NOTIFY_HTTP_TIMEOUT_S=str(TIMEOUT_S),
                    WATERGRID_NOTIFY_LEASE_S="8",
                    WATERGRID_NOTIFY_BATCH_SIZE="10",
                ),
            )
            sink.default = PHASES[0][2]
            switches.append((time.monotonic(), PHASES[0][0]))
            workers = [
                start_worker(procs, f"worker-{i}", env, loops="notify", log=tmp / f"w{i}.log")
                for i in (1, 2)
            ]
            later: list[str] = []

            def enqueue_later() -> None:
                later.extend(_enqueue(url, messages - len(first), "during"))

            # Run the phases; in the middle of the timeouts, more messages fall due.
            for i, (name, seconds, _reply) in enumerate(PHASES[:-1]):
                if name == "timeout":
                    threading.Timer(seconds / 2, enqueue_later).start()
                time.sleep(seconds)
                nxt_name, _, nxt_reply = PHASES[i + 1]
                with sink._lock:  # the reply and the switch time change together
                    sink.default = nxt_reply
                    switches.append((time.monotonic(), nxt_name))
            states_at_recovery = open_outbox(url)
            t_recover = time.monotonic()
            drained = wait_delivered(url, 60)
            recover_s = time.monotonic() - t_recover
            time.sleep(0.5)
            requests = list(sink.requests)
            codes = [procs.terminate(w) for w in workers]
        finally:
            procs.kill_all()
            sink.close()

        def phase_of(at: float) -> str:
            name = switches[0][1]
            for t, n in switches:
                if at >= t:
                    name = n
            return name

        per_phase: Counter[str] = Counter()
        accepted: Counter[str] = Counter()
        for r in requests:
            ph = phase_of(r.at)
            per_phase[ph] += 1
            mid = r.headers.get("x-watergrid-message-id", "")
            if ph in ACCEPTING and mid:
                accepted[mid] += 1
        delivered = due_vs_delivered(url, accepted)
        from sqlalchemy import create_engine, func, select

        from watergrid.notify.models import DeliveryAttempt

        engine = create_engine(url)
        with engine.connect() as c:
            attempts = dict(
                c.execute(
                    select(DeliveryAttempt.error_class, func.count()).group_by(
                        DeliveryAttempt.error_class
                    )
                ).all()
            )
        engine.dispose()
    ours = set(first) | set(later)
    return {
        "settings": {
            "backend": backend,
            "messages": messages,
            "workers": 2,
            "http_timeout_s": TIMEOUT_S,
            "backoff_base_s": 0.5,
            "backoff_cap_s": 2,
            "phases": [
                {"phase": n, "seconds": s, "status": r.status, "delay_s": r.delay_s}
                for n, s, r in PHASES
            ],
        },
        "queued_before_outage": len(first),
        "queued_during_outage": len(later),
        "sink_requests_per_phase": dict(per_phase),
        "attempts_by_error_class": {str(k): v for k, v in attempts.items()},
        "outbox_at_recovery": states_at_recovery,
        "due_vs_delivered": delivered
        | {"drained": drained, "drain_after_recovery_s": round(recover_s, 2)},
        "ours_delivered": len(ours & set(accepted)),
        "exit_codes": codes,
        "duration_s": round(time.monotonic() - started, 1),
        "ok": delivered["ok"]
        and drained
        and len(later) > 0
        and ours <= set(accepted)
        and per_phase["5xx"] > 0
        and per_phase["timeout"] > 0,
    }


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    return report(NAME, run(messages=args.messages, backend=args.backend))


if __name__ == "__main__":
    raise SystemExit(main())
