"""Exports reopen with openpyxl and carry the dashboard's figures; the API answers only
within the caller's scope; visits and the attack map keep their rules."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.kpi.helpers import T0, D, H, act, dispatched, new_order, who

from watergrid.geo import service as geo_service
from watergrid.kpi import attack_map, service
from watergrid.kpi.schemas import MilestoneIn, TaskCreate

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def _some_orders(db: Session) -> None:
    a = dispatched(db, grid="W01")
    act(db, a, "respond", "watercorp", 1 * H, mode="on_site")
    act(db, a, "resolve", "watercorp", 1 * D, note="ok")
    b = dispatched(db, grid="W13")
    act(db, b, "respond", "watercorp", 3 * H, mode="on_site")
    dispatched(db, grid="W01", source="patrol", actor="grid01")
    c = new_order(db, grid="W13")
    act(db, c, "reject", "watercorp", 1 * H, reason="invalid", note="no")


def test_kpi_workbook_reopens_with_the_dashboard_figures(client: TestClient, db: Session) -> None:
    _some_orders(db)
    h = login_token(client, "leader")
    r = client.get("/api/v1/kpi/export.xlsx", params={"by": ["all", "grid"], **MARCH}, headers=h)
    assert r.status_code == 200, r.text
    wb = load_workbook(io.BytesIO(r.content), read_only=True)
    assert wb.sheetnames == ["全区", "社区水务网格"]
    header = [c.value for c in next(wb["全区"].iter_rows(min_row=2, max_row=2))]
    row = [c.value for c in next(wb["全区"].iter_rows(min_row=3, max_row=3))]
    got = dict(zip(header, row, strict=True))
    now = datetime.now().astimezone()
    f = service.figures(
        db, dim="all", key="", start=date(2026, 3, 1), end=date(2026, 3, 31), now=now
    )
    assert got["响应及时率"] == f.value("response_rate") == 0.5
    assert got["处置及时率"] == f.value("handling_rate")
    assert got["问题自查率"] == f.value("self_discovery_rate")
    assert got["受理量"] == 4 and got["应响应数"] == f.r_due
    # The same numbers on the dashboard's API.
    api = client.get("/api/v1/kpi/figures", params={**MARCH}, headers=h).json()
    assert api["values"]["response_rate"] == got["响应及时率"]
    assert api["counts"]["response_due"] == got["应响应数"]
    grids = {row[0].value: row for row in wb["社区水务网格"].iter_rows(min_row=3)}
    assert set(grids) == {g.code for g in geo_service.get_all(db, kind="grid")}
    w01 = dict(zip(header, [c.value for c in grids["W01"]], strict=True))
    assert w01["受理量"] == 2 and w01["有效工单"] == 2 and w01["自查发现"] == 1


def test_orders_export_lists_the_orders_behind_a_figure(client: TestClient, db: Session) -> None:
    _some_orders(db)
    h = login_token(client, "leader")
    params = {"metric": "response_rate", "outcome": "missed", **MARCH}
    r = client.get("/kpi/orders.xlsx", params=params, headers=h)
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content), read_only=True).active
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    drill = client.get("/api/v1/kpi/orders", params=params, headers=h).json()
    assert [x[0] for x in rows] == [i["number"] for i in drill["items"]]
    assert all(x[8] == "超时" for x in rows) and drill["total"] == len(rows) >= 1
    csv = client.get("/kpi/orders.csv", params=params, headers=h)
    assert csv.status_code == 200 and csv.content.startswith("\ufeff".encode())
    assert csv.text.count("\n") == len(rows) + 1


WRITE_100K = """
import resource, sys
from datetime import datetime, timedelta
from watergrid.kpi import exports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = datetime(2026, 3, 2, 9, 0)
rows = ([f"GM-2026-{i:06d}", "closed", "排水管渠堵塞", "巡查自查", "楼村社区", "排水管理科",
         t, t + timedelta(hours=2), "按时", 1.5, 5] for i in range(100_000))
wb = exports.new_workbook()
n = exports.write_orders_sheet(wb, rows)
path = exports.save_to_temp(wb)
size = sum(len(c) for c in exports.iter_file(path))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(n, size, after - before)
"""


def test_writing_100000_orders_stays_small_in_memory() -> None:
    """In a child process, so the peak resident size measured is the export's alone."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", WRITE_100K], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    n, size, grew_kb = (int(x) for x in out[-3:])
    assert n == 100_000 and size > 1_000_000
    # A list of 100,000 rows of cells would take hundreds of MB; streaming keeps it small.
    assert grew_kb < 60 * 1024, f"resident size grew by {grew_kb / 1024:.0f} MB"


def test_scope_a_grid_member_sees_their_grid_only(client: TestClient, db: Session) -> None:
    _some_orders(db)
    h = login_token(client, "grid01")
    own = client.get("/api/v1/kpi/figures", params=MARCH, headers=h)
    assert own.status_code == 200 and own.json()["scope"]["code"] == "W01"
    assert own.json()["counts"]["created"] == 2
    w13 = geo_service.get_or_404(db, code="W13")
    other = client.get(
        "/api/v1/kpi/figures", params={"dim": "grid", "key": str(w13.id), **MARCH}, headers=h
    )
    assert other.status_code == 403
    assert (
        client.get("/api/v1/kpi/figures", params={"dim": "all", **MARCH}, headers=h).status_code
        == 403
    )
    ranking = client.get("/api/v1/kpi/rankings", params={"by": "grid", **MARCH}, headers=h).json()
    assert [r["code"] for r in ranking] == ["W01"]
    drill = client.get(
        "/api/v1/kpi/orders",
        params={"metric": "volume", "dim": "grid", "key": str(w13.id), **MARCH},
        headers=h,
    )
    assert drill.status_code == 403


def test_scope_chain_leader_and_department(client: TestClient, db: Session) -> None:
    hc = login_token(client, "chain1")
    got = client.get("/api/v1/kpi/figures", params=MARCH, headers=hc).json()
    assert got["scope"]["dim"] == "zone" and got["scope"]["code"] == "Z01"
    zones = client.get("/api/v1/kpi/rankings", params={"by": "zone", **MARCH}, headers=hc).json()
    assert [z["code"] for z in zones] == ["Z01"]
    hd = login_token(client, "drainage")
    got = client.get("/api/v1/kpi/figures", params=MARCH, headers=hd).json()
    assert got["scope"]["dim"] == "department" and got["scope"]["code"] == "DRAINAGE"
    deps = client.get(
        "/api/v1/kpi/rankings", params={"by": "department", **MARCH}, headers=hd
    ).json()
    assert [d["code"] for d in deps] == ["DRAINAGE"]
    hl = login_token(client, "leader")
    deps = client.get(
        "/api/v1/kpi/rankings", params={"by": "department", **MARCH}, headers=hl
    ).json()
    assert len(deps) > 5
    assert (
        client.get("/api/v1/kpi/figures", params={"period": "nonsense"}, headers=hl).status_code
        == 422
    )
    assert (
        client.get(
            "/api/v1/kpi/figures", params={"from": "2026-03-31", "to": "2026-03-01"}, headers=hl
        ).json()["error"]["code"]
        == "bad_period"
    )


def test_visits_are_recorded_counted_and_checked(client: TestClient, db: Session) -> None:
    z01 = geo_service.get_or_404(db, code="Z01")
    grid_id = min(geo_service.area_links(db).zone_grids[z01.id])
    grid = next(g.code for g in geo_service.get_all(db, kind="grid") if g.id == grid_id)
    oid = new_order(db, grid=grid)
    from watergrid.workorders.models import WorkOrder

    number = db.get(WorkOrder, oid).number  # type: ignore[union-attr]
    h = login_token(client, "chain1")
    today = date.today()
    bad = client.post(
        "/api/v1/kpi/visits",
        headers=h,
        json={
            "visit_date": (today + timedelta(days=2)).isoformat(),
            "grid_code": "W99",
            "issues": [{"summary": "x", "order_number": "GM-1999-000001"}],
        },
    )
    assert bad.status_code == 422
    fields = {f["field"] for f in bad.json()["error"]["fields"]}
    assert {"visit_date", "grid_code", "issues.0.order_number"} <= fields
    ok = client.post(
        "/api/v1/kpi/visits",
        headers=h,
        json={
            "visit_date": today.isoformat(),
            "grid_code": grid,
            "findings": "旧村雨污分流督导",
            "issues": [
                {"summary": "督促疏通", "order_number": number, "link": "moved"},
                {"summary": "协调物业增设挡水板"},
            ],
        },
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["issues"][0]["order_number"] == number
    counts = client.get("/api/v1/kpi/visits/counts", params={"by": "zone"}, headers=h).json()
    assert counts[0]["key"] == "Z01" and counts[0]["visits"] >= 1 and counts[0]["issues"] >= 2
    # A chain leader records visits to the grids of their zone only; a grid member none.
    outside = next(
        g.code
        for g in geo_service.get_all(db, kind="grid")
        if g.id not in geo_service.area_links(db).zone_grids[z01.id]
    )
    assert (
        client.post(
            "/api/v1/kpi/visits",
            headers=h,
            json={"visit_date": today.isoformat(), "grid_code": outside},
        ).status_code
        == 403
    )
    hg = login_token(client, "grid01")
    assert (
        client.post(
            "/api/v1/kpi/visits",
            headers=hg,
            json={"visit_date": today.isoformat(), "grid_code": "W01"},
        ).status_code
        == 403
    )


def test_attack_map_status_from_milestones(db: Session) -> None:
    today = date(2026, 6, 10)
    now = datetime(2026, 6, 10, 2, 0).astimezone()
    t = attack_map.create_task(
        db,
        now=now,
        data=TaskCreate(
            year=2026,
            domain="flood",
            title="积水点整治",
            milestones=[
                MilestoneIn(title="台账", due_date=date(2026, 3, 1), weight=1),
                MilestoneIn(title="整治", due_date=date(2026, 6, 15), weight=3),
                MilestoneIn(title="总结", due_date=date(2026, 11, 30), weight=1),
            ],
        ),
    )
    assert attack_map.read(db, task_id=t.id, today=today).status == "late"
    leader = who(db, "leader")
    from watergrid.kpi.schemas import MilestoneDone

    m = t.milestones
    attack_map.complete_milestone(
        db,
        milestone_id=m[0].id,
        principal=leader,
        today=today,
        data=MilestoneDone(done_date=date(2026, 2, 27), evidence="台账"),
    )
    r = attack_map.read(db, task_id=t.id, today=today)
    assert (r.status, r.progress) == ("at_risk", 0.2)  # the next one falls due in 5 days
    attack_map.complete_milestone(
        db,
        milestone_id=m[1].id,
        principal=leader,
        today=today,
        data=MilestoneDone(done_date=date(2026, 6, 9), evidence="验收"),
    )
    r = attack_map.read(db, task_id=t.id, today=today)
    assert (r.status, r.progress) == ("on_track", 0.8)
    # Only the owner, the team or a leader keeps it up to date; anyone eligible may claim it.
    chain = who(db, "chain1")
    claimed = attack_map.claim(db, task_id=t.id, principal=chain, now=now)
    assert claimed.owner_name
    assert now > T0


def test_drill_down_totals_from_rollups_match_a_count_of_the_orders(db: Session) -> None:
    from sqlalchemy import func, select

    from watergrid.kpi.definitions import METRICS
    from watergrid.kpi.models import OrderFact

    _some_orders(db)
    now = T0 + 3 * D
    start, end = date(2026, 3, 1), date(2026, 3, 31)
    w01 = str(geo_service.get_or_404(db, code="W01").id)
    for dim, key in (("all", ""), ("grid", w01)):
        for metric in METRICS:
            for outcome in service.DRILL_OUTCOMES:
                where = service.drill_where(
                    metric=metric, outcome=outcome, dim=dim, key=key, start=start, end=end, now=now
                )
                counted = db.scalar(select(func.count()).select_from(OrderFact).where(where))
                _, total = service.drill(
                    db,
                    metric=metric,
                    outcome=outcome,
                    dim=dim,
                    key=key,
                    start=start,
                    end=end,
                    now=now,
                )
                assert total == counted, (dim, metric, outcome)
