"""Shared by the fault scenarios: demo databases (built once per run and copied, because
loading the demo costs half a minute), child processes, a client that retries creates with
their Idempotency-Key, and the two counts every scenario ends with:

  submitted = stored   every create the client sent exists exactly once in the database;
  due = delivered      every external outbox message reached the sink under its message id
                       (repeats of an id are at-least-once and counted, never a new id).

Everything runs on loopback, in processes this module starts and stops itself."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "bench", ROOT, ROOT / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(1, str(_p))

import httpx  # noqa: E402
from crash_intake import Answer, Planned, check, plan  # noqa: E402
from harness import PG_ADMIN_URL, free_port, load_demo, machine, wait_ready  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tests.notify.sink import HttpSink  # noqa: E402
from tests.workorders_scale.procs import Child, Processes, child_env  # noqa: E402

RESULTS = ROOT / "faults" / "results"
PG_URL = os.environ.get("WATERGRID_FAULTS_PG_URL", PG_ADMIN_URL)

# Names the scenarios take from here though this module does not use them itself.
__all__ = [
    "Answer",
    "Child",
    "HttpSink",
    "Planned",
    "Processes",
    "check",
    "free_port",
    "plan",
]


# -- results ----------------------------------------------------------------------------------


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {
        "scenario": name,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        **data,
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def report(name: str, result: dict[str, Any]) -> int:
    """Print a scenario's result, save it, and give the exit code its `ok` calls for."""
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"saved {save(name, result)}")
    return 0 if result["ok"] else 1


# -- databases --------------------------------------------------------------------------------

_templates: dict[str, str] = {}
_cache_dir: Path | None = None


def _cache() -> Path:
    """Where the SQLite template lives for the life of this process (a scenario's own
    directory goes away with the scenario)."""
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="wg-faults-cache-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
        atexit.register(drop_templates)
    return _cache_dir


def _pg_admin() -> Any:
    # PG_URL read at call time: a test points it at its own server.
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def _demo_template(backend: str) -> str:
    """The demo loaded once per process into a template: a SQLite file, or a PostgreSQL
    database that CREATE DATABASE … TEMPLATE copies in a second."""
    if backend in _templates:
        return _templates[backend]
    if backend == "sqlite":
        path = _cache() / f"demo-template-{uuid.uuid4().hex[:6]}.db"
        load_demo(f"sqlite:///{path}")
        _templates[backend] = str(path)
    else:
        _cache()  # registers the template's removal at exit
        name = f"wg_faults_tpl_{uuid.uuid4().hex[:8]}"
        admin = _pg_admin()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        load_demo(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
        _templates[backend] = name
    return _templates[backend]


def drop_templates() -> None:
    for backend, ref in list(_templates.items()):
        if backend == "postgresql":
            admin = _pg_admin()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{ref}" WITH (FORCE)'))
            admin.dispose()
        else:
            Path(ref).unlink(missing_ok=True)
        del _templates[backend]


@contextmanager
def demo_database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh database holding the Guangming demo; dropped afterwards (PostgreSQL)."""
    tpl = _demo_template(backend)
    if backend == "sqlite":
        path = tmp / f"faults-{uuid.uuid4().hex[:6]}.db"
        # Through SQLite's backup API: the template's latest pages may still be in its WAL
        # file, which a plain file copy would leave behind.
        src, dst = sqlite3.connect(tpl), sqlite3.connect(path)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        yield f"sqlite:///{path}"
        return
    name = f"wg_faults_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pg_reachable(url: str | None = None) -> str:
    """'' when PostgreSQL answers, else why not."""
    url = url or PG_URL
    try:
        eng = create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}"[:300]
    return ""


def route_people_to(url: str, sink_url: str) -> int:
    """Every active person's external channel becomes a webhook into the sink, so each
    notification an order makes goes out over HTTP and can be counted there."""
    from watergrid.db import begin_write, make_engine
    from watergrid.notify import service as notify
    from watergrid.org.models import Person

    engine = make_engine(url)
    try:
        with Session(engine) as db:
            begin_write(db)
            people = list(db.scalars(select(Person.id).where(Person.active.is_(True))))
            for pid in people:
                notify.set_preference(
                    db, person_id=pid, channel="webhook", address=f"{sink_url}/p/{pid}"
                )
            db.commit()
    finally:
        engine.dispose()
    return len(people)


# -- processes --------------------------------------------------------------------------------


def app_env(url: str, **extra: str) -> dict[str, str]:
    settings = {
        "WATERGRID_DATABASE_URL": url,
        "WATERGRID_EMBEDDED_WORKER": "false",
        "WATERGRID_LOG_LEVEL": "WARNING",
        # Every request of a scenario comes from one loopback address; the public intake's
        # per-address limit would answer most of them 429, which is not the fault tested.
        "WATERGRID_INTAKE_RATE_PER_MINUTE": "0",
    }
    return child_env(**(settings | extra))


def notify_env(sink: HttpSink, **extra: str) -> dict[str, str]:
    """Delivery settings of a worker in a fault scenario: SMS into the sink too, and short
    timeouts, leases and backoff so a scenario's retries fit in seconds, not hours."""
    base = {
        "WATERGRID_NOTIFY_SMS_URL": f"{sink.url}/sms",
        "WATERGRID_NOTIFY_HTTP_TIMEOUT_S": "2",
        # Must exceed 1.5 × timeout + 5 s (the settings refuse less).
        "WATERGRID_NOTIFY_LEASE_S": "9",
        "WATERGRID_NOTIFY_BACKOFF_BASE_S": "0.5",
        "WATERGRID_NOTIFY_BACKOFF_CAP_S": "2",
        "WATERGRID_NOTIFY_MAX_ATTEMPTS": "100",
        "WATERGRID_NOTIFY_POLL_INTERVAL_S": "0.2",
        "WATERGRID_NOTIFY_BATCH_SIZE": "20",
    }
    return base | extra


def start_server(
    procs: Processes,
    name: str,
    env: dict[str, str],
    *,
    port: int,
    workers: int,
    log: Path,
    timeout_s: float = 90.0,
) -> Child:
    """`watergrid serve` in a process group of its own, ready when /readyz answers 200."""
    argv = [
        sys.executable,
        "-m",
        "watergrid.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    child = procs.start(name, argv, env=env, log=log)
    if not wait_ready(f"http://127.0.0.1:{port}", alive=child.alive, timeout_s=timeout_s):
        procs.kill(child)
        raise RuntimeError(f"{name} did not become ready:\n{child.tail()}")
    return child


def start_worker(
    procs: Processes, name: str, env: dict[str, str], *, loops: str, log: Path
) -> Child:
    argv = [
        sys.executable,
        "-m",
        "watergrid.cli",
        "worker",
        "--worker-id",
        name,
        "--loops",
        loops,
    ]
    return procs.start(name, argv, env=env, log=log)


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def app_workers(supervisor_pid: int) -> list[int]:
    """The uvicorn worker processes under a supervisor: its spawned children, not the
    multiprocessing resource tracker that sits beside them."""
    out = []
    for pid in children_of(supervisor_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(pid)
    return out


def quiet_sink() -> HttpSink:
    """The local HTTP sink, without the traceback http.server prints when a client resets
    its connection: a killed worker or a timed-out request does exactly that here."""
    sink = HttpSink()
    sink._server.handle_error = lambda *_a: None  # type: ignore[method-assign]
    return sink


def exit_on_sigterm() -> None:
    """SIGTERM ends a scenario through its `finally` blocks, which stop the servers, workers,
    brokers and clusters it started; without this they would outlive it."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def wait_until(cond: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every_s)
    return cond()


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"wg-faults-{prefix}-") as tmp:
        yield Path(tmp)


# -- the client -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a burst of retrying clients saw: every try's outcome, each 5xx with or without
    Retry-After, and the final answer per key."""

    outcomes: Counter[str] = field(default_factory=Counter)
    without_retry_after: Counter[str] = field(default_factory=Counter)
    answers: dict[str, Answer] = field(default_factory=dict)
    gave_up: list[str] = field(default_factory=list)

    def acknowledged(self) -> int:
        return sum(a.ok for a in self.answers.values())

    def summary(self) -> dict[str, Any]:
        return {
            "submitted": len(self.answers),
            "acknowledged": self.acknowledged(),
            "tries": sum(self.outcomes.values()),
            "outcomes": dict(sorted(self.outcomes.items())),
            "5xx_without_retry_after": dict(self.without_retry_after),
            "gave_up": len(self.gave_up),
        }


async def _burst(
    bases: list[str],
    items: list[Planned],
    *,
    concurrency: int,
    give_up_s: float,
    deadline: float,
    tally: Tally,
    on_answer: Callable[[Answer], None] | None,
) -> None:
    todo = iter(enumerate(items))
    timeout = httpx.Timeout(30.0, connect=5.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one_client() -> None:
            for i, p in todo:
                if time.monotonic() > deadline:
                    tally.gave_up.append(p.key)
                    continue
                # Requests alternate between the servers (two processes on one database).
                base = bases[i % len(bases)]
                started = time.monotonic()
                attempt = 0
                while True:
                    attempt += 1
                    wait = min(2.0, 0.1 * 2**attempt)
                    try:
                        r = await client.post(
                            f"{base}/api/v1/orders",
                            content=p.body,
                            headers={"Content-Type": "application/json", "Idempotency-Key": p.key},
                        )
                        try:
                            body = r.json()
                        except ValueError:
                            body = None
                        a = Answer(r.status_code, body if isinstance(body, dict) else None)
                        tally.outcomes[str(r.status_code)] += 1
                        if r.status_code >= 500:
                            ra = r.headers.get("retry-after")
                            if ra is None:
                                tally.without_retry_after[str(r.status_code)] += 1
                            else:
                                wait = max(wait, min(float(ra), 5.0))
                    except httpx.HTTPError as exc:
                        a = Answer(None, error=type(exc).__name__)
                        tally.outcomes[a.error] += 1
                    tally.answers[p.key] = a
                    if on_answer is not None:
                        on_answer(a)
                    if a.status is not None and a.status < 500:
                        break
                    if time.monotonic() - started > give_up_s or time.monotonic() > deadline:
                        tally.gave_up.append(p.key)
                        break
                    # The same key and body again, as a client whose request failed does.
                    await asyncio.sleep(wait)

        await asyncio.gather(*(one_client() for _ in range(concurrency)))


def burst(
    bases: list[str],
    items: list[Planned],
    *,
    concurrency: int = 16,
    give_up_s: float = 45.0,
    total_s: float = 120.0,
    on_answer: Callable[[Answer], None] | None = None,
) -> Tally:
    """Send every create, retrying each (same Idempotency-Key, same body) on no answer or a
    5xx until it is answered below 500 or `give_up_s` passed; a 503's Retry-After is
    honoured. After `total_s` the burst stops: what is left counts as given up, so a broken
    server fails the scenario in minutes rather than retrying for an hour. Runs in a thread
    of its own: a caller (a test) may already run an event loop."""
    import concurrent.futures

    tally = Tally()

    def run() -> None:
        asyncio.run(
            _burst(
                bases,
                items,
                concurrency=concurrency,
                give_up_s=give_up_s,
                deadline=time.monotonic() + total_s,
                tally=tally,
                on_answer=on_answer,
            )
        )

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()
    return tally


def submitted_vs_stored(
    url: str, items: list[Planned], burst_tally: Tally, replay: Tally
) -> dict[str, Any]:
    """submitted = stored, through crash_intake's check: one order per key, the number the
    first acknowledgement gave, nothing partial, and the replay answering 200 with it."""
    result = check(url, items, burst_tally.answers, replay.answers)
    v = result["violations"]
    return {
        "submitted": len(items),
        "stored": result["orders"],
        "violations": {k: x[:10] for k, x in v.items()},
        "violation_counts": {k: len(x) for k, x in v.items()},
        "ok": result["orders"] == len(items) and not any(v.values()),
    }


# -- due = delivered ---------------------------------------------------------------------------


def open_outbox(url: str) -> dict[str, int]:
    """External outbox messages by state."""
    from watergrid.notify.models import OutboxMessage

    engine = create_engine(url)
    try:
        with Session(engine) as db:
            rows = db.execute(
                select(OutboxMessage.state, func.count())
                .where(OutboxMessage.channel != "inapp")
                .group_by(OutboxMessage.state)
            ).all()
    finally:
        engine.dispose()
    return {str(s): int(n) for s, n in rows}


def wait_delivered(url: str, timeout_s: float) -> bool:
    def done() -> bool:
        states = open_outbox(url)
        return not states.get("pending") and not states.get("sending")

    return wait_until(done, timeout_s, every_s=0.5)


def due_vs_delivered(url: str, received: Counter[str]) -> dict[str, Any]:
    """due = delivered, counted at the sink by message id. `received` counts the requests
    the sink accepted per message id."""
    from watergrid.notify.models import OutboxMessage

    engine = create_engine(url)
    try:
        with Session(engine) as db:
            due = {
                m: s
                for m, s in db.execute(
                    select(OutboxMessage.message_id, OutboxMessage.state).where(
                        OutboxMessage.channel != "inapp"
                    )
                ).all()
            }
    finally:
        engine.dispose()
    delivered = set(due) & set(received)
    missing = sorted(set(due) - delivered)
    unknown = sorted(set(received) - set(due))
    states = Counter(due.values())
    return {
        "due": len(due),
        "delivered": len(delivered),
        "missing": missing[:10],
        "missing_count": len(missing),
        "unknown_ids": len(unknown),
        "requests_accepted": sum(received.values()),
        # At-least-once repeats: a second (third…) request under an id already received.
        "duplicates": sum(received.values()) - len(received),
        "ids_repeated": sum(1 for n in received.values() if n > 1),
        "outbox_states": dict(states),
        "ok": len(delivered) == len(due) and not unknown and set(states) <= {"sent"},
    }


def sink_counts(sink: HttpSink) -> Counter[str]:
    return Counter(m for m in sink.message_ids() if m)
