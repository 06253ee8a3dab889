"""The flood board, a one-page plan and a residents' service card in Chromium, against the
app serving a database prepared by live_prep.py (signals in force, calls in progress, crews
out, and a plan filled to every limit of the format).

A plan printed to PDF is exactly one A4 page — the fullest demo plan, and the plan at every
limit. Screenshots and PDFs go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_support import uvicorn_server
from tests.flood_response.live_prep import FULLEST_CODE

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "demo1234"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def flood_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flood-live") / "live.db"


@pytest.fixture(scope="module")
def flood_server(flood_db: Path) -> Iterator[str]:
    tmp = flood_db.parent
    url = f"sqlite:///{flood_db}"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        WATERGRID_DATABASE_URL=url,
        WATERGRID_ASSETS_DIR=str(ROOT / "node_modules"),
        WATERGRID_PUBLIC_BASE_URL=base,
        WATERGRID_TILE_URL="",
        WATERGRID_LOG_JSON="false",
        WATERGRID_LOG_LEVEL="WARNING",
        # The picture must hold still while it is taken: no sweeper moving calls on.
        WATERGRID_EMBEDDED_WORKER="false",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")) if p
        ),
    )
    prep = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "live_prep.py"), url],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if prep.returncode != 0:
        pytest.fail(f"live_prep failed:\n{prep.stdout[-3000:]}\n{prep.stderr[-3000:]}")
    with uvicorn_server(env=env, cwd=tmp, port=port) as served:
        yield served


def login(page: Any, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def pdf_pages(data: bytes) -> int:
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True, check=True).stdout
        m = re.search(rb"^Pages:\s+(\d+)", out, re.M)
        if m:
            return int(m.group(1))
    return len(re.findall(rb"/Type\s*/Page(?!s)", data))


def save_pdf(page: Any, path: Path) -> int:
    page.emulate_media(media="print")
    data = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    page.emulate_media(media="screen")
    path.write_bytes(data)
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "80",
                "-singlefile",
                str(path),
                str(path.with_suffix("")) + "-pdf",
            ],
            check=True,
        )
    return pdf_pages(data)


def _fullest_demo_plan(page: Any, base: str) -> str:
    """The demo plan with the most on it, by the size of its printed sheet."""
    codes = page.evaluate(
        "async () => (await (await fetch('/api/v1/flood/plans')).json()).map(p => p.code)"
    )
    best, best_h = "", 0.0
    for code in codes:
        if code == FULLEST_CODE:
            continue
        page.goto(f"{base}/flood/plans/{code}")
        h = page.evaluate("document.querySelector('.sheet').scrollHeight")
        if h > best_h:
            best, best_h = code, h
    return best


def test_plans_print_on_exactly_one_a4_page(page: Any, flood_server: str, artifacts: Path) -> None:
    login(page, flood_server, "duty", "/flood/plans")
    fullest = _fullest_demo_plan(page, flood_server)
    for code, name in (
        (fullest, "flood-plan-fullest-demo"),
        (FULLEST_CODE, "flood-plan-at-limits"),
        ("YA-RES-GMSK", "flood-plan-reservoir"),
    ):
        page.goto(f"{flood_server}/flood/plans/{code}")
        assert page.locator(".sheet h1").inner_text()
        pages = save_pdf(page, artifacts / f"{name}.pdf")
        assert pages == 1, f"{code} printed on {pages} pages"
    # The check can fail: the same sheet with its content doubled does not fit.
    page.goto(f"{flood_server}/flood/plans/{FULLEST_CODE}")
    page.evaluate(
        "() => { const s = document.querySelector('.sh-levels'); s.after(s.cloneNode(true)); }"
    )
    assert save_pdf(page, artifacts / "flood-plan-overfull.pdf") > 1


def test_plan_page(page: Any, flood_server: str, artifacts: Path) -> None:
    login(page, flood_server, "duty", "/flood/plans/YA-SUB-440311002")
    sheet = page.locator(".sheet")
    assert sheet.locator("td[data-role=administrative] .sh-p").count() >= 1
    assert sheet.locator("tr[data-level]").count() == 3
    page.set_viewport_size({"width": 1100, "height": 1300})
    page.screenshot(path=str(artifacts / "flood-plan.png"), full_page=True)
    # On a phone the sheet reflows instead of scrolling sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(artifacts / "flood-plan-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})


def test_flood_board(page: Any, flood_server: str, artifacts: Path) -> None:
    login(page, flood_server, "duty", "/flood/board")
    page.locator("#fb-map[data-loaded='1']").wait_for()
    assert page.locator("#fb-map path.leaflet-interactive").count() >= 6  # subdistricts
    assert page.locator("#l-warn li").count() >= 4
    assert page.locator("#l-rounds li a").count() >= 1
    assert re.match(r"\d+/\d+", page.locator("#k-calls").inner_text())
    assert page.locator("#l-tasks li .st").count() >= 1
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "flood-board.png"))
    # A round's live board from the list.
    page.locator("#l-rounds li a").first.click()
    page.wait_for_url(re.compile(r".*/flood/rounds/\d+"))
    assert page.locator("#calls tbody tr").count() >= 1
    page.screenshot(path=str(artifacts / "flood-round.png"), full_page=True)


def test_service_card_and_its_qr_page(page: Any, flood_server: str, artifacts: Path) -> None:
    login(page, flood_server, "duty", "/flood/cards/W01")
    card = page.locator(".rc")
    assert card.locator("svg.qr").count() == 1
    assert card.locator(".rc-sig").count() == 3
    box = card.bounding_box()
    assert box and box["width"] > 500
    page.screenshot(path=str(artifacts / "flood-service-card.png"), full_page=True)
    assert save_pdf(page, artifacts / "flood-service-card.pdf") == 1
    target = card.locator(".rc-foot .u").inner_text()
    assert target.endswith("/f/W01")
    page.context.clear_cookies()
    page.goto(target)
    assert page.locator("h1").inner_text().startswith("楼村社区")
    assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", page.content())
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(artifacts / "flood-card-landing-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})


def test_answer_link_on_a_phone(
    page: Any, flood_server: str, artifacts: Path, flood_db: Path
) -> None:
    """The answer page a called person opens from the message: no sign-in, one tap."""
    import sqlite3

    with sqlite3.connect(flood_db) as con:
        link = con.execute(
            "SELECT o.link FROM outbox o JOIN flood_call c ON c.id = CAST(o.subject_id AS INTEGER) "
            "WHERE o.subject_type = 'flood_call' AND o.channel = 'inapp' AND c.state = 'calling' "
            "AND o.person_id = c.person_id ORDER BY o.id LIMIT 1"
        ).fetchone()[0]
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(link)
    button = page.locator("form button.btn")
    assert button.is_visible()
    page.screenshot(path=str(artifacts / "flood-answer-phone.png"), full_page=True)
    button.click()
    assert page.locator(".ok").inner_text().startswith("已应答")
    page.set_viewport_size({"width": 1280, "height": 860})
