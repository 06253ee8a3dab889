"""The work-order pages driven in Chromium against the app running over the Guangming demo:
a resident reports from a phone (map pin, a category with a required question, a photo, a
phone number with consent), the dispatch desk accepts and dispatches, the department the
routing chose reports in on site and resolves, the bureau verifies and closes, and the
resident tracks the order by number and the last four digits and rates it.

Every step leaves a screenshot in test-artifacts/orders/ (phone-sized for public pages)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.browser

PASSWORD = "demo1234"
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 860}
NUMBER = re.compile(r"^GM-\d{4}-\d{6,}$")
# The demo's department accounts (demo/load.py): whichever department routing picks, its
# handler signs in to respond.
HANDLERS = {"DRAINAGE": "drainage", "WATERCO": "watercorp"}


def photo(colour: str = "#3a6ea5", text: str = "site") -> dict[str, Any]:
    img = Image.new("RGB", (800, 600), colour)
    d = ImageDraw.Draw(img)
    d.rectangle((120, 160, 680, 440), outline="#ffffff", width=12)
    d.text((140, 180), text, fill="#ffffff")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return {"name": f"{text}.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}


def shot(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def login(page: Any, base: str, username: str, next_path: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base + next_path.split("?")[0]) + r"(\?.*)?(#.*)?$"))


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def choose_category(page: Any, group: str, code: str) -> None:
    page.click(f"details[data-group='{group}'] > summary")
    page.click(f"label.option:has(input[value='{code}'])")
    page.locator(f".attr-block[data-for='{code}']").wait_for(state="visible")


def tap_map(page: Any, fx: float, fy: float) -> str:
    """Tap the report map at a fraction of its box; returns '1' inside the district, '0'
    outside, once the page has checked the point with the server."""
    m = page.locator("#report-map[data-ready='1']")
    m.wait_for()
    m.scroll_into_view_if_needed()
    box = m.bounding_box()
    page.evaluate("document.getElementById('report-map').dataset.inside = ''")
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    page.wait_for_function("document.getElementById('report-map').dataset.inside !== ''")
    return str(m.get_attribute("data-inside"))


def pin_inside(page: Any) -> None:
    for fx, fy in ((0.5, 0.5), (0.45, 0.55), (0.55, 0.45), (0.4, 0.4), (0.6, 0.6)):
        if tap_map(page, fx, fy) == "1":
            return
    pytest.fail("no tap on the report map landed inside the district")


def act(page: Any, action: str, note: str = "", photos: list[dict[str, Any]] | None = None) -> None:
    """Open an action's panel on the order page, fill it in and send it."""
    panel = page.locator(f"details.act[data-action='{action}']")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    form = panel.locator("form")
    if note:
        form.locator("textarea[name=note]").fill(note)
    if photos:
        form.locator("input[data-photo-input]").set_input_files(photos)
        form.locator(".thumb[data-key]").nth(len(photos) - 1).wait_for()
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf"/orders/\d+\?done={action}"))
    assert page.locator(".flash").count() == 1


def test_report_dispatch_respond_resolve_close_and_rate(
    page: Any, live_server: str, shots: Path
) -> None:
    base = live_server
    # -- a resident reports a missing manhole cover from a phone -------------------------
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/report")
    page.locator("#report-map[data-ready='1']").wait_for()
    assert no_horizontal_scroll(page)
    shot(page, shots, "01-report-empty-phone")

    choose_category(page, "drainage", "drainage.manhole_cover_missing")
    # The group folds away and names the choice; the required question is marked.
    assert (
        "井盖缺失或破损"
        in page.locator("details[data-group='drainage'] [data-chosen]").inner_text()
    )
    block = page.locator(".attr-block[data-for='drainage.manhole_cover_missing']")
    assert block.locator(".req").count() >= 1
    block.locator("label.chip", has_text="人行道").click()
    pin_inside(page)
    where = page.locator("[data-where]").inner_text()
    assert "✓" in where and "街道" in where
    page.fill("#f-address", "华夏路公交站旁人行道")
    page.fill("#f-description", "人行道上的井盖不见了，晚上很危险，已有行人差点踩空。")
    assert "/ 4000" in page.locator("[data-counter-for='f-description']").inner_text()
    page.locator("#step-photos input[data-photo-input]").set_input_files([photo(text="manhole")])
    page.locator("#step-photos .thumb[data-key]").wait_for()
    page.fill("#f-name", "王先生")
    page.fill("#f-phone", "138 0013 8000")
    page.locator("label.check:has(input[name=phone_consent])").click()
    assert no_horizontal_scroll(page)
    shot(page, shots, "02-report-filled-phone")

    page.click("button[data-submit]")
    page.locator("#order-number").wait_for()
    number = page.locator("#order-number").inner_text().strip()
    assert NUMBER.match(number), number
    receipt = page.locator("main").inner_text()
    assert "138****8000" in receipt and "13800138000" not in receipt
    assert page.locator("#track-token").inner_text().strip()
    shot(page, shots, "03-receipt-phone")

    # -- the dispatch desk accepts and dispatches in one tap ------------------------------
    page.set_viewport_size(DESK)
    login(page, base, "admin", "/orders/dispatch")
    row = page.locator(f".desk-item[data-number='{number}']")
    row.wait_for()
    href = row.locator("a.oi-number").get_attribute("href")
    order_path = str(href)
    department = row.locator("select[name=department_code]").input_value()
    assert department, "the desk suggests the routed department"
    assert department in HANDLERS, f"no demo handler for department {department}"
    assert "受理并派单" in row.locator("button[type=submit]").inner_text()
    shot(page, shots, "04-dispatch-desk")
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/orders/dispatch\?done=dispatch"))
    assert number in page.locator(".flash").inner_text()
    assert page.locator(f".desk-item[data-number='{number}']").count() == 0
    shot(page, shots, "05-desk-after-dispatch")

    # -- the department's handler finds it in the inbox, reports in, resolves -------------
    page.set_viewport_size(PHONE)
    login(page, base, HANDLERS[department], "/orders")
    item = page.locator(f".order-item[data-number='{number}']")
    item.wait_for()
    assert item.get_attribute("data-state") == "dispatched"
    assert "138****8000" in item.inner_text() and "13800138000" not in page.content()
    assert int(page.locator("[data-count=open]").inner_text()) >= 1
    assert no_horizontal_scroll(page)
    shot(page, shots, "06-handler-inbox-phone")

    item.locator("a.order-link").click()
    page.wait_for_url(f"{base}{order_path}")
    page.locator("#order-map[data-ready='1']").wait_for()
    assert page.locator("#deadlines [data-due=response]").count() == 1
    # Only what this handler may do is offered.
    offered = page.locator("details.act").evaluate_all("els => els.map(e => e.dataset.action)")
    assert "check_in" in offered and "resolve" not in offered and "accept" not in offered
    assert no_horizontal_scroll(page)
    shot(page, shots, "07-order-dispatched-phone")

    act(page, "check_in", "已到现场，设置了围挡和警示牌。", [photo("#a55d3a", "barrier")])
    assert page.locator(".detail-page").get_attribute("data-state") == "responded"
    assert page.locator("#deadlines [data-due=response]").get_attribute("data-status") == "met"
    shot(page, shots, "08-checked-in-phone")

    # A resolve without the required note is refused in Chinese and keeps the photo.
    panel = page.locator("details.act[data-action='resolve']")
    panel.locator("summary").click()
    panel.locator("input[data-photo-input]").set_input_files([photo("#3aa55d", "fixed")])
    panel.locator(".thumb[data-key]").wait_for()
    panel.locator("button[type=submit]").click()
    page.locator("details.act[data-action='resolve'] [data-error-for=note]").wait_for()
    assert "请填写说明" in page.locator("[data-error-for=note]").inner_text()
    assert page.locator("details.act[data-action='resolve'] .thumb[data-key]").count() == 1
    shot(page, shots, "09-resolve-refused-phone")
    act(page, "resolve", "已更换新井盖并恢复通行。")
    assert page.locator(".detail-page").get_attribute("data-state") == "resolved"
    handler_names = page.locator("#history .tl-who").all_inner_texts()
    shot(page, shots, "10-resolved-phone")

    # -- the bureau verifies and closes --------------------------------------------------
    page.set_viewport_size(DESK)
    login(page, base, "admin", order_path)
    act(page, "verify", "回访确认井盖已恢复。")
    act(page, "close")
    assert page.locator(".detail-page").get_attribute("data-state") == "closed"
    history = page.locator("#history").inner_text()
    for step in ("提交诉求", "受理", "派单", "党员报到", "办结", "核实", "关闭"):
        assert step in history, step
    assert page.locator("#photos ul.gallery li").count() == 3
    shot(page, shots, "11-closed-desk")

    # -- the resident tracks by number and last four digits, then rates ------------------
    page.set_viewport_size(PHONE)
    page.context.clear_cookies()
    page.goto(f"{base}/track")
    page.fill("#f-number", number.lower())
    page.fill("#f-last4", "8000")
    page.click("#track-form button[type=submit]")
    page.locator("#order[data-state='closed']").wait_for()
    public = page.locator("main").inner_text()
    for step in ("提交诉求", "派单", "党员报到", "办结", "已更换新井盖"):
        assert step in public, step
    # No staff names on the public timeline (the staff view showed them).
    staff_names = {line.split(" · ")[0] for line in handler_names} - {"诉求人", "系统"}
    assert staff_names and not any(name in public for name in staff_names)
    assert "138****8000" in public and "13800138000" not in page.content()
    assert no_horizontal_scroll(page)
    shot(page, shots, "12-track-phone")

    page.locator("label.star:has(input[value='5'])").click()
    page.fill("#f-comment", "处理及时，谢谢！")
    page.click("#rate-form button[type=submit]")
    page.locator("#rating .flash").wait_for()
    assert "5 分" in page.locator("#rating").inner_text()
    assert page.locator("#rate-form").count() == 0
    shot(page, shots, "13-rated-phone")

    # The rating reaches the staff view.
    page.set_viewport_size(DESK)
    login(page, base, "admin", order_path)
    assert "5 分" in page.locator("#info").inner_text()


def test_bad_input_is_shown_in_chinese_and_the_input_kept(
    page: Any, live_server: str, shots: Path
) -> None:
    base = live_server
    page.set_viewport_size(PHONE)
    page.goto(f"{base}/report")
    choose_category(page, "water_supply", "water_supply.burst_pipe")
    # A point outside the district: the corner of the map, beyond its outline.
    assert tap_map(page, 0.03, 0.03) == "0"
    assert "不在本区范围内" in page.locator("[data-where]").inner_text()
    page.fill("#f-address", "光明大道辅道")
    long_text = "水管爆裂" * 1000 + "啊"  # 4,001 characters
    page.fill("#f-description", long_text)
    assert "over" in (page.locator(".counter").get_attribute("class") or "")
    page.locator("#step-photos input[data-photo-input]").set_input_files([photo(text="burst")])
    page.locator("#step-photos .thumb[data-key]").wait_for()
    page.fill("#f-phone", "12345")
    page.click("button[data-submit]")

    page.locator("#form-errors").wait_for()
    errors = {
        slot: page.locator(f"[data-error-for='{slot}']").inner_text()
        for slot in ("description", "location", "attributes.flow", "reporter_phone")
    }
    assert "最多 4000 字" in errors["description"]
    assert "不在本区范围内" in errors["location"]
    assert "请填写" in errors["attributes.flow"]
    assert "手机号码格式不正确" in errors["reporter_phone"]
    # Everything typed is still there, the photo too.
    assert page.input_value("#f-description") == long_text
    assert page.input_value("#f-address") == "光明大道辅道"
    assert page.input_value("#f-phone") == "12345"
    assert page.locator("input[name=category_code][value='water_supply.burst_pipe']").is_checked()
    assert page.locator("#step-photos .thumb[data-key]").count() == 1
    assert page.locator(".attr-block[data-for='water_supply.burst_pipe']").is_visible()
    page.locator("#form-errors").scroll_into_view_if_needed()
    shot(page, shots, "20-bad-input-phone")

    # Putting it right on the same page files exactly one order.
    page.fill("#f-description", "水管爆裂，路面冒水。")
    page.locator(
        ".attr-block[data-for='water_supply.burst_pipe'] label.chip", has_text="喷涌"
    ).click()
    pin_inside(page)
    page.fill("#f-phone", "")
    page.click("button[data-submit]")
    page.locator("#order-number").wait_for()
    assert NUMBER.match(page.locator("#order-number").inner_text().strip())
    shot(page, shots, "21-bad-input-fixed-receipt-phone")


def test_a_second_send_of_the_same_form_is_the_same_order(
    page: Any, live_server: str, shots: Path
) -> None:
    """A double tap or a retry after a lost answer: the form's Idempotency-Key returns the
    first receipt instead of making a second order."""
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/report")
    choose_category(page, "sponge_city", "sponge_city.facility_damage")
    page.locator(
        ".attr-block[data-for='sponge_city.facility_damage'] label.chip", has_text="透水铺装"
    ).click()
    pin_inside(page)
    page.fill("#f-description", "透水砖大面积松动。")
    numbers = page.evaluate(
        """async () => {
          const form = document.getElementById('report-form');
          const out = [];
          for (let i = 0; i < 2; i++) {
            const r = await fetch(form.action, {method: 'POST', body: new FormData(form)});
            const html = await r.text();
            out.push([r.status, (html.match(/id="order-number">([^<]+)</) || [])[1]]);
          }
          return out;
        }"""
    )
    (s1, n1), (s2, n2) = numbers
    assert (s1, s2) == (201, 200)
    assert n1 and n1 == n2

    # A tap on the button now is a third send of the same form: the same receipt, said so.
    page.click("button[data-submit]")
    page.locator("#order-number").wait_for()
    assert page.locator("#order-number").inner_text().strip() == n1
    assert "不会重复登记" in page.locator(".receipt").inner_text()
    shot(page, shots, "22-receipt-replayed-phone")

    # Another resident reports the same thing on the same spot: told about the first one.
    page.click("a[href^='/report']")
    choose_category(page, "sponge_city", "sponge_city.facility_damage")
    page.locator(
        ".attr-block[data-for='sponge_city.facility_damage'] label.chip", has_text="透水铺装"
    ).click()
    pin_inside(page)
    page.fill("#f-description", "人行道透水砖松动，走路容易崴脚。")
    page.click("button[data-submit]")
    page.locator("#duplicates").wait_for()
    assert n1 in page.locator("#duplicates").inner_text()
    assert page.locator("#order-number").inner_text().strip() != n1
    shot(page, shots, "23-receipt-duplicates-phone")


def test_staff_pages_on_a_phone_and_the_grid_card(page: Any, live_server: str, shots: Path) -> None:
    base = live_server
    page.set_viewport_size(PHONE)
    login(page, base, "leader", "/orders/dispatch")
    assert no_horizontal_scroll(page)
    shot(page, shots, "30-desk-phone")
    page.goto(f"{base}/orders?overdue=1")
    assert page.locator("input[name=overdue]").is_checked()
    page.locator("select[name=state]").select_option("all")
    page.wait_for_url(re.compile(r"state=all"))
    assert no_horizontal_scroll(page)
    shot(page, shots, "31-inbox-filtered-phone")

    # The orders of the walk above lie on some grid; its card lists what is open there.
    page.goto(f"{base}/orders?state=all")
    first = page.locator(".order-item").first
    first.wait_for()
    first.locator("a.order-link").click()
    grid_link = page.locator("#info a[href^='/grids/']")
    grid_code = str(grid_link.get_attribute("href")).rsplit("/", 1)[1]
    page.goto(f"{base}/grids/{grid_code}")
    section = page.locator("#work-orders .grid-orders")
    section.wait_for()
    assert section.get_attribute("data-total") is not None
    assert no_horizontal_scroll(page)
    page.locator("#work-orders").scroll_into_view_if_needed()
    page.locator("#work-orders").screenshot(path=str(shots / "32-grid-card-orders-phone.png"))

    # A grid member may not use the dispatch desk: a Chinese 403 page.
    login(page, base, "grid01", "/orders")
    # What a grid member finds on patrol is recorded as self-discovered.
    page.goto(f"{base}/report")
    assert page.locator("select[name=source]").input_value() == "patrol"
    page.screenshot(path=str(shots / "33-report-as-grid-member-phone.png"))
    response = page.goto(f"{base}/orders/dispatch")
    assert response is not None and response.status == 403
    assert "超出您的权限或管辖范围" in page.locator("main").inner_text()

    # English on request, Chinese by default.
    page.context.clear_cookies()
    page.goto(f"{base}/report?lang=en")
    assert "Report a water problem" in page.locator("h1").inner_text()
    assert no_horizontal_scroll(page)
    shot(page, shots, "34-report-english-phone")
