"""KPI dashboard queries on 1,000,000 work orders in PostgreSQL, with DuckDB as a reference.

    .venv/bin/python bench/kpi.py [--orders 1000000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Creates a throwaway database, loads the demo registry, writes a year of synthetic orders with
their events (kpi.history, COPY), rebuilds the KPI facts and rollups, then times each query
the dashboard and the rankings page run (median and p95 of repeated runs, warm cache). As a
reference, the same aggregations are computed straight from the fact rows twice: in
PostgreSQL (a full scan, what the rollups avoid) and in DuckDB over the same rows exported to
it. Prints a table and writes bench/results/kpi.json. Goal: every dashboard query <= 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results" / "kpi.json"
GOAL_MS = 200.0


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return {
        "median_ms": round(statistics.median(out), 2),
        "p95_ms": round(out[max(0, int(len(out) * 0.95) - 1)], 2),
        "max_ms": round(out[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument(
        "--pg",
        default=os.environ.get(
            "WATERGRID_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    ap.add_argument(
        "--database",
        help="time the queries again on a database kept by an earlier run (--keep): "
        "no generation, no rebuild; it is migrated to head first and kept afterwards",
    )
    args = ap.parse_args()

    os.environ.setdefault("WATERGRID_LOG_JSON", "false")
    import watergrid.models  # noqa: F401
    from watergrid import db as dbmod
    from watergrid.auth.principal import Principal
    from watergrid.db import Base, make_engine
    from watergrid.demo.load import load_demo
    from watergrid.kpi import history, rollups, service
    from watergrid.kpi.facts import local_day
    from watergrid.migrate import upgrade
    from watergrid.notify import models as _n  # noqa: F401
    from watergrid.timers import models as _t  # noqa: F401

    name = args.database or f"wg_bench_kpi_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    if args.database:
        args.keep = True
    else:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    report: dict[str, Any] = {
        "orders_requested": args.orders,
        "database": "postgresql",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "goal_ms": GOAL_MS,
        "when": datetime.now(UTC).isoformat(),
    }
    try:
        if args.database:
            upgrade(url)
            dbmod.configure(url)
            end = datetime.now(UTC)
            with dbmod.session_scope() as s:
                report["orders"] = s.execute(text("SELECT count(*) FROM work_order")).scalar_one()
                report["events"] = s.execute(text("SELECT count(*) FROM order_event")).scalar_one()
            report["reused_database"] = name
        else:
            upgrade(url)
            eng = make_engine(url)
            Base.metadata.create_all(eng)
            eng.dispose()
            dbmod.configure(url)
            with dbmod.session_scope() as s:
                load_demo(s)
            end = datetime.now(UTC)
            # Mean season weight ~1.19 (months, weekends, storm days): orders per day for
            # the target.
            per_day = args.orders / 365 / 1.19
            t0 = time.perf_counter()
            last = [t0]

            def progress(day: date, r: history.HistoryReport) -> None:
                if time.perf_counter() - last[0] > 30:
                    last[0] = time.perf_counter()
                    print(f"  … {day} {r.orders:,} orders, {r.events:,} events", flush=True)

            with dbmod.session_scope() as s:
                from watergrid.timers.calendar import seed_calendar
                from watergrid.workorders.categories import seed_categories

                seed_categories(s)
                seed_calendar(s, years=range(end.year - 1, end.year + 2))
            with dbmod.session_scope() as s:
                r = history.generate_orders(
                    s, days=365, end=end, per_day=per_day, progress=progress
                )
            report["orders"], report["events"] = r.orders, r.events
            report["generate_s"] = round(time.perf_counter() - t0, 1)
            print(
                f"generated {r.orders:,} orders, {r.events:,} events in {report['generate_s']} s",
                flush=True,
            )
            t1 = time.perf_counter()
            with dbmod.session_scope() as s:
                out = rollups.rebuild(s, now=end)
            report["rebuild_s"] = round(time.perf_counter() - t1, 1)
            report["rollup_rows"] = out["rollup_rows"]
            print(
                f"rebuilt {out['facts']:,} facts, {out['rollup_rows']:,} rollup rows "
                f"in {report['rebuild_s']} s",
                flush=True,
            )
        eng = dbmod.get_engine()
        with eng.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
            sizes = c.execute(
                text(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN "
                    "('work_order','order_event','kpi_order_fact','kpi_daily')"
                )
            ).all()
        report["table_bytes"] = {n: int(b) for n, b in sizes}

        leader = Principal(
            user_id=0,
            username="bench",
            display_name="bench",
            roles=frozenset({"bureau_leader"}),
            district=True,
        )
        now = end
        today = local_day(now)
        month = service.month_of(today)
        year12 = service.period_for(preset="12m", today=today)
        factory = dbmod.session_factory()

        with factory() as s:
            grid_key = s.execute(
                text(
                    "SELECT key FROM kpi_daily WHERE dim='grid' GROUP BY key "
                    "ORDER BY sum(created) DESC LIMIT 1"
                )
            ).scalar_one()
            service.names(s)  # the registry snapshot, built once per process in the app too

            queries: dict[str, Callable[[], Any]] = {
                "figures_district_month": lambda: service.figures(
                    s, dim="all", key="", start=month.start, end=month.end, now=now
                ),
                "figures_district_12m": lambda: service.figures(
                    s, dim="all", key="", start=year12.start, end=year12.end, now=now
                ),
                "figures_grid_12m": lambda: service.figures(
                    s, dim="grid", key=grid_key, start=year12.start, end=year12.end, now=now
                ),
                "trend_district_12m": lambda: service.trend(
                    s, dim="all", key="", start=year12.start, end=year12.end, now=now
                ),
                "trend_district_daily_month": lambda: service.trend(
                    s, dim="all", key="", start=month.start, end=month.end, now=now, step="day"
                ),
                "overdue_now_district": lambda: service.overdue_now(s, dim="all", key="", now=now),
                "ranking_grids_12m": lambda: service.ranking(
                    s,
                    dim="grid",
                    metric="response_rate",
                    start=year12.start,
                    end=year12.end,
                    now=now,
                    principal=leader,
                ),
                "ranking_departments_month": lambda: service.ranking(
                    s,
                    dim="department",
                    metric="handling_rate",
                    start=month.start,
                    end=month.end,
                    now=now,
                    principal=leader,
                ),
                "ranking_people_12m": lambda: service.ranking(
                    s,
                    dim="person",
                    metric="handling_rate",
                    start=year12.start,
                    end=year12.end,
                    now=now,
                    principal=leader,
                ),
                "drill_response_missed_12m_page1": lambda: service.drill(
                    s,
                    metric="response_rate",
                    outcome="missed",
                    dim="all",
                    key="",
                    start=year12.start,
                    end=year12.end,
                    now=now,
                    page=1,
                    page_size=50,
                ),
            }

            def dashboard_page() -> None:
                # What GET /kpi runs: figures now and before, the trend, overdue now.
                for k in ("figures_district_month", "trend_district_12m", "overdue_now_district"):
                    queries[k]()
                prev = service.previous_month(month)
                service.figures(s, dim="all", key="", start=prev.start, end=prev.end, now=now)

            queries["dashboard_page_total"] = dashboard_page
            results = {k: timed(fn, args.runs) for k, fn in queries.items()}

            # Reference: the same aggregations straight from the facts, in PostgreSQL.
            lo, hi = year12.start, year12.end
            late_r = "resp_outcome='missed' OR (resp_outcome='open' AND resp_due_at < :now)"
            late_h = "hand_outcome='missed' OR (hand_outcome='open' AND hand_due_at < :now)"
            due_r = f"resp_outcome='met' OR {late_r}"
            in_r = "resp_due_day BETWEEN :lo AND :hi"
            facts_sql = {
                "facts_district_12m": (
                    "SELECT count(*) FILTER (WHERE resp_outcome='met'), "
                    f"count(*) FILTER (WHERE {late_r}), "
                    "count(*) FILTER (WHERE hand_outcome='met'), "
                    f"count(*) FILTER (WHERE {late_h}) "
                    f"FROM kpi_order_fact WHERE {in_r} OR hand_due_day BETWEEN :lo AND :hi"
                ),
                "facts_ranking_grids_12m": (
                    "SELECT grid_id, count(*) FILTER (WHERE resp_outcome='met'), "
                    f"count(*) FILTER (WHERE {due_r}) "
                    f"FROM kpi_order_fact WHERE {in_r} GROUP BY grid_id"
                ),
                "facts_trend_12m": (
                    "SELECT date_trunc('month', resp_due_day), "
                    f"count(*) FILTER (WHERE resp_outcome='met'), count(*) FILTER (WHERE {due_r}) "
                    f"FROM kpi_order_fact WHERE {in_r} GROUP BY 1"
                ),
            }
            pg_ref = {
                k: timed(
                    lambda q=q: s.execute(text(q), {"lo": lo, "hi": hi, "now": now}).all(),
                    max(3, args.runs // 4),
                )
                for k, q in facts_sql.items()
            }
            check_pg = s.execute(
                text(facts_sql["facts_district_12m"]), {"lo": lo, "hi": hi, "now": now}
            ).one()

            # DuckDB over the same fact rows.
            duck: dict[str, Any] = {}
            try:
                import duckdb

                csv_path = Path(tempfile.mkdtemp()) / "facts.csv"
                raw = s.connection().connection.driver_connection
                cols = (
                    "order_id, grid_id, department_id, resp_outcome, resp_due_at, resp_due_day, "
                    "hand_outcome, hand_due_at, hand_due_day"
                )
                t2 = time.perf_counter()
                with (
                    raw.cursor() as cur,
                    open(csv_path, "wb") as fh,
                    cur.copy(
                        f"COPY (SELECT {cols} FROM kpi_order_fact) "
                        "TO STDOUT WITH (FORMAT csv, HEADER)"
                    ) as cp,
                ):
                    for chunk in cp:
                        fh.write(chunk)
                con = duckdb.connect()
                con.execute(f"CREATE TABLE f AS SELECT * FROM read_csv_auto('{csv_path}')")
                duck["load_s"] = round(time.perf_counter() - t2, 1)
                dq = {
                    k: q.replace(":now", "$now")
                    .replace(":lo", "$lo")
                    .replace(":hi", "$hi")
                    .replace("kpi_order_fact", "f")
                    for k, q in facts_sql.items()
                }
                params = {"now": now.replace(tzinfo=None), "lo": lo, "hi": hi}
                for k, q in dq.items():
                    duck[k] = timed(
                        lambda q=q: con.execute(q, params).fetchall(), max(3, args.runs // 4)
                    )
                check_duck = con.execute(dq["facts_district_12m"], params).fetchone()
                duck["same_counts_as_postgresql"] = tuple(check_duck) == tuple(check_pg)
                duck["duckdb_version"] = duckdb.__version__
                csv_path.unlink()
            except ImportError:
                duck["error"] = "duckdb not installed (pip install duckdb)"

            f12 = service.figures(s, dim="all", key="", start=lo, end=hi, now=now)
            report["check"] = {
                "rollups_response_met": f12["r_met"],
                "facts_response_met": int(check_pg[0]),
                "response_rate_12m": f12.value("response_rate"),
                "handling_rate_12m": f12.value("handling_rate"),
                "self_discovery_rate_12m": f12.value("self_discovery_rate"),
            }
        report["dashboard_queries"] = results
        report["postgresql_from_facts_reference"] = pg_ref
        report["duckdb_from_facts_reference"] = duck
        report["all_under_goal"] = all(v["p95_ms"] <= GOAL_MS for v in results.values())

        print(f"\n{'query':40} {'median ms':>10} {'p95 ms':>10}")
        for k, v in results.items():
            print(f"{k:40} {v['median_ms']:>10} {v['p95_ms']:>10}")
        print("\nreference: the same aggregations over the 1M fact rows")
        for k, v in pg_ref.items():
            dv = duck.get(k, {})
            print(
                f"{k:40} postgres {v['median_ms']:>9} ms   duckdb {dv.get('median_ms', '—'):>9} ms"
            )
        print(f"\nall dashboard queries within {GOAL_MS:.0f} ms (p95): {report['all_under_goal']}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
        print(f"written {args.out}")
    finally:
        dbmod.get_engine().dispose()
        if not args.keep:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
