"""Intake throughput and latency, against a server in its own processes.

For each backend (SQLite, PostgreSQL): a fresh database with the Guangming demo, uvicorn
with 2 workers, then
  1. the floor: a bare single-row INSERT … RETURNING endpoint, closed loop;
  2. full intake (validation, locate, routing, duplicate search, deadlines, history,
     outbox, idempotency) closed loop: sustained creates per second;
  3. full intake at a fixed offered rate (default 300/s): p50/p95/p99 latency.
Afterwards the orders are counted: every 2xx must be exactly one order.

    python bench/intake.py [--backend sqlite|postgresql|both] [--duration 15] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import uuid
from pathlib import Path

from shapely.geometry import Point, shape
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).parent))
from harness import fresh_database, load_demo, save, serve  # noqa: E402
from loadgen import Request, closed_loop, open_loop  # noqa: E402

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


def run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    points = inside_points(2000)
    with fresh_database(backend, tmp) as url:
        load_demo(url)
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text(FLOOR_TABLE_DDL[backend]))
        with serve(url, workers=args.workers, WATERGRID_BENCH_ROUTES="true") as srv:
            asyncio.run(closed_loop(srv.base, floor_maker, concurrency=8, duration_s=2))  # warm
            floor = asyncio.run(
                closed_loop(srv.base, floor_maker, concurrency=args.concurrency,
                            duration_s=args.duration)
            )
            run = uuid.uuid4().hex[:6]
            full = asyncio.run(
                closed_loop(srv.base, order_maker(points, run + "c"),
                            concurrency=args.concurrency, duration_s=args.duration)
            )
            paced = asyncio.run(
                open_loop(srv.base, order_maker(points, run + "r"), rate=args.rate,
                          duration_s=args.duration)
            )
        with eng.connect() as c:
            stored = c.execute(
                text("SELECT count(*) FROM work_order WHERE description LIKE :p"),
                {"p": f"%压测 {run}%"},
            ).scalar_one()
        eng.dispose()
    acknowledged = full.ok() + paced.ok()
    ratio = full.summary()["ok_per_s"] / max(floor.summary()["ok_per_s"], 1)  # type: ignore[operator]
    return {
        "floor_insert": floor.summary(),
        "intake_max": full.summary(),
        "intake_at_rate": {"offered_per_s": args.rate, **paced.summary()},
        "intake_vs_floor": round(ratio, 3),
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
