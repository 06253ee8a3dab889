"""Statutory-service pages. Public: the services, the online application, status by
application number, the applicant's own page (number + query code) with corrections. Staff:
the desk (list and on-time figures), an application with its actions, and the printable
decision document.

Public forms carry a CSRF token bound to a per-browser cookie, as the sign-in form does. The
application form submits with fetch when script runs, so a refused submit (a missing file,
a wrong credit code) keeps every field and every chosen file on the page."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeAlias
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, FieldError, invalid
from watergrid.geo import service as geo_service
from watergrid.geo.api import to_datum
from watergrid.geo.pages import map_datum, tile_config
from watergrid.inspections.pages import due_time
from watergrid.permits import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.permits import service
from watergrid.permits.api import read_uploads
from watergrid.permits.catalog import (
    BUILD_LABELS,
    DISCHARGE_LABELS,
    SERVICES,
    ServiceSpec,
)
from watergrid.permits.documents import Upload
from watergrid.permits.models import Application
from watergrid.permits.schemas import (
    STATE_LABELS,
    ApplicationCreate,
    StaffActionRequest,
)
from watergrid.settings import get_settings
from watergrid.web.render import check_csrf, render, templates

router = APIRouter(prefix="/permits", include_in_schema=False)
Anyone = Annotated[Principal | None, Depends(public)]
Reader: TypeAlias = Annotated[Principal, Depends(allow("permit.read"))]
Handler: TypeAlias = Annotated[Principal, Depends(allow("permit.handle"))]
FormData_ = Annotated[tuple[dict[str, Any], list[Upload]], Depends(read_uploads)]
ANON = "wg_anon"
templates.env.filters.setdefault("due", due_time)


def _public_page(request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
    """Render a public page whose forms need a CSRF token: before sign-in the token is bound
    to a per-browser cookie, set here when missing (and the page rendered with it)."""
    if ANON in request.cookies or "wg_session" in request.cookies:
        return render(request, template, status=status, **ctx)
    anon = secrets.token_urlsafe(16)
    request.cookies[ANON] = anon
    response = render(request, template, status=status, **ctx)
    response.set_cookie(ANON, anon, httponly=True, samesite="lax")
    return response


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _spec(code: str) -> ServiceSpec:
    spec = SERVICES.get(code)
    if spec is None:
        raise AppError(404, "not_found", f"No service {code}", "办理事项不存在")
    return spec


# -- public ------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def index(request: Request, _: Anyone) -> Response:
    return _public_page(request, "permits/index.html", services=list(SERVICES.values()))


def _district_outline(db: Session) -> dict[str, Any] | None:
    district = next(iter(geo_service.get_all(db, kind="district")), None)
    if district is None:
        return None
    return {
        "type": "Feature",
        "properties": {},
        "geometry": to_datum(district.geometry, map_datum()),
    }


def _apply_context(db: Session, spec: ServiceSpec, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "spec": spec,
        "values": values,
        "client_key": "a" + secrets.token_urlsafe(18),
        "discharge": DISCHARGE_LABELS,
        "build": BUILD_LABELS,
        "map_config": {
            "tiles": tile_config(),
            "datum": map_datum(),
            "outline": _district_outline(db),
        },
    }


@router.get("/apply/{service_code}", response_class=HTMLResponse)
def apply_form(request: Request, db: SessionDep, _: Anyone, service_code: str) -> Response:
    spec = _spec(service_code)
    return _public_page(request, "permits/apply.html", **_apply_context(db, spec, {}))


def _details(spec: ServiceSpec, fields: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "drainage_connection": (
            "discharge_type",
            "sewage_m3_per_day",
            "connection_points",
            "build_kind",
        ),
        "swc_plan": ("area_ha", "earthwork_m3", "project_kind"),
    }[spec.code]
    return {k: str(fields[k]).strip() for k in keys if str(fields.get(k, "")).strip()}


def _to_create(spec: ServiceSpec, fields: dict[str, Any]) -> ApplicationCreate:
    def s(name: str) -> str:
        return str(fields.get(name, "")).strip()

    try:
        return ApplicationCreate.model_validate(
            {
                "service_code": spec.code,
                "client_key": s("client_key"),
                "project_name": s("project_name"),
                "project_address": s("project_address"),
                "lon": s("lon") or None,
                "lat": s("lat") or None,
                "datum": s("datum") or "wgs84",
                "applicant_name": s("applicant_name"),
                "credit_code": s("credit_code").upper(),
                "contact_name": s("contact_name"),
                "contact_phone": s("contact_phone"),
                "contact_email": s("contact_email"),
                "sms_consent": s("sms_consent") == "1",
                "details": _details(spec, fields),
            }
        )
    except ValidationError as exc:
        names = {
            "lon": "项目位置",
            "lat": "项目位置",
            "project_name": "项目名称",
            "project_address": "项目地址",
            "applicant_name": "申请单位",
            "credit_code": "统一社会信用代码",
            "contact_name": "联系人",
            "contact_phone": "联系电话",
            "client_key": "表单",
        }
        problems = []
        for e in exc.errors():
            name = ".".join(str(p) for p in e["loc"])
            zh = names.get(name, name)
            problems.append(
                FieldError(
                    field=name,
                    message=e["msg"],
                    message_zh=f"请正确填写：{zh}"
                    if name != "lon" and name != "lat"
                    else "请在地图上选择项目位置，或填写经纬度",
                )
            )
        raise invalid(problems, "The application has errors; nothing was submitted") from None


@router.post("/apply/{service_code}", response_class=HTMLResponse)
def apply(
    request: Request, db: SessionDep, _: Anyone, service_code: str, form: FormData_
) -> Response:
    fields, uploads = form
    check_csrf(request, str(fields.get("csrf", "")))
    spec = _spec(service_code)
    try:
        data = _to_create(spec, fields)
        receipt = service.submit(db, data=data, uploads=uploads, now=utcnow())
    except AppError as exc:
        if exc.status >= 500:
            raise
        db.rollback()
        if _wants_json(request):
            return JSONResponse(exc.as_dict(), status_code=exc.status)
        values = {k: v for k, v in fields.items() if k != "csrf"}
        return _public_page(
            request,
            "permits/apply.html",
            status=exc.status,
            error=exc,
            **_apply_context(db, spec, values),
        )
    db.commit()
    if _wants_json(request):
        return JSONResponse(
            receipt.model_dump(mode="json"), status_code=200 if receipt.replayed else 201
        )
    app = service.for_applicant(db, number=receipt.number, token=receipt.access_token or "")
    return _applicant_page(request, db, app, token=receipt.access_token or "", receipt=True)


@router.get("/track", response_class=HTMLResponse)
def track(request: Request, db: SessionDep, _: Anyone, number: str = "") -> Response:
    status = None
    error = None
    if number.strip():
        try:
            status = service.public_status(db, number=number, now=utcnow())
        except AppError as exc:
            error = exc
    return _public_page(
        request,
        "permits/track.html",
        status=404 if error else 200,
        result=status,
        number=number.strip(),
        error=error,
    )


def _applicant_page(
    request: Request,
    db: Session,
    app: Application,
    *,
    token: str,
    receipt: bool = False,
    error: AppError | None = None,
    done: str = "",
) -> Response:
    view = service.application_read(db, app=app, actor=None, now=utcnow())
    return _public_page(
        request,
        "permits/applicant.html",
        status=error.status if error else 200,
        app=view,
        token=token,
        receipt=receipt,
        error=error,
        done=done,
        spec=SERVICES[app.service_code],
    )


@router.get("/my", response_class=HTMLResponse)
def my_form(request: Request, _: Anyone, number: str = "") -> Response:
    return _public_page(request, "permits/my.html", number=number)


@router.post("/my", response_class=HTMLResponse)
def my_view(request: Request, db: SessionDep, _: Anyone, form: FormData_) -> Response:
    fields, _files = form
    check_csrf(request, str(fields.get("csrf", "")))
    number, token = str(fields.get("number", "")).strip(), str(fields.get("token", "")).strip()
    try:
        app = service.for_applicant(db, number=number, token=token)
    except AppError as exc:
        return _public_page(request, "permits/my.html", status=exc.status, number=number, error=exc)
    return _applicant_page(request, db, app, token=token, receipt=fields.get("new") == "1")


@router.post("/my/corrections", response_class=HTMLResponse)
def my_corrections(request: Request, db: SessionDep, _: Anyone, form: FormData_) -> Response:
    fields, uploads = form
    check_csrf(request, str(fields.get("csrf", "")))
    number, token = str(fields.get("number", "")).strip(), str(fields.get("token", "")).strip()
    try:
        service.supplement(
            db,
            number=number,
            token=token,
            uploads=uploads,
            note=str(fields.get("note", ""))[:2000],
            now=utcnow(),
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        db.rollback()
        if exc.status == 404:
            return _public_page(request, "permits/my.html", status=404, number=number, error=exc)
        app = service.for_applicant(db, number=number, token=token)
        return _applicant_page(request, db, app, token=token, error=exc)
    db.commit()
    app = service.for_applicant(db, number=number, token=token)
    return _applicant_page(request, db, app, token=token, done="supplement")


# -- staff -------------------------------------------------------------------------------


@router.get("/desk", response_class=HTMLResponse)
def desk(
    request: Request,
    db: SessionDep,
    principal: Reader,
    state: str = "",
    service_code: str = "",
    view: str = "open",
) -> HTMLResponse:
    now = utcnow()
    rows = service.list_applications(
        db,
        actor=principal,
        now=now,
        state=state or None,
        service_code=service_code or None,
        open_only=view == "open",
        overdue=view == "overdue",
    )
    local = now.astimezone(ZoneInfo(get_settings().timezone))
    year_start = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    kpi = service.on_time_summary(
        db,
        since=year_start,
        until=now + timedelta(seconds=1),
        department_ids=None if principal.district else set(principal.department_ids),
    )
    return render(
        request,
        "permits/desk.html",
        rows=rows,
        kpi=kpi,
        view=view,
        state=state,
        service_code=service_code,
        services=list(SERVICES.values()),
        states=STATE_LABELS,
        year=local.year,
    )


@router.get("/applications/{application_id}", response_class=HTMLResponse)
def application_page(
    request: Request, db: SessionDep, principal: Reader, application_id: int, done: str = ""
) -> HTMLResponse:
    app = service.get_for_staff(db, application_id=application_id, actor=principal)
    view = service.application_read(db, app=app, actor=principal, now=utcnow())
    return render(
        request, "permits/application.html", app=view, spec=SERVICES[app.service_code], done=done
    )


@router.post("/applications/{application_id}/act", response_class=HTMLResponse)
def act(
    request: Request, db: SessionDep, principal: Handler, application_id: int, form: FormData_
) -> Response:
    fields, _files = form
    check_csrf(request, str(fields.get("csrf", "")))
    action = str(fields.get("action", ""))
    try:
        raw_codes = fields.get("doc_codes", [])
        codes = [str(c) for c in (raw_codes if isinstance(raw_codes, list) else [raw_codes]) if c]
        req = StaffActionRequest(
            note=str(fields.get("note", ""))[:4000],
            doc_codes=codes,
            reasons=str(fields.get("reasons", ""))[:4000],
            conditions=str(fields.get("conditions", ""))[:4000],
        )
        service.act(
            db, application_id=application_id, action=action, req=req, actor=principal, now=utcnow()
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        db.rollback()
        app = service.get_for_staff(db, application_id=application_id, actor=principal)
        view = service.application_read(db, app=app, actor=principal, now=utcnow())
        return render(
            request,
            "permits/application.html",
            status=exc.status,
            app=view,
            spec=SERVICES[app.service_code],
            error=exc,
            done="",
        )
    db.commit()
    return RedirectResponse(
        f"/permits/applications/{application_id}?done={action}", status_code=303
    )


@router.get("/applications/{application_id}/decision", response_class=HTMLResponse)
def decision(
    request: Request, db: SessionDep, principal: Reader, application_id: int
) -> HTMLResponse:
    app = service.get_for_staff(db, application_id=application_id, actor=principal)
    if app.decided_at is None:
        raise AppError(409, "not_decided", "No decision yet", "该申请尚未作出决定")
    view = service.application_read(db, app=app, actor=principal, now=utcnow())
    return render(
        request,
        "permits/decision.html",
        app=view,
        spec=SERVICES[app.service_code],
        paused_days=_paused_days(view.suspensions),
        zh_date=local_date,
    )


def _paused_days(suspensions: list[Any]) -> int:
    total = timedelta(0)
    for s in suspensions:
        if s.resumed_at is not None:
            total += s.resumed_at - s.suspended_at
    return int(round(total / timedelta(days=1)))


def local_date(at: datetime | None) -> str:
    if at is None:
        return ""
    d = at.astimezone(ZoneInfo(get_settings().timezone))
    return f"{d.year}年{d.month}月{d.day}日"
