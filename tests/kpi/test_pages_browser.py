"""The KPI pages in Chromium: dashboard, rankings, field visits, the attack map, the monthly
report. The app runs for real over a demo database with a year of history made by
`python -m watergrid.kpi.cli history`. Screenshots go to test-artifacts/kpi-*.png."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tests.browser_support import uvicorn_server
from tests.web.conftest import ROOT, _free_port

pytestmark = pytest.mark.browser
PASSWORD = "demo1234"


@pytest.fixture(scope="session")
def kpi_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over a fresh demo database holding a year of history."""
    tmp = tmp_path_factory.mktemp("kpi-live")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp / 'live.db'}"
    env = dict(os.environ)
    env.update(
        WATERGRID_DATABASE_URL=url,
        WATERGRID_ASSETS_DIR=str(ROOT / "node_modules"),
        WATERGRID_PUBLIC_BASE_URL=base,
        WATERGRID_TILE_URL="",
        WATERGRID_LOG_JSON="false",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )

    def run(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            pytest.fail(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    # Migrate, then load the demo and a year of history.
    run("-c", "import sys; from watergrid.migrate import upgrade; upgrade(sys.argv[1])", url)
    run("-m", "watergrid.cli", "demo", "--no-migrate")
    run("-m", "watergrid.kpi.cli", "history", "--days", "365")
    with uvicorn_server(env=env, cwd=tmp, port=port) as served:
        yield served


def login(page: Any, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={quote(next_path, safe='/')}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}*")


def charts_drawn(page: Any) -> None:
    page.wait_for_function("document.body.dataset.chartsReady === 'true'")
    # ECharts draws on a canvas inside every chart box.
    n = page.eval_on_selector_all(
        "[data-role=chart]", "els => els.filter(e => e.querySelector('canvas')).length"
    )
    assert n == page.locator("[data-role=chart]").count() and n > 0


def test_dashboard_shows_rated_figures_trend_and_drills_down(
    page: Any, kpi_live: str, artifacts: Path
) -> None:
    login(page, kpi_live, "leader", "/kpi?period=12m")
    tiles = page.locator("[data-role=headline] .tile")
    assert tiles.count() == 5
    for metric in ("response_rate", "handling_rate", "self_discovery_rate"):
        tile = page.locator(f"[data-role=headline] [data-metric={metric}]")
        value = tile.locator("[data-role=value]").inner_text()
        assert value.endswith("%"), value
        assert tile.get_attribute("data-rag") in ("green", "amber", "red")
    charts_drawn(page)
    page.screenshot(path=str(artifacts / "kpi-dashboard.png"), full_page=True)
    # From the figure to the orders behind it.
    page.click("[data-role=headline] [data-metric=response_rate]")
    page.wait_for_url("**/kpi/orders?**")
    assert page.locator("[data-role=orders] tr").count() > 1
    page.click("[data-role=outcomes] >> text=超时")
    assert "outcome=missed" in page.url
    rows = page.locator("[data-role=orders] tr td:nth-child(7) .pill")
    assert rows.count() > 0 and all(t == "超时" for t in rows.all_inner_texts())
    page.screenshot(path=str(artifacts / "kpi-drill-down.png"), full_page=True)


def test_dashboard_on_a_phone_for_a_grid_member(page: Any, kpi_live: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, kpi_live, "grid01", "/kpi")
    assert "W01" in page.locator("h1").inner_text()
    charts_drawn(page)
    page.screenshot(path=str(artifacts / "kpi-dashboard-phone.png"), full_page=True)
    # Another grid's figures are not theirs to see.
    r = page.goto(f"{kpi_live}/kpi?dim=grid&key=999999")
    assert r is not None and r.status == 403


def test_rankings_of_grids_zones_and_departments(page: Any, kpi_live: str, artifacts: Path) -> None:
    login(page, kpi_live, "leader", "/kpi/rankings?by=grid&metric=response_rate&period=12m")
    table = page.locator("[data-role=ranking] tr[data-key]")
    assert table.count() == 37
    first = table.nth(0).locator("td").nth(0).inner_text()
    assert first == "1"
    charts_drawn(page)
    page.screenshot(path=str(artifacts / "kpi-rankings-grids.png"), full_page=True)
    for by, n in (("zone", 7), ("department", None)):
        page.goto(f"{kpi_live}/kpi/rankings?by={by}&metric=handling_rate&period=12m")
        rows = page.locator("[data-role=ranking] tr[data-key]")
        assert rows.count() == n if n else rows.count() > 3
    page.screenshot(path=str(artifacts / "kpi-rankings-departments.png"), full_page=True)


def test_recording_a_field_visit(page: Any, kpi_live: str, artifacts: Path) -> None:
    login(page, kpi_live, "chain1", "/kpi/visits?period=year")
    before = int(page.locator("[data-role=visits-total]").inner_text())
    issues_before = int(page.locator("[data-role=issues-total]").inner_text())
    assert before > 0
    form = page.locator("[data-role=visit-form]")
    form.locator("textarea[name=findings]").fill("楼村旧村雨污分流现场督导")
    form.locator("textarea[name=issues]").fill("协调街道城建办加快施工\n督促物业增设挡水板")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("[data-role=saved]")
    page.goto(f"{kpi_live}/kpi/visits?period=year")
    assert int(page.locator("[data-role=visits-total]").inner_text()) == before + 1
    assert int(page.locator("[data-role=issues-total]").inner_text()) == issues_before + 2
    assert page.locator("[data-role=visits] >> text=楼村旧村雨污分流现场督导").count() == 1
    charts_drawn(page)
    page.screenshot(path=str(artifacts / "kpi-visits.png"), full_page=True)


def test_attack_map_claim_and_milestone(page: Any, kpi_live: str, artifacts: Path) -> None:
    # A leader adds a task nobody has claimed yet, through the API.
    import json
    import urllib.request

    token_req = urllib.request.Request(
        f"{kpi_live}/api/v1/auth/token",
        method="POST",
        data=json.dumps({"username": "leader", "password": PASSWORD}).encode(),
        headers={"content-type": "application/json"},
    )
    token = json.load(urllib.request.urlopen(token_req))["access_token"]
    from datetime import date

    year = date.today().year
    body = {
        "year": year,
        "domain": "sponge",
        "title": "测试：海绵城市口袋公园试点",
        "target": "建成 3 处",
        "milestones": [
            {"title": "选址", "due_date": f"{year}-01-15"},
            {"title": "建成", "due_date": f"{year}-12-31"},
        ],
    }
    req = urllib.request.Request(
        f"{kpi_live}/api/v1/kpi/tasks",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    task = json.load(urllib.request.urlopen(req))
    assert task["status"] == "late" and task["owner_code"] is None

    login(page, kpi_live, "chain1", f"/kpi/attack-map?year={year}")
    assert page.locator("[data-domain]").count() >= 5
    card = page.locator(f"#task-{task['id']}")
    card.locator("[data-role=claim] button").click()
    page.wait_for_url(f"**/kpi/attack-map?year={year}*")
    card = page.locator(f"#task-{task['id']}")
    assert "揭榜人" in card.inner_text()
    first = card.locator("[data-milestone]").nth(0)
    first.locator("input[name=evidence]").fill("选址报告已上传")
    first.locator("button[type=submit]").click()
    page.wait_for_url(f"**/kpi/attack-map?year={year}*")
    card = page.locator(f"#task-{task['id']}")
    assert card.get_attribute("data-status") in ("at_risk", "on_track")
    assert "50%" in card.inner_text()
    page.screenshot(path=str(artifacts / "kpi-attack-map.png"), full_page=True)


def test_printable_monthly_report(page: Any, kpi_live: str, artifacts: Path) -> None:
    login(page, kpi_live, "leader", "/kpi/report")
    assert page.locator("[data-role=report] h1").inner_text().startswith("光明区水务局")
    assert page.locator("[data-role=report] table").count() >= 4
    page.screenshot(path=str(artifacts / "kpi-report.png"), full_page=True)
    pdf = page.pdf(format="A4", print_background=True)
    (artifacts / "kpi-report.pdf").write_bytes(pdf)
    assert pdf[:4] == b"%PDF"
