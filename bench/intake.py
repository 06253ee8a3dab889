"""Intake throughput and latency, against a server in its own processes.

For each backend (SQLite, PostgreSQL): a fresh database with the Guangming demo, uvicorn
with 2 workers, then
  1. the floor: a bare single-row INSERT … RETURNING endpoint, closed loop;
  2. full intake (validation, locate, routing, duplicate search, deadlines, history,
     outbox, idempotency) closed loop: sustained creates per second;
  3. full intake at a fixed offered rate (default 300/s): p50/p95/p99 latency.
Afterwards the orders are counted: every 2xx must be exactly one order.

Each phase starts with ANALYZE (see _analyze) and records the load average before and after
it, the CPU seconds the server's processes and this client used, so that a figure taken on
a busy machine can be told from one taken on a quiet one (docs/performance.md), and the
number and mean size of intake's batches (workorders.batching). Both intake phases follow a short
warm-up (its orders are counted too), so that per-process caches, compiled statements and
server-side prepared statements are in place before anything is measured. The client runs
on uvloop when it is installed: it shares the cores with the server it measures.

    python bench/intake.py [--backend sqlite|postgresql|both] [--duration 15] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
from shapely.geometry import Point
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).parent))
from harness import Server, fresh_database, load_demo, save, serve  # noqa: E402
from loadgen import Request, Result, closed_loop, open_loop  # noqa: E402

from watergrid.geo.demo_geometry import build_demo_areas  # noqa: E402
from watergrid.ops.bench_api import FLOOR_TABLE_DDL  # noqa: E402

GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0


def inside_points(n: int, seed: int = 1) -> list[tuple[float, float]]:
    district = build_demo_areas().district.geometry
    minx, miny, maxx, maxy = district.bounds
    rng = random.Random(seed)
    out: list[tuple[float, float]] = []
    while len(out) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if district.contains(Point(x, y)):
            out.append((round(x, 6), round(y, 6)))
    return out


def order_maker(points: list[tuple[float, float]], run: str):  # noqa: ANN201
    def make(i: int) -> Request:
        lon, lat = points[i % len(points)]
        body = json.dumps(
            {
                "category_code": "drainage.blocked_drain",
                "description": f"雨水口堵塞，路面积水（压测 {run}-{i}）",
                "lon": lon,
                "lat": lat,
                "source": "api",
            },
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"{run}-{i}"}
        return ("POST", "/api/v1/orders", headers, body)

    return make


def floor_maker(i: int) -> Request:
    return ("POST", "/bench/floor", {"Content-Type": "application/json"}, b'{"n": %d}' % i)


def _run(coro: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _backend_pids(url: str) -> list[int]:
    """PostgreSQL server processes serving the bench database (none for SQLite)."""
    if not url.startswith("postgresql"):
        return []
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as c:
            return list(
                c.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
            )
    finally:
        eng.dispose()


def _analyze(url: str) -> None:
    """Fresh planner statistics before a phase. The bench's tables grow from empty to tens
    of thousands of rows within a minute, faster than autovacuum analyses them (at most
    once a minute per table), and statements prepared while they were nearly empty keep
    plans made for that: every report then scans what it should look up. A database in
    service has statistics for the size it has; so does each phase here."""
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    finally:
        eng.dispose()


def _batches(srv: Server) -> tuple[float, float]:
    """(transactions, reports) written by intake's queue so far, over every worker process
    (the server runs with PROMETHEUS_MULTIPROC_DIR)."""
    n = total = 0.0
    for line in httpx.get(f"{srv.base}/metrics", timeout=10).text.splitlines():
        if line.startswith("watergrid_intake_batch_size_count"):
            n += float(line.split()[-1])
        elif line.startswith("watergrid_intake_batch_size_sum"):
            total += float(line.split()[-1])
    return n, total


def measured(
    srv: Server, url: str, phase: Callable[[], Coroutine[Any, Any, Result]]
) -> tuple[Result, dict[str, Any]]:
    """Run one phase and note the machine around it: load averages, CPU of the app server,
    of the database server (PostgreSQL backends of this database) and of this client, in
    seconds and per successful request in milliseconds."""
    _analyze(url)
    batches0 = _batches(srv)
    pids = srv.pids()
    db_before = {pid: _cpu_s([pid]) for pid in _backend_pids(url)}
    load_before = os.getloadavg()
    server0, client0, t0 = _cpu_s(pids), time.process_time(), time.perf_counter()
    res = _run(phase())
    wall = time.perf_counter() - t0
    server_s, client_s = _cpu_s(pids) - server0, time.process_time() - client0
    # Backends that started during the phase count from zero.
    db_s = sum(_cpu_s([pid]) - db_before.get(pid, 0.0) for pid in _backend_pids(url))
    ok = max(res.ok(), 1)
    n, size = (a - b for a, b in zip(_batches(srv), batches0, strict=True))
    return res, {
        "intake_batches": int(n),
        "mean_batch_size": round(size / n, 2) if n else None,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "app_cpu_s": round(server_s, 2),
        "db_cpu_s": round(db_s, 2),
        "client_cpu_s": round(client_s, 2),
        "app_cpu_ms_per_ok": round(1000 * server_s / ok, 3),
        "db_cpu_ms_per_ok": round(1000 * db_s / ok, 3),
        "client_cpu_ms_per_ok": round(1000 * client_s / ok, 3),
        "wall_s": round(wall, 2),
    }


def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    points = inside_points(2000)
    with fresh_database(backend, tmp) as url:
        load_demo(url)
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text(FLOOR_TABLE_DDL[backend]))
        prom = tmp / f"prometheus-{backend}"
        prom.mkdir()
        with serve(
            url,
            workers=args.workers,
            WATERGRID_BENCH_ROUTES="true",
            PROMETHEUS_MULTIPROC_DIR=str(prom),
        ) as srv:
            _run(closed_loop(srv.base, floor_maker, concurrency=8, duration_s=2))  # warm
            floor, floor_env = measured(
                srv,
                url,
                lambda: closed_loop(
                    srv.base, floor_maker, concurrency=args.concurrency, duration_s=args.duration
                ),
            )
            run = uuid.uuid4().hex[:6]
            # As many connections as the measured phase, so that every worker process gets
            # some: the first report in a process builds its registry view (about a second).
            warm = _run(
                closed_loop(
                    srv.base,
                    order_maker(points, run + "w"),
                    concurrency=args.concurrency,
                    duration_s=3,
                )
            )
            full, full_env = measured(
                srv,
                url,
                lambda: closed_loop(
                    srv.base,
                    order_maker(points, run + "c"),
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                ),
            )
            paced, paced_env = measured(
                srv,
                url,
                lambda: open_loop(
                    srv.base,
                    order_maker(points, run + "r"),
                    rate=args.rate,
                    duration_s=args.duration,
                ),
            )
        with eng.connect() as c:
            stored = c.execute(
                text("SELECT count(*) FROM work_order WHERE description LIKE :p"),
                {"p": f"%压测 {run}%"},
            ).scalar_one()
        eng.dispose()
    acknowledged = warm.ok() + full.ok() + paced.ok()
    ratio = full.summary()["ok_per_s"] / max(floor.summary()["ok_per_s"], 1)  # type: ignore[operator]
    return {
        "floor_insert": {**floor.summary(), "machine": floor_env},
        "intake_max": {**full.summary(), "machine": full_env},
        "intake_at_rate": {"offered_per_s": args.rate, **paced.summary(), "machine": paced_env},
        "intake_vs_floor": round(ratio, 3),
        "warm_up_orders": warm.ok(),
        "acknowledged": acknowledged,
        "stored": stored,
        "lost": max(0, acknowledged - stored),
        "extra": max(0, stored - acknowledged),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            print(f"-- {b}", flush=True)
            results[b] = r = run_backend(b, args, Path(tmp))
            print(json.dumps(r, indent=2, ensure_ascii=False), flush=True)
    path = save(
        "intake",
        {
            "settings": vars(args),
            "goals": {"intake_vs_floor_postgresql": GOAL_RATIO, "p99_ms_at_rate": GOAL_P99_MS},
            "results": results,
        },
    )
    print(f"saved {path}")
    bad = [b for b, r in results.items() if r["lost"] or r["extra"]]  # type: ignore[index]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
