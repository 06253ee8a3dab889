"""The map, the grid and zone cards, the printable service card and the public QR landing,
driven in Chromium against the app running over the Guangming demo.

Each test leaves a screenshot (and the service card its printed PDF) in test-artifacts/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

PASSWORD = "demo1234"
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


# A point where the element matching the selector is what a click would hit.
FIND_POINT_ON = """sel => {
  const el = document.querySelector(sel);
  const r = el.getBoundingClientRect();
  for (let i = 1; i < 20; i++) for (let j = 1; j < 20; j++) {
    const x = r.left + r.width * i / 20, y = r.top + r.height * j / 20;
    if (document.elementFromPoint(x, y) === el) return [x, y];
  }
  throw new Error('no clickable point on ' + sel);
}"""


def login(page: Any, base: str, username: str, next_path: str = "/map") -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def pdf_pages(data: bytes) -> int:
    """Pages in a PDF: pdfinfo when installed, else the page objects Chromium writes."""
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True, check=True).stdout
        m = re.search(rb"^Pages:\s+(\d+)", out, re.M)
        if m:
            return int(m.group(1))
    return len(re.findall(rb"/Type\s*/Page(?!s)", data))


def pdf_to_png(pdf: Path) -> None:
    """A picture of the printed page next to the PDF, for a human to check."""
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "100",
                "-singlefile",
                str(pdf),
                f"{pdf.with_suffix('')}-pdf",
            ],
            check=True,
        )


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_map_draws_every_layer_and_highlights_own_grid(
    page: Any, live_server: str, artifacts: Path
) -> None:
    login(page, live_server, "grid01")
    m = page.locator("#district-map[data-ready='1']")
    m.wait_for()
    assert m.get_attribute("data-subdistricts") == "6"
    assert m.get_attribute("data-grids") == "37"
    assert m.get_attribute("data-zones") == "7"
    # What is actually drawn, counted in the SVG.
    assert page.locator("path.wg-subdistrict").count() == 6
    assert page.locator("path.wg-grid").count() == 37
    assert page.locator("path.wg-zone").count() == 7
    assert page.locator("path.wg-district").count() == 1
    # grid01's own grid, and nobody else's.
    assert m.get_attribute("data-mine") == "W01"
    assert page.locator("path.wg-mine").count() == 1
    assert "楼村社区" in page.locator(".mine-line").inner_text()
    # Zones lie on top of grids, grids on top of subdistricts.
    z = page.evaluate(
        "['wg-subdistrict','wg-grid','wg-zone'].map(p => +document.querySelector('.leaflet-' + p"
        " + '-pane').style.zIndex)"
    )
    assert z == sorted(z) and len(set(z)) == 3
    assert page.locator("path.wg-zone").first.get_attribute("stroke-dasharray")
    # Demo outlines are labelled as such; no basemap configured.
    assert "示意图形" in page.locator("[data-synthetic]").inner_text()
    assert page.locator("#district-map.wg-no-tiles").count() == 1
    page.screenshot(path=str(artifacts / "map.png"))

    # The layer switch hides and shows a layer ...
    zones = page.locator(".leaflet-control-layers-overlays label", has_text="重点片区").locator(
        "input"
    )
    zones.uncheck()
    assert page.locator("path.wg-zone").count() == 0
    # ... and clicking a grid opens a popup linking to its card.
    x, y = page.evaluate(FIND_POINT_ON, "path.wg-mine")
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert popup.locator("a[href='/grids/W01']").count() == 1
    zones.check()
    assert page.locator("path.wg-zone").count() == 7


def test_map_on_a_phone(page: Any, live_server: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, live_server, "grid01")
    page.locator("#district-map[data-ready='1']").wait_for()
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts / "map-phone.png"))


def test_grid_card_shows_party_group_and_linkage(
    page: Any, live_server: str, artifacts: Path
) -> None:
    login(page, live_server, "grid01", "/grids/W01")
    body = page.locator("main").inner_text()
    assert "楼村社区" in body
    assert "红色链长第1联合党小组" in body
    for tag in ("局机关干部", "专业队伍", "社区党员"):
        assert tag in page.locator("#party-group").inner_text()
    assert page.locator("#zones .person").count() >= 1  # the chain leader of the zone on W01
    assert page.locator("#departments tr[data-category]").count() == 6
    assert "暂无在办工单" in page.locator("#work-orders").inner_text()
    page.locator("#grid-map-view[data-ready='1']").wait_for()
    assert page.locator("#grid-map-view path.wg-main").count() == 1
    # Staff see whole numbers, as a tap-to-call link.
    assert page.locator("#party-group a.tel").count() >= 1
    page.screenshot(path=str(artifacts / "grid-card.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts / "grid-card-phone.png"), full_page=True)


def test_grid_member_cannot_open_another_grid(page: Any, live_server: str, artifacts: Path) -> None:
    login(page, live_server, "grid01")
    response = page.goto(f"{live_server}/grids/W02")
    assert response is not None and response.status == 403
    text = page.locator("main").inner_text()
    assert "超出您的权限或管辖范围" in text
    assert "红色链长" not in text
    page.screenshot(path=str(artifacts / "grid-forbidden.png"))


def test_zone_card_and_printed_service_card(page: Any, live_server: str, artifacts: Path) -> None:
    login(page, live_server, "chain1", "/zones/Z01")
    assert "白花片区" in page.locator("h1").inner_text()
    assert page.locator("#qr svg.qr path").count() >= 1
    assert page.locator("#leadership .badge", has_text="红色链长").count() == 1
    assert f"{live_server}/s/Z01" in page.locator("#qr").inner_text()
    page.locator("#zone-map-view[data-ready='1']").wait_for()
    page.screenshot(path=str(artifacts / "zone-card.png"), full_page=True)

    page.goto(f"{live_server}/zones/Z01/service-card")
    card = page.locator("article.service-card")
    assert card.locator("svg.qr path").count() >= 1
    for category in ("排水管理", "供水管理", "水土保持", "海绵城市", "防灾减灾", "管网查询"):
        assert category in card.inner_text()
    assert "助企服务卡" in card.inner_text()
    page.screenshot(path=str(artifacts / "service-card.png"), full_page=True)

    page.emulate_media(media="print")
    assert not page.locator("header.topbar").is_visible()
    assert not page.locator(".card-toolbar").is_visible()
    pdf = page.pdf(format="A4", print_background=True)
    (artifacts / "service-card.pdf").write_bytes(pdf)
    pdf_to_png(artifacts / "service-card.pdf")
    assert pdf_pages(pdf) == 1


def test_every_zone_service_card_fits_one_page(page: Any, live_server: str) -> None:
    login(page, live_server, "admin")
    for n in range(1, 8):
        page.goto(f"{live_server}/zones/Z{n:02d}/service-card")
        page.emulate_media(media="print")
        clipped = page.evaluate(
            "(() => { const c = document.querySelector('.service-card');"
            " return c.scrollHeight > c.clientHeight + 1 || c.scrollWidth > c.clientWidth + 1; })()"
        )
        assert not clipped, f"Z{n:02d}: the card's content overflows its printed size"
        assert pdf_pages(page.pdf(format="A4", print_background=True)) == 1, f"Z{n:02d}"


def test_public_landing_works_anonymously(page: Any, live_server: str, artifacts: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    response = page.goto(f"{live_server}/s/Z03")
    assert response is not None and response.status == 200
    text = page.locator("main").inner_text()
    assert "明湖智谷片区" in text
    assert page.locator("#chain-leader .pname .leader-name").inner_text().strip()
    assert page.locator("#report-link").get_attribute("href") == "/report?zone=Z03"
    assert "/report?zone=Z03" in text
    assert not MOBILE.search(text), "a personal mobile number on a public page"
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(artifacts / "service-landing.png"), full_page=True)


def test_english_pages(page: Any, live_server: str, artifacts: Path) -> None:
    login(page, live_server, "grid01", "/grids/W01")
    page.goto(f"{live_server}/grids/W01?lang=en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Red chain leader joint party group" in page.locator("#party-group h2").inner_text()
    page.screenshot(path=str(artifacts / "grid-card-en.png"), full_page=True)
    page.goto(f"{live_server}/map")  # the language sticks (cookie)
    assert page.locator(".map-side h1").inner_text() == "Grid map"
    page.locator("#district-map[data-ready='1']").wait_for()
    page.goto(f"{live_server}/map?lang=zh_CN")
    assert page.locator(".map-side h1").inner_text() == "网格地图"
