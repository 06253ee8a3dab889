"""The page forms without a browser (as a phone without script would post them): CSRF is
required, a good form redirects, a bad one comes back with the Chinese error and the values."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.inspections.fixtures import grid_point

from watergrid.inspections import service
from watergrid.inspections.checklists import RESIDENTIAL_SUPPLY_DRAINAGE

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    m = CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(client: TestClient, username: str) -> None:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={
            "username": username,
            "password": "demo1234",
            "csrf": csrf_of(page.text),
            "next": "/inspections",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_campaign_form_without_script(client: TestClient, db: Session) -> None:
    service.create_template(db, data=RESIDENTIAL_SUPPLY_DRAINAGE, actor=None, now=datetime.now(UTC))
    sign_in(client, "drainage")
    page = client.get("/inspections/new")
    assert page.status_code == 200 and "新建专项排查" in page.text
    form = {
        "csrf": csrf_of(page.text),
        "name": "表单排查",
        "code": "FORM-1",
        "scope": "",
        "period_start": "2026-03-01",
        "period_end": "2026-05-31",
        "lead_department_code": "DRAINAGE",
        "template_code": RESIDENTIAL_SUPPLY_DRAINAGE.code,
        "limit_on_site": "3",
        "limit_letter": "10",
        "limit_guidance": "20",
        "letter_prefix": "光水排查函",
    }
    r = client.post("/inspections/new", data={**form, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post("/inspections/new", data=form, follow_redirects=False)
    assert r.status_code == 303
    campaign_url = r.headers["location"]
    again = client.post("/inspections/new", data=form, headers={"accept": "text/html"})
    assert (
        again.status_code == 409
        and "FORM-1 已存在" in again.text
        and 'value="表单排查"' in again.text
    )
    bad = client.post(
        "/inspections/new",
        data={**form, "code": "FORM-2", "period_end": "2026-01-01"},
        headers={"accept": "text/html"},
    )
    assert bad.status_code == 422 and "输入有误" in bad.text

    page = client.get(campaign_url)
    assert page.status_code == 200 and "表单排查" in page.text
    lon, lat = grid_point(db, "W05")
    csv = f"编号,小区名称,经度,纬度\nF1,表单小区,{lon},{lat}\nF2,区外小区,114.9,22.0\n"
    r = client.post(
        campaign_url + "/import",
        data={"csrf": csrf_of(page.text)},
        files={"file": ("t.csv", csv.encode(), "text/csv")},
        headers={"accept": "text/html"},
    )
    assert r.status_code == 422 and "第 3 行" in r.text and "不在本区范围内" in r.text
    r = client.post(
        campaign_url + "/import",
        data={"csrf": csrf_of(page.text)},
        files={"file": ("t.csv", "\n".join(csv.splitlines()[:2]).encode(), "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "done=import:1:0" in r.headers["location"]
