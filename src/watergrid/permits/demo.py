"""A few demo applications in every stage (under review, awaiting corrections, approved,
refused, just submitted), made through the same service functions as real ones, and a demo
account for the soil-and-water section. Applicants, projects and codes are fictitious; the
credit codes are generated with a valid check character but belong to nobody."""

from __future__ import annotations

from datetime import datetime, timedelta

from shapely.geometry import shape
from sqlalchemy.orm import Session

from watergrid.auth import service as auth_service
from watergrid.db import utcnow
from watergrid.geo import service as geo_service
from watergrid.inspections.jobs import reset_calendar_cache
from watergrid.org import service as org_service
from watergrid.permits import service
from watergrid.permits.catalog import SERVICES
from watergrid.permits.documents import Upload
from watergrid.permits.schemas import ApplicationCreate, StaffActionRequest
from watergrid.timers.calendar import seed_calendar

SOILWATER_USER = ("soilwater", "水土保持科", "SOILWATER")
DEMO_PASSWORD = "demo1234"


def blank_pdf(title: str) -> bytes:
    """A valid one-page PDF standing in for a scanned document."""
    text = title.encode("ascii", "replace")[:60]
    content = b"BT /F1 18 Tf 72 760 Td (" + text + b") Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def credit_code(serial: int) -> str:
    """A well-formed unified social credit code (Shenzhen prefix) for demo enterprises."""
    first17 = f"91440311MA5{serial:06d}"
    return first17 + service.credit_code_check_char(first17)


def _point(db: Session, grid_code: str) -> tuple[float, float]:
    p = shape(
        geo_service.get_or_404(db, code=grid_code, kind="grid").geometry
    ).representative_point()
    return round(p.x, 6), round(p.y, 6)


def _ensure_user(db: Session) -> None:
    username, name, dept_code = SOILWATER_USER
    if auth_service.get_by_username(db, username=username) is not None:
        return
    dept = org_service.get_department(db, code=dept_code)
    if dept is None:
        return
    staff = [p for p in org_service.get_people(db) if p.department_id == dept.id]
    person = staff[-1] if staff else None
    auth_service.create_user(
        db,
        username=username,
        display_name=person.name if person else name,
        password=DEMO_PASSWORD,
        roles=["dept_handler"],
        scopes=[("department", dept.id)],
        person_id=person.id if person else None,
    )


def _docs(code: str) -> list[Upload]:
    spec = SERVICES[code]
    return [
        Upload(d.code, f"{d.code}.pdf", blank_pdf(d.name_en)) for d in spec.documents if d.required
    ]


def load_permits_demo(db: Session, *, now: datetime | None = None) -> int:
    """Load the demo applications into the caller's transaction (once: a second run finds
    them by their form keys and changes nothing). Returns how many applications exist."""
    now = now or utcnow()
    seed_calendar(db, years=range(now.year - 1, now.year + 2))
    reset_calendar_cache()
    _ensure_user(db)
    drainage = auth_service.get_by_username(db, username="drainage")
    soil = auth_service.get_by_username(db, username=SOILWATER_USER[0])
    if drainage is None or soil is None:
        return 0
    d_actor = auth_service.load_principal(db, user=drainage)
    s_actor = auth_service.load_principal(db, user=soil)
    day = timedelta(days=1)
    plans = [
        # (key, service, grid, project, applicant, details, stage, days ago)
        (
            "demo-permit-0001",
            "drainage_connection",
            "W17",
            "光明科学城启动区配套道路排水接驳工程",
            "深圳市澜晖建设发展有限公司",
            {"discharge_type": "both", "sewage_m3_per_day": 320, "connection_points": 3},
            "review",
            6,
        ),
        (
            "demo-permit-0002",
            "drainage_connection",
            "W25",
            "公明商业中心二期雨污水接驳",
            "深圳市翰桐置业有限公司",
            {"discharge_type": "sewage", "sewage_m3_per_day": 85, "connection_points": 1},
            "correction",
            9,
        ),
        (
            "demo-permit-0003",
            "swc_plan",
            "W20",
            "白花片区智能制造产业园一期",
            "深圳市栖禾产业园开发有限公司",
            {"area_ha": 12.6, "earthwork_m3": 186000, "project_kind": "房屋建筑"},
            "approved",
            25,
        ),
        (
            "demo-permit-0004",
            "swc_plan",
            "W33",
            "玉律路改造工程",
            "深圳市朗曜市政工程有限公司",
            {"area_ha": 2.3, "earthwork_m3": 21000, "project_kind": "市政道路"},
            "submitted",
            1,
        ),
        (
            "demo-permit-0005",
            "drainage_connection",
            "W06",
            "凤凰城某物流仓储项目排水接驳",
            "深圳市樾岚物流有限公司",
            {"discharge_type": "both", "sewage_m3_per_day": 40, "connection_points": 2},
            "refused",
            20,
        ),
    ]
    for n, (key, code, grid, project, applicant, details, stage, ago) in enumerate(plans, start=1):
        lon, lat = _point(db, grid)
        start = now - ago * day
        data = ApplicationCreate(
            service_code=code,
            client_key=key,
            project_name=project,
            project_address=f"光明区{project[:6]}项目用地",
            lon=lon,
            lat=lat,
            applicant_name=applicant,
            credit_code=credit_code(n),
            contact_name="陈工",
            contact_phone=f"1370000{n:04d}",
            sms_consent=False,
            details=details,
        )
        receipt = service.submit(db, data=data, uploads=_docs(code), now=start)
        if receipt.replayed:
            continue
        actor = d_actor if code == "drainage_connection" else s_actor
        if stage in ("correction", "approved"):
            first = "project_approval" if code == "swc_plan" else "drainage_drawings"
            service.act(
                db,
                application_id=receipt.id,
                action="request_correction",
                actor=actor,
                now=start + day,
                req=StaffActionRequest(
                    doc_codes=[first],
                    note="图纸未标注雨水、污水接驳井位置及管径，请补充后重新上传。"
                    if code == "drainage_connection"
                    else "请补充项目核准文件的完整版本（含附件）。",
                ),
            )
        if stage == "approved":
            service.supplement(
                db,
                number=receipt.number,
                token=receipt.access_token or "",
                uploads=[Upload(first, "corrected.pdf", blank_pdf("corrected"))],
                note="已按要求补正",
                now=start + 5 * day,
            )
        if stage in ("review", "approved", "refused"):
            service.act(
                db,
                application_id=receipt.id,
                action="accept",
                actor=actor,
                now=start + (6 if stage == "approved" else 1) * day,
                req=StaffActionRequest(),
            )
        if stage == "approved":
            service.act(
                db,
                application_id=receipt.id,
                action="approve",
                actor=actor,
                now=start + 12 * day,
                req=StaffActionRequest(
                    conditions="按批准的水土保持方案落实各项防治措施\n"
                    "施工期间做好临时拦挡和沉沙措施，严禁泥水直排市政管网\n"
                    "工程完工后依法开展水土保持设施自主验收并报备"
                ),
            )
        if stage == "refused":
            service.act(
                db,
                application_id=receipt.id,
                action="refuse",
                actor=actor,
                now=start + 5 * day,
                req=StaffActionRequest(
                    reasons="现场核查发现拟接驳点下游市政污水管网为合流管段，"
                    "项目雨水管拟接入污水井，不符合雨污分流接驳要求"
                ),
            )
    db.flush()
    return len(plans)
