"""The inspection REST API: gates, a campaign set up over HTTP, a multipart inspection with a
photo and its idempotent retry, figures as JSON and Excel, and the JSON error shape."""

from __future__ import annotations

import io
import json

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.inspections.fixtures import grid_point, jpeg

from watergrid.inspections.checklists import RESIDENTIAL_SUPPLY_DRAINAGE
from watergrid.inspections.models import Photo

CODES = [i.code for i in RESIDENTIAL_SUPPLY_DRAINAGE.items]


def setup_campaign(client: TestClient, db: Session, drainage: dict[str, str]) -> int:
    r = client.post(
        "/api/v1/inspections/templates",
        headers=drainage,
        json=RESIDENTIAL_SUPPLY_DRAINAGE.model_dump(),
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/inspections/campaigns",
        headers=drainage,
        json={
            "code": "API-1",
            "name": "接口测试排查",
            "period_start": "2026-03-01",
            "period_end": "2026-06-30",
            "lead_department_code": "DRAINAGE",
            "template_code": RESIDENTIAL_SUPPLY_DRAINAGE.code,
        },
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    lon, lat = grid_point(db, "W01")
    csv = f"编号,小区名称,经度,纬度,物业公司,联系电话\nQ1,接口小区,{lon},{lat},甲物业,13900003333\n"
    r = client.post(
        f"/api/v1/inspections/campaigns/{cid}/targets/import",
        headers=drainage,
        files={"file": ("targets.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    return int(cid)


def test_inspection_api_round_trip(client: TestClient, db: Session) -> None:
    assert client.get("/api/v1/inspections/campaigns").status_code == 401
    drainage = login_token(client, "drainage")
    grid01 = login_token(client, "grid01")
    # Staff outside the manage roles cannot create campaigns.
    assert client.post("/api/v1/inspections/campaigns", headers=grid01, json={}).status_code == 403
    cid = setup_campaign(client, db, drainage)
    targets = client.get(f"/api/v1/inspections/campaigns/{cid}/targets", headers=grid01).json()
    assert [t["code"] for t in targets] == ["Q1"] and targets[0]["grid"]["code"] == "W01"
    tid = targets[0]["id"]

    payload = {
        "client_key": "api-key-0001",
        "lon": targets[0]["lon"],
        "lat": targets[0]["lat"],
        "answers": {c: {"answer": "ok"} for c in CODES},
        "photo_tags": ["D01"],
    }
    payload["answers"]["D01"] = {"answer": "fault", "note": "雨水井见污水", "method": "on_site"}
    files = [("photos", ("d01.jpg", jpeg(exif=True), "image/jpeg"))]
    r = client.post(
        f"/api/v1/inspections/targets/{tid}/inspections",
        headers=grid01,
        data={"payload": json.dumps(payload)},
        files=files,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["fault_count"] == 1 and len(body["findings"]) == 1 and not body["replayed"]
    again = client.post(
        f"/api/v1/inspections/targets/{tid}/inspections",
        headers=grid01,
        data={"payload": json.dumps(payload)},
        files=files,
    )
    assert (
        again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["replayed"]
    )

    finding = client.get(
        f"/api/v1/inspections/findings/{body['findings'][0]}", headers=grid01
    ).json()
    assert finding["state"] == "rectifying" and finding["rectification"]["method"] == "on_site"
    assert "report_done" in finding["actions"] and "void" not in finding["actions"]
    assert finding["rectification"]["responsible_phone_masked"] == "139****3333"
    events = client.get(f"/api/v1/inspections/targets/{tid}/events", headers=grid01).json()
    assert [e["action"] for e in events] == ["create", "assign"]

    bad = dict(payload, client_key="api-key-0002", answers={"S01": {"answer": "maybe"}})
    r = client.post(
        f"/api/v1/inspections/targets/{tid}/inspections",
        headers=grid01,
        data={"payload": json.dumps(bad)},
    )
    assert r.status_code == 422 and r.json()["error"]["message_zh"]
    r = client.post(
        f"/api/v1/inspections/targets/{tid}/inspections",
        headers=grid01,
        data={"payload": "{not json"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_payload"
    r = client.post(
        "/api/v1/inspections/targets/999999/inspections",
        headers=grid01,
        data={"payload": json.dumps(payload)},
    )
    assert r.status_code == 404

    r = client.post(
        f"/api/v1/inspections/findings/{body['findings'][0]}/report-done",
        headers=grid01,
        data={"note": "已清理并改接"},
    )
    assert r.status_code == 200 and r.json()["state"] == "rectified"

    figs = client.get(f"/api/v1/inspections/campaigns/{cid}/figures", headers=drainage).json()
    assert figs["total"]["coverage"] == 1.0 and figs["total"]["findings"] == 1
    x = client.get(f"/api/v1/inspections/campaigns/{cid}/figures.xlsx", headers=drainage)
    assert x.status_code == 200 and x.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    wb = load_workbook(io.BytesIO(x.content))
    assert wb["问题清单"].max_row == 2

    key = db.scalar(select(Photo.key))
    pic = client.get(f"/api/v1/inspections/photos/{key}", headers=grid01)
    assert pic.status_code == 200 and pic.headers["content-type"] == "image/jpeg"
    original = client.get(f"/api/v1/inspections/photos/{key}?variant=original", headers=grid01)
    assert original.status_code == 403  # the inspector's EXIF position: the office's only
    grid13 = login_token(client, "grid13")
    assert client.get(f"/api/v1/inspections/targets/{tid}", headers=grid13).status_code == 403
