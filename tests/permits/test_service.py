"""Statutory-service rules one at a time: bad applications are refused with every problem
named and nothing written; documents are judged by their bytes; actions follow the states;
staff act only within their department; history is append-only; the API speaks JSON errors."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update
from sqlalchemy.orm import Session
from tests.conftest import login_token
from tests.inspections.fixtures import T0, count, grid_point, jpeg, principal
from tests.permits.test_permits_e2e import DRAIN_DOCS, docs, drainage_application, swc_application

from watergrid.errors import AppError
from watergrid.permits import service
from watergrid.permits.documents import Upload
from watergrid.permits.models import (
    Application,
    Document,
    DocumentBlob,
    HistoryIsAppendOnly,
    PermitEvent,
)
from watergrid.permits.schemas import StaffActionRequest
from watergrid.timers.models import DueItem


def written(db: Session) -> tuple[int, ...]:
    return tuple(count(db, m) for m in (Application, Document, PermitEvent, DueItem))


def test_every_problem_is_named_and_nothing_is_written(db: Session) -> None:
    before = written(db)
    data = drainage_application(
        db,
        credit_code="91440311MA5000000X",
        contact_phone="12345",
        lon=114.6,
        lat=22.1,
        contact_email="not-an-address",
    )
    with pytest.raises(AppError) as exc:
        service.submit(db, data=data, uploads=docs("application_form"), now=T0)
    fields = {f.field for f in exc.value.fields}
    assert {
        "credit_code",
        "contact_phone",
        "contact_email",
        "lon",
        "doc__business_licence",
        "doc__planning_permit",
        "doc__drainage_drawings",
    } <= fields
    assert any("不在本区范围内" in f.message_zh for f in exc.value.fields)
    assert written(db) == before


def test_swc_below_the_thresholds_needs_no_approval(db: Session) -> None:
    data = swc_application(db).model_copy(
        update={"details": {"area_ha": 0.2, "earthwork_m3": 300, "project_kind": "房屋建筑"}}
    )
    with pytest.raises(AppError) as exc:
        service.submit(
            db,
            data=data,
            uploads=docs(
                "application_letter", "plan_report", "project_approval", "business_licence"
            ),
            now=T0,
        )
    assert "无需报批" in exc.value.fields[0].message_zh
    ok = service.submit(
        db,
        data=swc_application(db),
        now=T0,
        uploads=docs("application_letter", "plan_report", "project_approval", "business_licence"),
    )
    assert db.get(Application, ok.id).details["plan_form"] == "report"  # 8.5 ha -> 报告书


def test_documents_are_judged_by_their_bytes(db: Session) -> None:
    data = drainage_application(db, key="svc-docs-0001")
    ups = docs(*DRAIN_DOCS[:3])
    for bad, code in (
        (b"just some text", "bad_file_type"),
        (b"%PDF-1.4 truncated", "bad_pdf"),
        (b"", "empty_file"),
    ):
        with pytest.raises(AppError) as exc:
            service.submit(
                db, data=data, uploads=[*ups, Upload("drainage_drawings", "x.pdf", bad)], now=T0
            )
        assert exc.value.code == code
    with pytest.raises(AppError) as exc:
        service.submit(
            db, data=data, uploads=[*ups, *docs("drainage_drawings", "no_such_doc")], now=T0
        )
    assert exc.value.code == "unknown_document"
    assert count(db, Application) == 0
    photo = Upload("drainage_drawings", "photo.jpg", jpeg(exif=True))
    r = service.submit(db, data=data, uploads=[*ups, photo], now=T0)
    doc = next(
        d
        for d in service.application_read(
            db, app=db.get(Application, r.id), actor=None, now=T0
        ).documents
        if d.doc_code == "drainage_drawings"
    )
    blob = db.get(DocumentBlob, doc.id)
    assert doc.content_type == "image/jpeg" and not Image.open(io.BytesIO(blob.data)).getexif()


def test_actions_follow_states_and_departments(db: Session) -> None:
    drainage, watercorp, admin = (principal(db, u) for u in ("drainage", "watercorp", "admin"))
    r = service.submit(
        db, data=drainage_application(db, key="svc-act-0001"), uploads=docs(*DRAIN_DOCS), now=T0
    )
    swc = service.submit(
        db,
        data=swc_application(db, key="svc-act-0002"),
        now=T0,
        uploads=docs("application_letter", "plan_report", "project_approval", "business_licence"),
    )
    for who, app_id in ((watercorp, r.id), (drainage, swc.id)):
        with pytest.raises(AppError) as exc:
            service.act(
                db,
                application_id=app_id,
                action="accept",
                actor=who,
                now=T0,
                req=StaffActionRequest(),
            )
        assert exc.value.status == 403
    with pytest.raises(AppError) as exc:
        service.act(
            db,
            application_id=r.id,
            action="approve",
            actor=drainage,
            now=T0,
            req=StaffActionRequest(),
        )
    assert exc.value.status == 409 and "不能" in exc.value.message_zh
    with pytest.raises(AppError) as exc:
        service.act(
            db,
            application_id=r.id,
            action="request_correction",
            actor=drainage,
            now=T0,
            req=StaffActionRequest(note="补"),
        )
    assert exc.value.code == "doc_codes_required"
    with pytest.raises(AppError) as exc:
        service.act(
            db,
            application_id=r.id,
            action="refuse",
            actor=drainage,
            now=T0,
            req=StaffActionRequest(),
        )
    assert exc.value.status == 409
    with pytest.raises(AppError) as exc:
        service.act(
            db,
            application_id=r.id,
            action="not_accept",
            actor=drainage,
            now=T0,
            req=StaffActionRequest(),
        )
    assert exc.value.code == "reasons_required"
    out = service.act(
        db,
        application_id=r.id,
        action="not_accept",
        actor=drainage,
        now=T0,
        req=StaffActionRequest(reasons="不属于本机关职权范围"),
    )
    assert out.state == "not_accepted" and out.decision_number == "光水不受〔2026〕1号"
    assert out.on_time is True
    # The district (admin) reaches every department.
    service.act(
        db, application_id=swc.id, action="accept", actor=admin, now=T0, req=StaffActionRequest()
    )
    assert service.allowed_actions(watercorp, db.get(Application, swc.id)) == []
    ev = db.query(PermitEvent).filter(PermitEvent.application_id == r.id).first()
    assert ev is not None
    with pytest.raises(HistoryIsAppendOnly):
        db.execute(update(PermitEvent).values(note="x"))


def test_permits_api(client: TestClient, db: Session) -> None:
    r = client.get("/api/v1/permits/services")
    assert r.status_code == 200 and {s["code"] for s in r.json()} == {
        "drainage_connection",
        "swc_plan",
    }
    data = drainage_application(db, key="api-permit-0001")
    payload = json.dumps(data.model_dump())
    files = [
        (f"doc__{c}", (f"{c}.pdf", d.data, "application/pdf"))
        for c, d in ((u.doc_code, u) for u in docs(*DRAIN_DOCS))
    ]
    r = client.post("/api/v1/permits/applications", data={"payload": payload}, files=files)
    assert r.status_code == 201, r.text
    receipt = r.json()
    again = client.post("/api/v1/permits/applications", data={"payload": payload}, files=files)
    assert again.status_code == 200 and again.json()["access_token"] == receipt["access_token"]
    status = client.get(f"/api/v1/permits/status/{receipt['number']}").json()
    assert status["state"] == "submitted" and "contact_phone" not in status
    assert client.get("/api/v1/permits/status/PSBZ-1999-00001").status_code == 404
    me = client.post(
        "/api/v1/permits/applicant",
        json={"number": receipt["number"], "token": receipt["access_token"]},
    )
    assert me.status_code == 200 and me.json()["contact_name"] == "王工"
    assert (
        client.post(
            "/api/v1/permits/applicant",
            json={"number": receipt["number"], "token": "0000-0000-0000-0000"},
        ).status_code
        == 404
    )
    assert client.get("/api/v1/permits/applications").status_code == 401
    drainage = login_token(client, "drainage")
    grid01 = login_token(client, "grid01")
    assert client.get("/api/v1/permits/applications", headers=grid01).status_code == 403
    listed = client.get("/api/v1/permits/applications", headers=drainage).json()
    assert receipt["number"] in [a["number"] for a in listed]
    r = client.post(
        f"/api/v1/permits/applications/{receipt['id']}/actions/request_correction",
        headers=drainage,
        json={"doc_codes": ["planning_permit"], "note": "规划许可证不清晰"},
    )
    assert r.status_code == 200 and r.json()["clock"]["paused"]
    r = client.post(
        "/api/v1/permits/applicant/corrections",
        data={"number": receipt["number"], "token": receipt["access_token"], "note": "已重新扫描"},
        files=[
            ("doc__planning_permit", ("p.pdf", docs("planning_permit")[0].data, "application/pdf"))
        ],
    )
    assert r.status_code == 200 and r.json()["state"] == "submitted"
    doc = r.json()["documents"][0]
    d = client.get(f"/api/v1/permits/documents/{doc['url'].rsplit('/', 1)[-1]}", headers=drainage)
    assert d.status_code == 200 and d.content.startswith(b"%PDF")
    watercorp = login_token(client, "watercorp")
    assert (
        client.get(
            f"/api/v1/permits/documents/{doc['url'].rsplit('/', 1)[-1]}", headers=watercorp
        ).status_code
        == 403
    )
    kpi = client.get("/api/v1/permits/kpi", headers=grid01)
    assert kpi.status_code == 200 and "rate" in kpi.json()
    assert (
        client.get("/api/v1/permits/kpi?since=2026-01-01T00:00:00", headers=grid01).status_code
        == 422
    )
    assert grid_point(db, "W01")
