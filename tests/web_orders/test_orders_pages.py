"""The work-order pages without a browser: gates, CSRF, bad input in Chinese with nothing
stored, idempotent resubmission, masked phones, refused actions, and the catalogs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.conftest import login_token

from watergrid.workorders.models import WorkOrder

HTML = {"Accept": "text/html"}
WEB = Path(__file__).resolve().parents[2] / "src" / "watergrid" / "web"
PAGES = Path(__file__).resolve().parents[2] / "src" / "watergrid" / "workorders" / "pages.py"
# A point in Matian subdistrict (inside the district) and one in Dongguan (outside).
INSIDE = (113.9300, 22.7600)
OUTSIDE = (113.7000, 22.9500)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def idem_of(html: str) -> str:
    m = re.search(r'name="idem" value="([^"]+)"', html)
    assert m, "no Idempotency-Key in the form"
    return m.group(1)


def report_form(client: TestClient) -> tuple[str, str]:
    r = client.get("/report", headers=HTML)
    assert r.status_code == 200
    return csrf_of(r.text), idem_of(r.text)


def count_orders(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(WorkOrder)) or 0)


def good_report(csrf: str, idem: str, **over: Any) -> dict[str, Any]:
    data = {
        "csrf": csrf,
        "idem": idem,
        "category_code": "drainage.manhole_cover_missing",
        "attr.drainage.manhole_cover_missing.road_type": "sidewalk",
        "lon": str(INSIDE[0]),
        "lat": str(INSIDE[1]),
        "address": "光明大道",
        "description": "井盖丢失，请尽快处理。",
        "reporter_phone": "13800138000",
        "phone_consent": "1",
    }
    data.update(over)
    return data


def test_public_pages_open_to_anyone_staff_pages_need_a_login(client: TestClient) -> None:
    r = client.get("/report", headers=HTML)
    assert r.status_code == 200 and "反映涉水问题" in r.text
    assert "wg_anon" in r.cookies  # the CSRF token is bound to it
    assert client.get("/track", headers=HTML).status_code == 200
    for path in ("/orders", "/orders/dispatch", "/orders/1"):
        r = client.get(path, headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


def test_the_desk_is_for_those_who_dispatch(client: TestClient) -> None:
    r = client.get("/orders/dispatch", headers={**HTML, **login_token(client, "grid01")})
    assert r.status_code == 403 and "超出您的权限或管辖范围" in r.text
    r = client.get("/orders/dispatch", headers={**HTML, **login_token(client, "leader")})
    assert r.status_code == 200 and "派单台" in r.text


def test_service_card_link_prefills_the_zone(client: TestClient) -> None:
    r = client.get("/report?zone=Z01", headers=HTML)
    assert 'name="zone" value="Z01"' in r.text and "来自助企服务卡" in r.text
    r = client.get("/report?zone=NOPE", headers=HTML)
    assert 'name="zone"' not in r.text


def test_bad_input_is_chinese_next_to_its_field_keeps_the_input_and_stores_nothing(
    client: TestClient, db: Session
) -> None:
    csrf, idem = report_form(client)
    before = count_orders(db)
    long_text = "漏" * 4001
    data = good_report(
        csrf,
        idem,
        category_code="water_supply.burst_pipe",
        lon=str(OUTSIDE[0]),
        lat=str(OUTSIDE[1]),
        description=long_text,
        reporter_phone="1234",
    )
    data.pop("attr.drainage.manhole_cover_missing.road_type")
    r = client.post(
        "/report",
        data=data,
        files=[("photos", ("note.jpg", b"this is not a picture", "image/jpeg"))],
        headers=HTML,
    )
    assert r.status_code == 422
    errors = dict(re.findall(r'data-error-for="([^"]+)">([^<]+)<', r.text))
    assert "最多 4000 字" in errors["description"]
    assert "不在本区范围内" in errors["location"]
    assert "请填写" in errors["attributes.flow"]
    assert "手机号码格式不正确" in errors["reporter_phone"]
    assert "不是 JPEG、PNG 或 WebP" in errors["photos"]
    # The input comes back as typed, under the same key (nothing was stored under it).
    assert long_text in r.text
    assert 'value="1234"' in r.text
    assert 'value="water_supply.burst_pipe" checked' in r.text
    assert idem_of(r.text) == idem
    assert count_orders(db) == before


def test_unknown_category_and_no_point(client: TestClient, db: Session) -> None:
    csrf, idem = report_form(client)
    before = count_orders(db)
    r = client.post(
        "/report",
        data=good_report(csrf, idem, category_code="drainage.nope", lon="", lat=""),
        headers=HTML,
    )
    assert r.status_code == 422
    assert "未知的诉求类别" in r.text
    assert "请在地图上点选问题所在位置" in r.text
    assert count_orders(db) == before


def test_an_expired_form_keeps_what_was_typed(client: TestClient, db: Session) -> None:
    _, idem = report_form(client)
    before = count_orders(db)
    r = client.post(
        "/report", data=good_report("forged", idem, description="别丢了我"), headers=HTML
    )
    assert r.status_code == 403
    assert "页面已过期" in r.text and "别丢了我" in r.text
    assert count_orders(db) == before


def test_sending_the_same_form_twice_files_one_order(client: TestClient, db: Session) -> None:
    csrf, idem = report_form(client)
    before = count_orders(db)
    first = client.post("/report", data=good_report(csrf, idem), headers=HTML)
    second = client.post("/report", data=good_report(csrf, idem), headers=HTML)
    assert (first.status_code, second.status_code) == (201, 200)
    number = re.search(r'id="order-number">([^<]+)<', first.text)
    assert number and number.group(1) in second.text
    assert "不会重复登记" in second.text
    assert count_orders(db) == before + 1
    # The same page sent again with other content after a success: told, not lost.
    third = client.post("/report", data=good_report(csrf, idem, description="另一处"), headers=HTML)
    assert third.status_code == 409 and "已经提交过" in third.text and "另一处" in third.text
    assert idem_of(third.text) != idem
    assert count_orders(db) == before + 1
    # Sent under its new key it is a new order, and the first one is named as a possible
    # duplicate nearby.
    fourth = client.post(
        "/report", data=good_report(csrf, idem_of(third.text), description="另一处"), headers=HTML
    )
    assert fourth.status_code == 201 and 'id="duplicates"' in fourth.text
    assert number.group(1) in fourth.text.split('id="duplicates"')[1]
    assert count_orders(db) == before + 2


def test_staff_record_what_they_found_on_patrol(client: TestClient) -> None:
    grid = {**HTML, **login_token(client, "grid01")}
    r = client.get("/report", headers=grid)
    assert 'name="source"' in r.text and '<option value="patrol" selected>' in r.text
    r = client.post(
        "/report",
        data=good_report(
            csrf_of(r.text), idem_of(r.text), source="patrol", phone_consent="", reporter_phone=""
        ),
        headers=grid,
    )
    assert r.status_code == 201
    number = re.search(r'id="order-number">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    inbox = client.get("/orders?state=all", headers={**HTML, **login_token(client, "admin")})
    item = inbox.text.split(f'data-number="{number}"')[1].split("</li>")[0]
    assert "巡查自查" in item
    # The public cannot claim a patrol find: the choice is not offered and not taken.
    client.cookies.clear()
    r = client.get("/report", headers=HTML)
    assert 'name="source"' not in r.text
    r = client.post(
        "/report", data=good_report(csrf_of(r.text), idem_of(r.text), source="patrol"), headers=HTML
    )
    assert r.status_code == 201


def test_lists_mask_phones_and_actions_refuse_in_chinese(client: TestClient) -> None:
    csrf, idem = report_form(client)
    r = client.post("/report", data=good_report(csrf, idem), headers=HTML)
    number = re.search(r'id="order-number">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    assert "138****8000" in r.text

    admin = {**HTML, **login_token(client, "admin")}
    inbox = client.get("/orders?state=all", headers=admin)
    assert number in inbox.text and "138****8000" in inbox.text
    assert "13800138000" not in inbox.text
    m = re.search(
        rf'href="/orders/(\d+)">\s*<div class="oi-top">\s*<span class="oi-number">{number}',
        inbox.text,
    )
    assert m, "the order is in the admin's inbox"
    order_id = m.group(1)

    page = client.get(f"/orders/{order_id}", headers=admin)
    assert page.status_code == 200 and 'data-action="accept"' in page.text
    assert 'data-action="resolve"' not in page.text  # not allowed in this state
    token = csrf_of(page.text)
    # An action the state does not allow: 409 and the reason in Chinese.
    r = client.post(
        f"/orders/{order_id}/act",
        data={"csrf": token, "action": "resolve", "note": "x"},
        headers=admin,
    )
    assert r.status_code == 409 and "不能执行" in r.text
    # A reject without its reason: 422 next to the field, the note kept.
    r = client.post(
        f"/orders/{order_id}/act",
        data={"csrf": token, "action": "reject", "note": "保留这段说明"},
        headers=admin,
    )
    assert r.status_code == 422 and 'data-error-for="reason"' in r.text and "保留这段说明" in r.text
    # A grid member outside the order's scope may not act on it.
    other = {**HTML, **login_token(client, "grid13")}
    r = client.post(
        f"/orders/{order_id}/act", data={"csrf": token, "action": "accept"}, headers=other
    )
    assert r.status_code == 403 and "超出您的权限或管辖范围" in r.text
    # Accepting works and comes back to the order with a confirmation.
    r = client.post(
        f"/orders/{order_id}/act",
        data={"csrf": token, "action": "accept"},
        headers=admin,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith(
        f"/orders/{order_id}?done=accept"
    )


def test_tracking_needs_the_right_digits(client: TestClient) -> None:
    csrf, idem = report_form(client)
    r = client.post("/report", data=good_report(csrf, idem), headers=HTML)
    number = re.search(r'id="order-number">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/track", data={"csrf": csrf, "number": number, "phone_last4": "0000"}, headers=HTML
    )
    assert r.status_code == 404 and "未找到该编号的诉求" in r.text
    r = client.post(
        "/track", data={"csrf": csrf, "number": number, "phone_last4": "12"}, headers=HTML
    )
    assert r.status_code == 422 and "请填写4位数字" in r.text
    r = client.post(
        "/track", data={"csrf": csrf, "number": number, "phone_last4": "8000"}, headers=HTML
    )
    assert r.status_code == 200 and "提交诉求" in r.text and "138****8000" in r.text
    # Not resolved yet: no rating form, and a rating sent anyway is refused in Chinese.
    assert 'id="rate-form"' not in r.text
    r = client.post(
        "/track/rate",
        data={"csrf": csrf, "number": number, "phone_last4": "8000", "score": "5"},
        headers=HTML,
    )
    assert r.status_code == 422 and "诉求办结后才能评价" in r.text


def test_where_says_which_grid_or_that_it_is_outside(client: TestClient) -> None:
    r = client.get(f"/report/where?lon={INSIDE[0]}&lat={INSIDE[1]}")
    body = r.json()
    assert body["inside"] and body["grid"] and "✓" in body["text"]
    r = client.get(f"/report/where?lon={OUTSIDE[0]}&lat={OUTSIDE[1]}")
    assert not r.json()["inside"] and "不在本区范围内" in r.json()["text"]


def test_english_report_form(client: TestClient) -> None:
    r = client.get("/report?lang=en", headers=HTML)
    assert '<html lang="en">' in r.text and "Report a water problem" in r.text


def test_both_catalogs_hold_every_orders_text() -> None:
    zh = json.loads((WEB / "i18n" / "zh_CN.json").read_text(encoding="utf-8"))
    en = json.loads((WEB / "i18n" / "en.json").read_text(encoding="utf-8"))
    ours = {k for k in zh if k.startswith("orders.")}
    assert ours == {k for k in en if k.startswith("orders.")}
    used: set[str] = set()
    for tpl in (WEB / "templates" / "orders").glob("*.html"):
        used |= set(re.findall(r"\bt\('(orders\.[a-z0-9_.]+)'", tpl.read_text(encoding="utf-8")))
    # Texts the module translates itself (permission names like allow("orders.read") aside).
    code = PAGES.read_text(encoding="utf-8")
    used |= set(re.findall(r'(?<!allow\()(?<!can\()"(orders\.[a-z0-9_.]+)"', code))
    # Keys built at run time are listed instead of their prefixes.
    used = {k for k in used if not k.endswith(".")}
    families = {
        "orders.field.": ("response_due", "handling_due"),
        "orders.mode.": ("on_site", "contacted"),
        "orders.priority.": ("emergency", "urgent", "normal"),
        "orders.unit.": ("hours", "workdays"),
        "orders.rate.word.": ("1", "2", "3", "4", "5"),
        "orders.due.pending_": ("response", "handling"),
        "orders.err.too_long.": ("address", "reporter_name"),
        "orders.source.": ("public_web", "service_card", "api", "open311", "patrol", "phone"),
        "orders.report.source.": ("patrol", "phone", "public_web"),
        "orders.role.": (
            "reporter",
            "system",
            "admin",
            "bureau_leader",
            "duty_officer",
            "chain_leader",
            "liaison",
            "dept_handler",
            "grid_member",
        ),
    }
    for prefix, names in families.items():
        used |= {prefix + n for n in names}
    missing = sorted(k for k in used if k not in zh)
    assert not missing, missing
    unused = sorted(ours - used)
    assert not unused, f"catalog texts no page uses: {unused}"
