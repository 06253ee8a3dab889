"""Inspection pages: campaigns, a campaign's targets and map, a target with its findings and
history, the phone inspection form, the printable reminder letter and the figures.

Forms post back here with the CSRF token; every change goes through inspections.service, so
pages and API share one set of rules. The phone form submits with fetch (Accept: JSON) and
keeps a draft on the phone until the server has the visit; without script it posts as a
plain form and the answer is a redirect or the form again with the errors."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeAlias
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile as StarletteUpload

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError
from watergrid.geo import service as geo_service
from watergrid.geo.api import to_datum
from watergrid.geo.datum import wgs84_to_gcj02
from watergrid.geo.pages import map_datum, tile_config
from watergrid.inspections import figures as figures_mod
from watergrid.inspections import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.inspections import service
from watergrid.inspections.models import Finding, Rectification, Target
from watergrid.inspections.schemas import (
    ANSWER_LABELS,
    METHOD_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
    CampaignCreate,
    InspectionSubmit,
    RectifyAssign,
    TargetIn,
)
from watergrid.org import service as org_service
from watergrid.settings import get_settings
from watergrid.web.i18n import language
from watergrid.web.render import check_csrf, render, templates
from watergrid.workorders.photos import PhotoUpload

router = APIRouter(prefix="/inspections", include_in_schema=False)


def due_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A deadline in local time. Working-day limits end at local midnight; 2026-10-14 00:00
    reads as if the 14th were included, so such a deadline is shown as 2026-10-13 24:00, and
    as a date, 2026-10-13: the last day that counts."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(get_settings().timezone))
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        # The last day included is the day before; a date alone names that day.
        prev = local - timedelta(days=1)
        return prev.strftime(fmt.replace("%H:%M", "24:00").replace("%H", "24"))
    return local.strftime(fmt)


# The deadline filter is shared by the permit pages; registering it on the one Jinja
# environment is all it takes.
templates.env.filters["due"] = due_time
Reader: TypeAlias = Annotated[Principal, Depends(allow("insp.read"))]
Inspector: TypeAlias = Annotated[Principal, Depends(allow("insp.inspect"))]
Manager: TypeAlias = Annotated[Principal, Depends(allow("insp.manage"))]
Anyone = Annotated[Principal | None, Depends(public)]

STATIC_DIR = Path(__file__).resolve().parents[1] / "web" / "templates" / "inspections" / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
LABELS = {
    "methods": METHOD_LABELS,
    "severities": SEVERITY_LABELS,
    "states": STATE_LABELS,
    "answers": ANSWER_LABELS,
}


def _lang(request: Request) -> str:
    return language(request)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/static/{name}")
def static(name: str, _: Anyone) -> Response:
    """The inspection and permit pages' stylesheet and scripts. They live with the templates
    (packaged data) rather than in web/static, which this module does not own."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
        raise AppError(404, "not_found", "No such file", "文件不存在")
    return Response(
        path.read_bytes(),
        media_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=300"},
    )


# -- campaigns --------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def index(request: Request, db: SessionDep, principal: Reader) -> HTMLResponse:
    campaigns = service.list_campaigns(db, actor=principal)
    tasks: list[Any] = []
    for c in campaigns:
        if c.state != "active":
            continue
        pending = service.list_targets(db, campaign_id=c.id, actor=principal, status="pending")
        campaign = service.get_campaign(db, campaign_id=c.id)
        if service.visible_grid_ids(db, actor=principal, campaign=campaign) is not None:
            tasks += [(c, t) for t in pending[:30]]
    return render(
        request,
        "inspections/index.html",
        campaigns=campaigns,
        tasks=tasks,
        may_create=principal.can("insp.manage"),
    )


def _new_form_context(db: Session, principal: Principal) -> dict[str, Any]:
    depts = [
        d
        for d in org_service.get_departments(db)
        if principal.district or d.id in principal.department_ids
    ]
    return {"departments": depts, "templates": service.list_templates(db)}


@router.get("/new", response_class=HTMLResponse)
def new_form(request: Request, db: SessionDep, principal: Manager) -> HTMLResponse:
    today = utcnow().astimezone(ZoneInfo(get_settings().timezone)).date()
    values = {
        "period_start": today.isoformat(),
        "period_end": (today + timedelta(days=90)).isoformat(),
        "letter_prefix": "光水排查函",
    }
    return render(
        request, "inspections/campaign_new.html", values=values, **_new_form_context(db, principal)
    )


@router.post("/new", response_class=HTMLResponse)
async def create(request: Request, db: SessionDep, principal: Manager) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        data = CampaignCreate.model_validate(
            {
                "code": values.get("code", "").strip(),
                "name": values.get("name", "").strip(),
                "scope": values.get("scope", ""),
                "period_start": values.get("period_start"),
                "period_end": values.get("period_end"),
                "lead_department_code": values.get("lead_department_code", ""),
                "template_code": values.get("template_code", ""),
                "letter_prefix": values.get("letter_prefix", "").strip() or "光水排查函",
                "rectify_limits": {
                    m: values.get(f"limit_{m}") or d
                    for m, d in (("on_site", 5), ("letter", 15), ("guidance", 20))
                },
            }
        )
        c = service.create_campaign(db, data=data, actor=principal, now=utcnow())
    except ValidationError as exc:
        err = service.validation_error(exc)
        return render(
            request,
            "inspections/campaign_new.html",
            status=422,
            values=values,
            error=err,
            **_new_form_context(db, principal),
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        return render(
            request,
            "inspections/campaign_new.html",
            status=exc.status,
            values=values,
            error=exc,
            **_new_form_context(db, principal),
        )
    db.commit()
    return _redirect(f"/inspections/campaigns/{c.id}")


def _target_markers(db: Session, targets: list[Any], datum: str) -> list[dict[str, Any]]:
    out = []
    for t in targets:
        lon, lat = wgs84_to_gcj02(t.lon, t.lat) if datum == "gcj02" else (t.lon, t.lat)
        status = "pending" if t.inspected_at is None else ("open" if t.open_findings else "ok")
        out.append(
            {
                "id": t.id,
                "code": t.code,
                "name": t.name,
                "lon": lon,
                "lat": lat,
                "status": status,
                "grid": t.grid.code,
            }
        )
    return out


def _grid_outlines(db: Session, grid_ids: set[int], datum: str, lang: str) -> dict[str, Any]:
    grids = [g for g in geo_service.get_all(db, kind="grid") if g.id in grid_ids]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "code": g.code,
                    "name": g.name_en if lang == "en" and g.name_en else g.name_zh,
                },
                "geometry": to_datum(g.geometry, datum),
            }
            for g in grids
        ],
    }


def _campaign_context(
    db: Session,
    request: Request,
    principal: Principal,
    campaign_id: int,
    grid: str | None,
    status: str | None,
) -> dict[str, Any]:
    campaign = service.get_campaign(db, campaign_id=campaign_id)
    read = service.campaign_read(db, campaign=campaign, actor=principal)
    figs = figures_mod.campaign_figures(
        db, campaign_id=campaign.id, actor=principal, as_of=utcnow()
    )
    all_targets = service.list_targets(db, campaign_id=campaign.id, actor=principal)
    shown = service.list_targets(
        db, campaign_id=campaign.id, actor=principal, grid_code=grid or None, status=status or None
    )
    datum = map_datum()
    grid_ids = {t.grid.id for t in all_targets}
    manage = service.can_manage(principal, campaign)
    visible = service.visible_grid_ids(db, actor=principal, campaign=campaign)
    all_grids = [
        g for g in geo_service.get_all(db, kind="grid") if visible is None or g.id in visible
    ]
    if manage:
        grid_ids |= {g.id for g in all_grids}
    map_config = {
        "tiles": tile_config(),
        "datum": datum,
        "markers": _target_markers(db, all_targets, datum),
        "outlines": _grid_outlines(db, grid_ids, datum, _lang(request)),
        "pick": manage,
    }
    return {
        "campaign": read,
        "figures": figs,
        "targets": shown,
        "grid_filter": grid or "",
        "status_filter": status or "",
        "grids": sorted({(t.grid.code, t.grid.name_zh) for t in all_targets}),
        "all_grids": all_grids,
        "manage": manage,
        "inspectors": service.list_inspectors(db, campaign_id=campaign.id),
        "letters": service.list_letters(db, campaign_id=campaign.id, actor=principal),
        "map_config": map_config,
        "labels": LABELS,
    }


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(
    request: Request,
    db: SessionDep,
    principal: Reader,
    campaign_id: int,
    grid: str | None = None,
    status: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    ctx = _campaign_context(db, request, principal, campaign_id, grid, status)
    return render(request, "inspections/campaign.html", done=done, **ctx)


def _campaign_error(
    request: Request,
    db: Session,
    principal: Principal,
    campaign_id: int,
    exc: AppError,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    db.rollback()
    ctx = _campaign_context(db, request, principal, campaign_id, None, None)
    return render(
        request,
        "inspections/campaign.html",
        status=exc.status,
        error=exc,
        values=values or {},
        **ctx,
    )


@router.post("/campaigns/{campaign_id}/import", response_class=HTMLResponse)
async def import_csv(
    request: Request, db: SessionDep, principal: Manager, campaign_id: int
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    upload = form.get("file")
    data = (
        await upload.read(service.CSV_MAX_BYTES + 1) if isinstance(upload, StarletteUpload) else b""
    )
    try:
        if not data:
            raise AppError(422, "no_file", "Choose a CSV file", "请选择要导入的 CSV 文件")
        report = service.import_targets_csv(
            db, campaign_id=campaign_id, data=data, actor=principal, now=utcnow()
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _campaign_error(request, db, principal, campaign_id, exc)
    db.commit()
    return _redirect(
        f"/inspections/campaigns/{campaign_id}?done=import:{report.created}:{report.updated}"
    )


@router.post("/campaigns/{campaign_id}/targets", response_class=HTMLResponse)
async def add_target(
    request: Request, db: SessionDep, principal: Manager, campaign_id: int
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        data = TargetIn.model_validate(
            {
                k: values[k]
                for k in (
                    "code",
                    "name",
                    "address",
                    "lon",
                    "lat",
                    "datum",
                    "build_year",
                    "property_company",
                    "contact_name",
                    "contact_phone",
                )
                if values.get(k, "").strip()
            }
        )
        t, _ = service.add_target(
            db, campaign_id=campaign_id, data=data, actor=principal, source="map", now=utcnow()
        )
    except ValidationError as exc:
        return _campaign_error(
            request, db, principal, campaign_id, service.validation_error(exc), values
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _campaign_error(request, db, principal, campaign_id, exc, values)
    db.commit()
    return _redirect(f"/inspections/targets/{t.id}")


@router.post("/campaigns/{campaign_id}/inspectors", response_class=HTMLResponse)
def add_inspector(
    request: Request,
    db: SessionDep,
    principal: Manager,
    campaign_id: int,
    grid_code: Annotated[str, Form(max_length=32)],
    person_code: Annotated[str, Form(max_length=32)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    try:
        service.assign_inspector(
            db,
            campaign_id=campaign_id,
            grid_code=grid_code.strip(),
            person_code=person_code.strip().upper(),
            actor=principal,
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _campaign_error(request, db, principal, campaign_id, exc)
    db.commit()
    return _redirect(f"/inspections/campaigns/{campaign_id}?done=inspector#inspectors")


@router.get("/campaigns/{campaign_id}/figures", response_class=HTMLResponse)
def figures_page(
    request: Request, db: SessionDep, principal: Reader, campaign_id: int
) -> HTMLResponse:
    campaign = service.get_campaign(db, campaign_id=campaign_id)
    figs = figures_mod.campaign_figures(
        db, campaign_id=campaign.id, actor=principal, as_of=utcnow()
    )
    return render(
        request, "inspections/figures.html", campaign=campaign, figures=figs, labels=LABELS
    )


# -- a target ---------------------------------------------------------------------------


def _target_context(db: Session, principal: Principal, target_id: int, lang: str) -> dict[str, Any]:
    t, campaign = service.get_target(db, target_id=target_id, actor=principal)
    now = utcnow()
    findings = service.list_findings(
        db, campaign_id=campaign.id, actor=principal, now=now, target_id=t.id
    )
    photos = service.target_photos(db, target_id=t.id)
    return {
        "target": service.target_read(db, target=t),
        "campaign": campaign,
        "findings": findings,
        "photos": photos,
        "inspections": service.target_inspections(db, target_id=t.id),
        "events": service.target_events(db, target_id=t.id, lang=lang),
        "letters": service.list_letters(
            db, campaign_id=campaign.id, actor=principal, target_id=t.id
        ),
        "can_inspect": service.can_inspect(db, actor=principal, campaign=campaign, target=t),
        "manage": service.can_manage(principal, campaign),
        "departments": org_service.get_departments(db),
        "labels": LABELS,
        "checklist": {i.code: i for i in service.checklist(campaign)},
        "limits": campaign.rectify_limits,
    }


@router.get("/targets/{target_id}", response_class=HTMLResponse)
def target_page(
    request: Request, db: SessionDep, principal: Reader, target_id: int, done: str | None = None
) -> HTMLResponse:
    ctx = _target_context(db, principal, target_id, _lang(request))
    return render(request, "inspections/target.html", done=done, **ctx)


def _target_error(
    request: Request, db: Session, principal: Principal, target_id: int, exc: AppError
) -> HTMLResponse:
    db.rollback()
    ctx = _target_context(db, principal, target_id, _lang(request))
    return render(request, "inspections/target.html", status=exc.status, error=exc, **ctx)


@router.post("/targets/{target_id}/assign", response_class=HTMLResponse)
async def assign(
    request: Request, db: SessionDep, principal: Inspector, target_id: int
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    try:
        ids = [int(str(v)) for v in form.getlist("finding_ids") if str(v).isdigit()]
        if not ids:
            raise AppError(422, "no_findings", "Choose at least one finding", "请勾选要交办的问题")
        raw = {
            k: str(form.get(k, ""))
            for k in (
                "method",
                "responsible_party",
                "responsible_contact",
                "responsible_phone",
                "guidance",
                "note",
                "contact_name",
                "contact_phone",
                "copy_to",
                "guide_department_code",
                "limit_workdays",
            )
        }
        data = RectifyAssign.model_validate(
            {
                **{k: v for k, v in raw.items() if v.strip()},
                "finding_ids": ids,
            }
        )
        service.assign(db, target_id=target_id, data=data, actor=principal, now=utcnow())
    except ValidationError as exc:
        return _target_error(request, db, principal, target_id, service.validation_error(exc))
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _target_error(request, db, principal, target_id, exc)
    db.commit()
    return _redirect(f"/inspections/targets/{target_id}?done=assign#findings")


@router.post("/findings/{finding_id}/report-done", response_class=HTMLResponse)
async def report_done(
    request: Request, db: SessionDep, principal: Inspector, finding_id: int
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    f = db.get(Finding, finding_id)
    if f is None:
        raise AppError(404, "not_found", "No such finding", "未找到该问题")
    photos = [
        PhotoUpload(filename=v.filename or "", data=await v.read(service.PHOTO_MAX_BYTES + 1))
        for v in form.getlist("photos")
        if isinstance(v, StarletteUpload) and v.filename
    ]
    try:
        service.report_rectified(
            db,
            finding_id=finding_id,
            note=str(form.get("note", "")),
            photos=photos,
            actor=principal,
            now=utcnow(),
        )
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _target_error(request, db, principal, f.target_id, exc)
    db.commit()
    return _redirect(f"/inspections/targets/{f.target_id}?done=report#finding-{finding_id}")


@router.post("/findings/{finding_id}/void", response_class=HTMLResponse)
def void(
    request: Request,
    db: SessionDep,
    principal: Manager,
    finding_id: int,
    note: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    f = db.get(Finding, finding_id)
    if f is None:
        raise AppError(404, "not_found", "No such finding", "未找到该问题")
    try:
        service.void_finding(db, finding_id=finding_id, note=note, actor=principal, now=utcnow())
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _target_error(request, db, principal, f.target_id, exc)
    db.commit()
    return _redirect(f"/inspections/targets/{f.target_id}?done=void#findings")


# -- the phone form ---------------------------------------------------------------------


def _open_findings(db: Session, target_id: int) -> list[tuple[Finding, Rectification | None]]:
    rows = db.execute(
        select(Finding, Rectification)
        .outerjoin(Rectification, Rectification.id == Finding.rectification_id)
        .where(Finding.target_id == target_id, Finding.state.in_(("rectifying", "rectified")))
        .order_by(Finding.id)
    ).all()
    return [(f, r) for f, r in rows]


def _form_context(db: Session, principal: Principal, target: Target, kind: str) -> dict[str, Any]:
    campaign = service.get_campaign(db, campaign_id=target.campaign_id)
    return {
        "target": service.target_read(db, target=target),
        "campaign": campaign,
        "kind": kind,
        "items": service.checklist(campaign),
        "open_findings": _open_findings(db, target.id),
        "labels": LABELS,
        # A fresh key per page: a form posted without script still gets one; with script the
        # draft's own key (kept across reloads) replaces it.
        "client_key": "k" + secrets.token_urlsafe(18),
        "config": {
            "targetId": target.id,
            "kind": kind,
            "draftKey": f"wg-insp:{principal.user_id}:{target.id}:{kind}",
            "submitUrl": f"/inspections/targets/{target.id}/submit",
            "doneUrl": f"/inspections/targets/{target.id}?done={kind}",
            "target": {"lon": target.lon, "lat": target.lat},
        },
    }


@router.get("/targets/{target_id}/inspect", response_class=HTMLResponse)
def inspect_form(
    request: Request, db: SessionDep, principal: Inspector, target_id: int, kind: str = ""
) -> HTMLResponse:
    t, campaign = service.get_target(db, target_id=target_id, actor=principal)
    if not service.can_inspect(db, actor=principal, campaign=campaign, target=t):
        raise AppError(
            403,
            "forbidden",
            "You are not an inspector of this target",
            "您不是该对象所在网格的检查人员",
        )
    kind = kind or ("initial" if t.inspected_at is None else "reinspection")
    if kind not in ("initial", "reinspection"):
        raise AppError(404, "not_found", "No such form", "页面不存在")
    return render(request, "inspections/inspect.html", **_form_context(db, principal, t, kind))


def _submission(form: Any, kind: str, tags: list[str]) -> InspectionSubmit:
    """The form's fields as an InspectionSubmit. Field names: answer__<code>, note__<code>,
    method__<code>; verdict__<finding>, vnote__<finding>, vmethod__<finding>; files
    photo__<tag>."""

    def s(name: str) -> str:
        return str(form.get(name, "") or "").strip()

    def num(name: str) -> float | None:
        try:
            return float(s(name)) if s(name) else None
        except ValueError:
            return None

    answers: dict[str, Any] = {}
    verdicts: dict[int, Any] = {}
    for name in form:
        if name.startswith("answer__"):
            code = name[len("answer__") :]
            answers[code] = {
                "answer": s(name),
                "note": s(f"note__{code}"),
                "method": s(f"method__{code}") or None,
            }
        elif name.startswith("verdict__") and name[len("verdict__") :].isdigit():
            fid = int(name[len("verdict__") :])
            verdicts[fid] = {
                "result": s(name),
                "note": s(f"vnote__{fid}"),
                "method": s(f"vmethod__{fid}") or None,
            }
    return InspectionSubmit.model_validate(
        {
            "client_key": s("client_key"),
            "kind": kind,
            "lon": num("lon"),
            "lat": num("lat"),
            "accuracy_m": num("accuracy"),
            "observed_at": s("observed_at") or None,
            "notes": s("notes"),
            "answers": answers,
            "verdicts": verdicts,
            "responsible_party": s("responsible_party"),
            "responsible_contact": s("responsible_contact"),
            "responsible_phone": s("responsible_phone"),
            "photo_tags": tags,
        }
    )


@router.post("/targets/{target_id}/submit", response_class=HTMLResponse)
async def submit(
    request: Request, db: SessionDep, principal: Inspector, target_id: int
) -> Response:
    form = await request.form()
    check_csrf(request, str(form.get("csrf", "")))
    kind = str(form.get("kind", "initial"))
    photos: list[PhotoUpload] = []
    tags: list[str] = []
    for name, value in form.multi_items():
        if name.startswith("photo__") and isinstance(value, StarletteUpload) and value.filename:
            photos.append(
                PhotoUpload(
                    filename=value.filename, data=await value.read(service.PHOTO_MAX_BYTES + 1)
                )
            )
            tags.append(name[len("photo__") :])
    try:
        data = _submission(form, kind, tags)
        out = service.submit_inspection(
            db, target_id=target_id, data=data, photos=photos, actor=principal, now=utcnow()
        )
    except ValidationError as exc:
        err = service.validation_error(exc)
        return _submit_error(request, db, principal, target_id, kind, err)
    except AppError as exc:
        if exc.status >= 500:
            raise
        return _submit_error(request, db, principal, target_id, kind, exc)
    db.commit()
    if _wants_json(request):
        return JSONResponse(out.model_dump(mode="json"), status_code=200 if out.replayed else 201)
    return _redirect(f"/inspections/targets/{target_id}?done={kind}")


def _submit_error(
    request: Request, db: Session, principal: Principal, target_id: int, kind: str, exc: AppError
) -> Response:
    db.rollback()
    if _wants_json(request):
        return JSONResponse(exc.as_dict(), status_code=exc.status)
    t, _ = service.get_target(db, target_id=target_id, actor=principal)
    return render(
        request,
        "inspections/inspect.html",
        status=exc.status,
        error=exc,
        **_form_context(db, principal, t, kind),
    )


# -- letters ----------------------------------------------------------------------------


@router.get("/letters/{letter_id}", response_class=HTMLResponse)
def letter_page(
    request: Request, db: SessionDep, principal: Reader, letter_id: int
) -> HTMLResponse:
    letter = service.get_letter(db, letter_id=letter_id, actor=principal)
    target = db.get(Target, letter.target_id)
    assert target is not None
    campaign = service.get_campaign(db, campaign_id=target.campaign_id)
    return render(
        request,
        "inspections/letter.html",
        letter=letter,
        target=target,
        campaign=campaign,
        labels=LABELS,
    )
