"""Run the fault scenarios — all, or those named — print each one's figures, save them to
faults/results/<scenario>.json, and exit 1 if any count does not match (submitted ≠ stored,
due ≠ delivered, a fault that did not land, an error the client should not see).

    python faults/run.py                      # all five, about 3 minutes
    python faults/run.py sink_failing restart_mosquitto
    python faults/run.py --list

The demo database is built once per run and copied for each scenario. PostgreSQL at
WATERGRID_FAULTS_PG_URL (default: WATERGRID_BENCH_PG_URL, or postgres@127.0.0.1:5432/test)
holds the databases of kill_processes, restart_mosquitto and sink_failing; restart_postgres
brings a cluster of its own; sqlite_two_writers needs none."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults import (
    kill_processes,
    restart_mosquitto,
    restart_postgres,
    sink_failing,
    sqlite_two_writers,
)
from faults.common import exit_on_sigterm, save

SCENARIOS = {
    m.NAME: m
    for m in (
        kill_processes,
        restart_postgres,
        restart_mosquitto,
        sink_failing,
        sqlite_two_writers,
    )
}


def headline(r: dict[str, Any]) -> str:
    """The counts of a result in one line."""
    parts = []
    s = r.get("submitted_vs_stored")
    if s:
        parts.append(f"submitted {s['submitted']} = stored {s['stored']}")
    d = r.get("due_vs_delivered")
    if d:
        parts.append(f"due {d['due']} = delivered {d['delivered']} (duplicates {d['duplicates']})")
    if "published" in r:
        parts.append(f"published {r['published']} = stored {r['stored']}")
    if "error" in r:
        parts.append(f"error: {r['error'].splitlines()[-1]}")
    return "; ".join(parts)


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = ap.parse_args()
    if args.list:
        for name, m in SCENARIOS.items():
            print(f"{name:20} {(m.__doc__ or '').splitlines()[0]}")
        return 0
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}; try --list")
    names = args.names or list(SCENARIOS)
    summary: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    for name in names:
        print(f"-- {name}", flush=True)
        started = time.monotonic()
        try:
            r = SCENARIOS[name].run()
        except Exception:
            # A scenario that could not finish is a failed scenario; the others still run.
            r = {
                "ok": False,
                "error": traceback.format_exc(),
                "duration_s": round(time.monotonic() - started, 1),
            }
        path = save(name, r)
        print(json.dumps(r, indent=2, ensure_ascii=False), flush=True)
        summary[name] = {"ok": r["ok"], "duration_s": r.get("duration_s"), "counts": headline(r)}
        print(f"saved {path}", flush=True)
    print(f"\n{'scenario':20} {'ok':5} {'seconds':>8}  counts")
    for name, s in summary.items():
        print(f"{name:20} {s['ok']!s:5} {s['duration_s']!s:>8}  {s['counts']}")
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
