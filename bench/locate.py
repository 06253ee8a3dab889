"""Benchmark the point -> grid locator against a plain shapely reference.

    python bench/locate.py [--points N] [--out PATH]

Everything runs on one thread: BLAS/OpenMP pools are limited to one thread
before numpy loads, and neither the locator nor GEOS starts threads. The
process is not pinned to a CPU, so a busy machine shows up in the figures;
compare runs on an idle one. Exits non-zero unless the locator agrees with
shapely on every point.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402

try:
    import watergrid  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from watergrid.geo.demo_geometry import build_demo_areas  # noqa: E402
from watergrid.geo.locator import DEFAULT_CELLS_PER_SIDE, Locator  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "locate.json"
SINGLE_POINTS_MAX = 100_000  # pure-Python loop; more adds time, not accuracy
REPEATS = 3


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def shapely_reference(polygons: list, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.full(len(x), -1, dtype=np.int32)
    for i, poly in enumerate(polygons):
        out[shapely.contains_xy(poly, x, y) & (out < 0)] = i
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="batch points (default 1M)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result path")
    parser.add_argument("--seed", type=int, default=7, help="random point seed")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    areas = build_demo_areas()
    demo_s = time.perf_counter() - start
    grids = [(g.code, g.geometry) for g in areas.grids]
    zones = [(z.code, z.geometry) for z in areas.zones]
    start = time.perf_counter()
    locator = Locator.build(grids, zones)
    build_s = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    x0, y0, x1, y1 = areas.district.geometry.bounds
    x = rng.uniform(x0, x1, args.points)
    y = rng.uniform(y0, y1, args.points)
    n_single = min(args.points, SINGLE_POINTS_MAX)
    xs, ys = x[:n_single].tolist(), y[:n_single].tolist()

    lookup = locator.grid_index
    single_out: list[int] = []

    def run_single() -> None:
        single_out[:] = [lookup(a, b) for a, b in zip(xs, ys, strict=True)]

    single_s = best_of(run_single)
    batch_out = locator.grid_indices(x, y)
    batch_s = best_of(lambda: locator.grid_indices(x, y))

    polygons = [g for _, g in grids]
    for poly in polygons:
        shapely.prepare(poly)
    reference = shapely_reference(polygons, x, y)
    reference_s = best_of(lambda: shapely_reference(polygons, x, y), repeats=1)

    batch_agree = float(np.mean(batch_out == reference))
    single_agree = float(np.mean(np.array(single_out) == reference[:n_single]))
    result = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "threads": 1,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "shapely": shapely.__version__,
            "geos": ".".join(map(str, shapely.geos_version)),
            "platform": platform.platform(),
        },
        "setup": {
            "grids": len(grids),
            "zones": len(zones),
            "cells_per_side": DEFAULT_CELLS_PER_SIDE,
            "points_batch": args.points,
            "points_single": n_single,
            "points_inside_a_grid": int(np.count_nonzero(reference >= 0)),
            "demo_build_s": round(demo_s, 3),
            "locator_build_s": round(build_s, 3),
        },
        "single": {
            "us_per_lookup": round(single_s / n_single * 1e6, 3),
            "lookups_per_s": round(n_single / single_s),
        },
        "batch": {"points_per_s": round(args.points / batch_s)},
        "shapely_reference": {"points_per_s": round(args.points / reference_s)},
        "agreement": {"batch": batch_agree, "single": single_agree},
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if batch_agree != 1.0 or single_agree != 1.0:
        print("FAIL: locator disagrees with shapely", file=sys.stderr)
        return 1
    return 0


def print_table(r: dict) -> None:
    rows = [
        ("locator build", f"{r['setup']['locator_build_s']:.3f} s"),
        (
            "single lookup",
            f"{r['single']['us_per_lookup']:.3f} us ({r['single']['lookups_per_s']:,}/s)",
        ),
        ("batch", f"{r['batch']['points_per_s']:,} points/s"),
        ("shapely contains_xy", f"{r['shapely_reference']['points_per_s']:,} points/s"),
        ("agreement batch", f"{r['agreement']['batch']:.6%}"),
        ("agreement single", f"{r['agreement']['single']:.6%}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{r['machine']['cpu_model']} | Python {r['machine']['python']}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
