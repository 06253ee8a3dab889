"""Intake survives a server crash: SIGKILL during a burst of creates, then every request
retried with its Idempotency-Key.

For each backend: a fresh database with the Guangming demo, uvicorn with 2 workers in a
process group of its own, and then
  1. a burst of creates, each with its own Idempotency-Key and a body naming that key;
  2. once `--kill-after` of them have been acknowledged (2xx), SIGKILL to the whole
     process group — requests in flight and those not yet sent get no answer;
  3. the server started again on the same database and port;
  4. every request of the burst sent again, unchanged, acknowledged or not;
  5. the database read back and checked:
     - every key acknowledged before the kill maps to exactly one order, whose number is
       the one the first acknowledgement gave, and its retry answers 200 with that number;
     - no key has two orders; every retry ends in 2xx;
     - nothing is partial: every order has its create event first, its outbox rows, its
       response timer and the idempotency row pointing at it with the receipt; no
       idempotency row lacks its order.
Prints the figures and saves them to bench/results/crash_intake.json; exit status 1 when
any check fails. tests/workorders_scale/test_crash_intake.py runs the same scenario.

    python bench/crash_intake.py [--backend sqlite|postgresql|both] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from harness import (  # noqa: E402
    env_for,
    free_port,
    fresh_database,
    load_demo,
    save,
    uvicorn_argv,
    wait_ready,
)
from intake import inside_points  # noqa: E402
from loadgen import Conn  # noqa: E402

CATEGORY = "drainage.blocked_drain"
KEY_IN_TEXT = re.compile(r"（崩溃演练 (\S+)）")
REQUEST_TIMEOUT_S = 60.0
# Tries per request after the restart. A retry is what the client does anyway; it also
# covers a transient 5xx (on SQLite, a writer that waited out the busy timeout).
RETRY_TRIES = 8


@dataclass(frozen=True)
class Planned:
    key: str
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (connection refused, reset, cut)
    body: dict[str, Any] | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def number(self) -> str | None:
        return None if self.body is None else self.body.get("number")


def _run_async(coro):  # type: ignore[no-untyped-def]
    """asyncio.run in a thread of its own: a test process may already have an event loop on
    its main thread (Playwright's sync API keeps one), where asyncio.run refuses to start."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def plan(n: int, run: str) -> list[Planned]:
    points = inside_points(min(n, 2000), seed=7)
    out = []
    for i in range(n):
        key = f"{run}-{i:05d}"
        lon, lat = points[i % len(points)]
        body = {
            "category_code": CATEGORY,
            "description": f"雨水口堵塞，路面积水（崩溃演练 {key}）",
            "lon": lon,
            "lat": lat,
            "source": "api",
        }
        out.append(Planned(key, json.dumps(body, ensure_ascii=False).encode()))
    return out


def _request(p: Planned) -> tuple[str, str, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Idempotency-Key": p.key}
    return ("POST", "/api/v1/orders", headers, p.body)


async def _send(conn: Conn, p: Planned) -> Answer:
    try:
        status, raw = await asyncio.wait_for(conn.send(_request(p)), timeout=REQUEST_TIMEOUT_S)
    except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
        conn.close()
        return Answer(None, error=type(exc).__name__)
    if status >= 500:
        # uvicorn closes the connection after an unhandled error; start the next one afresh.
        conn.close()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Answer(status, body if isinstance(body, dict) else None)


async def fire(
    base: str,
    items: list[Planned],
    *,
    concurrency: int,
    tries: int = 1,
    on_answer: Callable[[Answer], None] | None = None,
) -> tuple[dict[str, Answer], Counter[str]]:
    """Send each item over `concurrency` keep-alive connections, in order, as a client that
    retries does: up to `tries` times while there is no answer or a 5xx, with a short
    pause (the same key and body each time). Returns the last answer per key and how many
    of each outcome the tries had (e.g. {"201": 280, "500": 3, "ConnectionResetError": 1})."""
    host, port = base.rsplit("//", 1)[1].split(":")
    todo = iter(items)
    answers: dict[str, Answer] = {}
    outcomes: Counter[str] = Counter()

    async def client() -> None:
        conn = Conn(host, int(port))
        for p in todo:
            for attempt in range(tries):
                if attempt:
                    await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                a = await _send(conn, p)
                outcomes[str(a.status) if a.status is not None else a.error] += 1
                if on_answer is not None:
                    on_answer(a)
                answers[p.key] = a
                if a.status is not None and a.status < 500:
                    break
        conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answers, outcomes


@dataclass
class Server:
    url: str
    port: int
    workers: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: list[float] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> float:
        """Start uvicorn in a new process group and wait until it answers /readyz; returns
        the seconds that took."""
        started = time.monotonic()
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                uvicorn_argv(self.port, self.workers),
                env=env_for(self.url),
                cwd=self.log.parent,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.proc
        if not wait_ready(
            self.base, alive=lambda: proc.poll() is None, timeout_s=timeout_s, step_s=0.1
        ):
            self.kill()
            raise RuntimeError(f"server did not become ready; see {self.log}")
        took = time.monotonic() - started
        self.starts.append(round(took, 2))
        return took

    def kill(self) -> None:
        """SIGKILL to the supervisor and its worker processes at once, as a power cut or
        the OOM killer would: no shutdown handler runs, no response is finished."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # The uvicorn workers are the supervisor's children, not ours: wait until the group
        # is empty, so the restart never meets a predecessor still holding the port.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            return
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(20)
        self.kill()


def check(
    url: str, items: list[Planned], first: dict[str, Answer], retry: dict[str, Answer]
) -> dict[str, Any]:
    """Read the database back; returns the counts and the violations (lists, empty when
    all is well)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            orders = c.execute(text("SELECT id, number, description FROM work_order")).all()
            idem = {
                r.key: r
                for r in c.execute(text("SELECT key, order_id, receipt FROM idempotency_key"))
            }
            first_event = dict(
                c.execute(
                    text(
                        "SELECT e.order_id, e.action FROM order_event e JOIN "
                        "(SELECT order_id, min(id) AS id FROM order_event GROUP BY order_id) f "
                        "ON f.id = e.id"
                    )
                ).all()
            )
            creates = Counter(
                c.execute(
                    text("SELECT order_id FROM order_event WHERE action = 'create'")
                ).scalars()
            )
            outbox = Counter(
                int(x)
                for x in c.execute(
                    text(
                        "SELECT subject_id FROM outbox WHERE subject_type = 'work_order' "
                        "AND topic = 'workorder.created'"
                    )
                ).scalars()
            )
            timers = Counter(
                int(x)
                for x in c.execute(
                    text(
                        "SELECT subject_id FROM due_item WHERE subject_type = 'work_order' "
                        "AND key LIKE 'response:%'"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()

    by_key: dict[str, list[tuple[int, str]]] = {}
    for oid, number, description in orders:
        m = KEY_IN_TEXT.search(description)
        by_key.setdefault(m.group(1) if m else f"<no key: order {oid}>", []).append((oid, number))

    v: dict[str, list[Any]] = {
        "lost_acknowledged": [],
        "number_changed": [],
        "duplicate_orders": [],
        "retry_failed": [],
        "retry_mismatch": [],
        "partial": [],
    }
    for p in items:
        got = by_key.get(p.key, [])
        if len(got) > 1:
            v["duplicate_orders"].append({"key": p.key, "orders": got})
        again = retry.get(p.key)
        if again is None or not again.ok:
            v["retry_failed"].append(
                {"key": p.key, "status": again and again.status, "error": again and again.error}
            )
        ack = first.get(p.key)
        if ack is None or not ack.ok:
            continue
        if not got:
            v["lost_acknowledged"].append({"key": p.key, "number": ack.number})
        elif any(number != ack.number for _, number in got):
            v["number_changed"].append({"key": p.key, "acked": ack.number, "stored": got})
        if (
            again is not None
            and again.ok
            and (
                again.status != 200
                or again.number != ack.number
                or (again.body or {}).get("track_token") != (ack.body or {}).get("track_token")
            )
        ):
            v["retry_mismatch"].append(
                {"key": p.key, "acked": ack.number, "retry": again.status, "number": again.number}
            )
    for key, got in by_key.items():
        if key not in {p.key for p in items}:
            v["duplicate_orders"].append({"key": key, "orders": got, "why": "not ours"})
    for oid, number, _ in orders:
        missing = []
        if first_event.get(oid) != "create" or creates[oid] != 1:
            missing.append("create event")
        if outbox[oid] < 1:
            missing.append("outbox rows")
        if timers[oid] < 1:
            missing.append("response timer")
        owners = [r for r in idem.values() if r.order_id == oid]
        receipt = owners[0].receipt if len(owners) == 1 else None
        if isinstance(receipt, str):  # SQLite hands JSON back as text through text()
            receipt = json.loads(receipt)
        if not receipt or receipt.get("number") != number:
            missing.append("idempotency row")
        if missing:
            v["partial"].append({"order": number, "missing": missing})
    for key, r in idem.items():
        if r.order_id is None or r.receipt is None:
            v["partial"].append({"idempotency_key": key, "missing": ["order"]})
    return {"orders": len(orders), "violations": v}


def scenario(
    url: str,
    *,
    workdir: Path,
    requests: int = 400,
    kill_after: int = 120,
    concurrency: int = 24,
    workers: int = 2,
) -> dict[str, Any]:
    """Run the crash scenario against a database holding the demo; returns the figures and
    the violations. The server is always stopped before returning."""
    run = uuid.uuid4().hex[:8]
    items = plan(requests, run)
    server = Server(url, free_port(), workers, workdir / f"server-{run}.log")
    acked = 0
    killed_at: float | None = None
    t0 = time.monotonic()

    def count(a: Answer) -> None:
        nonlocal acked, killed_at
        if a.ok:
            acked += 1
        if acked >= kill_after and killed_at is None:
            killed_at = time.monotonic() - t0
            server.kill()

    try:
        server.start()
        t0 = time.monotonic()
        # One try each: the kill must find requests in flight and others not yet sent.
        first, first_outcomes = _run_async(
            fire(server.base, items, concurrency=concurrency, on_answer=count)
        )
        burst_s = time.monotonic() - t0
        if killed_at is None:  # the burst ended before the kill: still crash before retrying
            killed_at = burst_s
            server.kill()
        restart_s = server.start()
        t1 = time.monotonic()
        retry, retry_outcomes = _run_async(
            fire(server.base, items, concurrency=concurrency, tries=RETRY_TRIES)
        )
        retry_s = time.monotonic() - t1
    finally:
        server.stop()

    result = check(url, items, first, retry)
    unanswered = [k for k, a in first.items() if a.status is None]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "server_workers": workers,
        "kill_after_acks": kill_after,
        "burst": {
            "acknowledged": sum(a.ok for a in first.values()),
            "unanswered": len(unanswered),
            "outcomes": dict(first_outcomes),
            "killed_at_s": round(killed_at, 2),
            "elapsed_s": round(burst_s, 2),
        },
        "restart_s": round(restart_s, 2),
        "retry": {
            "final_statuses": dict(Counter(str(a.status) for a in retry.values())),
            "outcomes": dict(retry_outcomes),
            # Committed before the kill but never answered: found again, not made again.
            "unanswered_but_stored": sum(
                1 for k in unanswered if retry.get(k) and retry[k].status == 200
            ),
            "elapsed_s": round(retry_s, 2),
        },
        **result,
        "ok": not any(result["violations"].values()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--kill-after", type=int, default=120, help="acknowledgements before the kill")
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            print(f"-- {b}", flush=True)
            with fresh_database(b, Path(tmp)) as url:
                load_demo(url)
                results[b] = r = scenario(
                    url,
                    workdir=Path(tmp),
                    requests=args.requests,
                    kill_after=args.kill_after,
                    concurrency=args.concurrency,
                    workers=args.workers,
                )
            print(json.dumps(r, indent=2, ensure_ascii=False), flush=True)
    path = save("crash_intake", {"settings": vars(args), "results": results})
    print(f"saved {path}")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
