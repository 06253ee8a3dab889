"""Work-order pages: the public report form and tracking page, the staff inbox, the order
detail with the actions allowed to the viewer, the dispatch desk, and the open orders on a
grid card.

Pages decide nothing about work orders: every rule (validation, routing, who may take which
action) lives in `workorders.service` and `workorders.lifecycle`; this module turns forms into
service calls and service answers and errors into Chinese-first HTML."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, TypeAlias
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from shapely.geometry import mapping, shape
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from watergrid import db as dbmod
from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, forbidden
from watergrid.geo import locate as geo_locate
from watergrid.geo import service as geo_service
from watergrid.geo.api import to_datum
from watergrid.geo.datum import gcj02_to_wgs84, wgs84_to_gcj02
from watergrid.geo.pages import feature_collection, map_datum, tile_config
from watergrid.org import service as org_service
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.settings import get_settings
from watergrid.web.i18n import language, translate
from watergrid.web.render import check_csrf, local_time, render, templates
from watergrid.workorders import lifecycle, service
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.intake import MAX_DESCRIPTION
from watergrid.workorders.photos import PhotoUpload
from watergrid.workorders.schemas import (
    CategoryRead,
    OrderCreate,
    OrderFilter,
    OrderRead,
    OrderSummary,
    PublicOrder,
)

router = APIRouter(include_in_schema=False)
Anyone: TypeAlias = Annotated[Principal | None, Depends(public)]
Reader: TypeAlias = Annotated[Principal, Depends(allow("orders.read"))]
Actor: TypeAlias = Annotated[Principal, Depends(allow("orders.act"))]

ANON_COOKIE = "wg_anon"
PAGE_SIZE = 20
DESK_STATES = ("submitted", "accepted", "returned")


async def _form(request: Request) -> FormData:
    # Starlette caches the parsed body on the request, so the route (running in the thread
    # pool) reads the same FormData, dynamic attribute fields and files included.
    return await request.form()


FormDep: TypeAlias = Annotated[FormData, Depends(_form)]


# -- small helpers ------------------------------------------------------------------------


def _lang(request: Request) -> str:
    return language(request, get_settings().default_language)


def _msg(lang: str, en: str, zh: str) -> str:
    return en if lang == "en" and en else zh


def _ensure_anon_cookie(request: Request, build: Callable[[], HTMLResponse]) -> HTMLResponse:
    """Public forms carry a CSRF token bound to a per-browser cookie (web.render.csrf_token).
    A first visit has no cookie yet: set one and render with it, so that the token in the
    page matches the cookie the browser sends back."""
    if request.cookies.get("wg_session") or request.cookies.get(ANON_COOKIE):
        return build()
    anon = secrets.token_urlsafe(16)
    request.cookies[ANON_COOKIE] = anon
    response = build()
    response.set_cookie(ANON_COOKIE, anon, httponly=True, samesite="lax")
    return response


def _csrf_ok(request: Request, token: str | None) -> bool:
    try:
        check_csrf(request, token)
    except AppError:
        return False
    return True


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def _uploads(form: FormData, name: str = "photos") -> list[PhotoUpload]:
    """Files sent with the form (the path without JavaScript; with it, photos are uploaded
    one by one first and only their keys travel with the form)."""
    limit = get_wo_settings().photo_max_bytes
    out = []
    for f in form.getlist(name):
        if isinstance(f, UploadFile) and f.filename:
            # One byte past the limit is enough for the service to refuse an oversize file.
            data = f.file.read(limit + 1)
            if data:
                out.append(
                    PhotoUpload(filename=f.filename, data=data, content_type=f.content_type or "")
                )
    return out


def _slot(field_name: str) -> str:
    """Where on a page a service error's field is shown."""
    if field_name.startswith("photos") or field_name in ("attachment_keys", "file"):
        return "photos"
    return field_name


@dataclass
class Problems:
    """Errors to show: by form slot (next to the field) and general ones (at the top)."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add_field(self, slot: str, text: str) -> None:
        self.fields[slot] = f"{self.fields[slot]}；{text}" if slot in self.fields else text

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


# Action parameters by the name their form gives them: the service's message for a missing
# parameter quotes its code (“派单”需要填写 department_code), which a page should not show.
PARAM_LABELS = {
    "reason": "orders.actions.reason",
    "department_code": "orders.actions.department",
    "mode": "orders.actions.mode",
    "amount": "orders.actions.amount_plain",
    "into_number": "orders.actions.into",
}


def _problems_of(exc: AppError, lang: str, known_slots: set[str]) -> Problems:
    p = Problems()
    for fe in exc.fields:
        slot = _slot(fe.field)
        text = _msg(lang, fe.message, fe.message_zh)
        if fe.field in PARAM_LABELS and fe.field in text:
            text = text.replace(fe.field, translate(lang, PARAM_LABELS[fe.field]))
        if slot in known_slots or slot.startswith("attributes."):
            p.add_field(slot, text)
        else:
            p.general.append(text)
    if not exc.fields:
        p.general.append(_msg(lang, exc.message, exc.message_zh))
    return p


def _span(lang: str, seconds: float) -> str:
    minutes = max(1, int(abs(seconds) // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return translate(lang, "orders.dur.dh", d=days, h=hours)
    if hours:
        return translate(lang, "orders.dur.hm", h=hours, m=mins)
    return translate(lang, "orders.dur.m", m=mins)


@dataclass(frozen=True)
class DueView:
    """One deadline as the pages show it: local time, and how it stands now."""

    kind: str  # response / handling
    due: datetime | None
    status: str  # left, near, over, met, late, paused, stopped, pending
    text: str


def _due_view(
    lang: str,
    *,
    kind: str,
    due: datetime | None,
    done_at: datetime | None,
    state: str,
    now: datetime,
) -> DueView:
    t = lambda key, **v: translate(lang, key, **v)  # noqa: E731
    if due is None:
        return DueView(kind, None, "pending", t(f"orders.due.pending_{kind}"))
    if done_at is not None:
        on_time = done_at <= due
        key = "orders.due.met" if on_time else "orders.due.late"
        return DueView(kind, due, "met" if on_time else "late", t(key, at=local_time(done_at)))
    if state in lifecycle.FINAL_STATES:
        return DueView(kind, due, "stopped", t("orders.due.stopped"))
    if state == "suspended":
        return DueView(kind, due, "paused", t("orders.due.paused"))
    left = (due - now).total_seconds()
    if left < 0:
        return DueView(kind, due, "over", t("orders.due.over", span=_span(lang, left)))
    near = left <= get_wo_settings().near_deadline_hours * 3600
    return DueView(
        kind, due, "near" if near else "left", t("orders.due.left", span=_span(lang, left))
    )


def _current_due(lang: str, o: OrderSummary, now: datetime) -> DueView:
    """The deadline that matters now: the response one until someone has responded, then
    the handling one."""
    if o.responded_at is None and o.state not in lifecycle.DONE_STATES:
        return _due_view(
            lang, kind="response", due=o.response_due_at, done_at=None, state=o.state, now=now
        )
    return _due_view(
        lang,
        kind="handling",
        due=o.handling_due_at,
        done_at=o.resolved_at,
        state=o.state,
        now=now,
    )


def _labels() -> dict[str, Any]:
    """The state machine's own names for states, actions and reasons: one source of truth
    for the pages and the API."""
    return {
        "states": lifecycle.STATE_LABELS,
        "action": lifecycle.label,
        "reasons": lifecycle.REJECT_REASONS,
        "groups": SERVICE_CATEGORIES,
    }


# -- maps ---------------------------------------------------------------------------------


def _round(geom: dict[str, Any], digits: int = 5) -> dict[str, Any]:
    def walk(c: Any) -> Any:
        if isinstance(c, (int, float)):
            return round(c, digits)
        return [walk(x) for x in c]

    return {"type": geom["type"], "coordinates": walk(geom["coordinates"])}


@lru_cache(maxsize=8)
def _outlines_cached(version: int, datum: str) -> dict[str, Any]:
    with dbmod.session_scope(write=False) as db:
        areas = [
            a for a in geo_service.get_all(db) if a.kind in ("district", "subdistrict", "grid")
        ]
        features = []
        for a in areas:
            # About 20 m: plenty for finding one's street, a third of the bytes.
            simple = mapping(shape(a.geometry).simplify(0.0002, preserve_topology=True))
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "kind": a.kind,
                        "code": a.code,
                        "name_zh": a.name_zh,
                        "name_en": a.name_en,
                    },
                    "geometry": _round(to_datum(dict(simple), datum)),
                }
            )
    return {"type": "FeatureCollection", "features": features}


def _outlines(db: Session, datum: str) -> dict[str, Any]:
    """District, subdistrict and grid outlines for the public form's map: with no basemap
    they are what a reporter finds their street by. Cached per registry version."""
    return _outlines_cached(geo_service.registry_version(db), datum)


def _to_map(lon: float, lat: float, datum: str) -> tuple[float, float]:
    if datum == "gcj02":
        x, y = wgs84_to_gcj02(lon, lat)
        return float(x), float(y)
    return lon, lat


def _report_map_config(
    db: Session, *, zone_code: str | None, lon: float | None, lat: float | None, lang: str
) -> dict[str, Any]:
    datum = map_datum()
    cfg: dict[str, Any] = {
        "tiles": tile_config(),
        "datum": datum,
        "outlines": _outlines(db, datum),
        "focus": None,
        "point": None,
        "lang": lang,
    }
    if zone_code:
        zone = geo_service.get(db, code=zone_code)
        if zone is not None and zone.kind == "zone":
            cfg["focus"] = feature_collection([(zone, "main")], datum=datum, lang=lang)
    if lon is not None and lat is not None and math.isfinite(lon) and math.isfinite(lat):
        # A point kept across an error: say again where it is, so an outside point is not
        # mistaken for a good one.
        cfg["point"] = list(_to_map(lon, lat, datum))
        cfg["where"] = _where(db, lon=lon, lat=lat, lang=lang)
    return cfg


# -- the public report form ---------------------------------------------------------------


@dataclass
class ReportValues:
    """What the reporter typed, kept across an error so nothing has to be entered twice."""

    category_code: str = ""
    lon: float | None = None
    lat: float | None = None
    address: str = ""
    description: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    reporter_name: str = ""
    reporter_phone: str = ""
    phone_consent: bool = False
    attachment_keys: list[str] = field(default_factory=list)
    zone_code: str = ""
    idem: str = ""
    source: str = ""


def _float(raw: str) -> float | None:
    try:
        v = float(raw)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _new_idem() -> str:
    return "web-" + secrets.token_urlsafe(18)


def _report_values(form: FormData, categories: dict[str, CategoryRead]) -> ReportValues:
    v = ReportValues(
        category_code=_text(form, "category_code"),
        lon=_float(_text(form, "lon")),
        lat=_float(_text(form, "lat")),
        address=_text(form, "address"),
        # Not stripped: the counter and the service see exactly what was typed.
        description=str(form.get("description") or ""),
        reporter_name=_text(form, "reporter_name"),
        reporter_phone=_text(form, "reporter_phone"),
        phone_consent=_text(form, "phone_consent") in ("1", "on", "yes", "true"),
        attachment_keys=list(dict.fromkeys(_texts(form, "attachment_keys")))[:12],
        zone_code=_text(form, "zone")[:32],
        idem=_text(form, "idem"),
        source=_text(form, "source"),
    )
    cat = categories.get(v.category_code)
    if cat is not None:
        # Only the chosen category's questions count; the others' fields stay in the page.
        prefix = f"attr.{cat.code}."
        for a in cat.attributes:
            if not a.variable:
                continue
            name = prefix + a.code
            if a.datatype == "multivaluelist":
                values = _texts(form, name)
                if values:
                    v.attributes[a.code] = values
            else:
                value = _text(form, name)
                if value:
                    v.attributes[a.code] = value
    return v


def _grouped(categories: list[CategoryRead]) -> list[tuple[str, str, str, list[CategoryRead]]]:
    out = []
    for code, (zh, en) in SERVICE_CATEGORIES.items():
        members = [c for c in categories if c.group_code == code]
        if members:
            out.append((code, zh, en, members))
    return out


def _zone_area(db: Session, code: str) -> Any:
    if not code:
        return None
    z = geo_service.get(db, code=code.upper())
    return z if z is not None and z.kind == "zone" else None


REPORT_SLOTS = {
    "category_code",
    "location",
    "address",
    "description",
    "photos",
    "reporter_name",
    "reporter_phone",
    "phone_consent",
}


# What a signed-in staff member may record a report as: found on patrol (self-discovered,
# counted in the self-discovery rate), a phone call taken, or on a resident's behalf.
STAFF_SOURCES = ("patrol", "phone", "public_web")


def _staff_sources(principal: Principal | None) -> tuple[str, ...]:
    if principal is not None and principal.can("orders.create_staff"):
        return STAFF_SOURCES
    return ()


def _source(values: ReportValues, principal: Principal | None, zone: Any) -> str:
    if values.source in _staff_sources(principal):
        return values.source
    return "service_card" if zone is not None else "public_web"


def _render_report(
    request: Request,
    db: Session,
    *,
    values: ReportValues,
    problems: Problems | None = None,
    status: int = 200,
) -> HTMLResponse:
    lang = _lang(request)
    principal: Principal | None = getattr(request.state, "principal", None)
    if not values.source and principal is not None and _staff_sources(principal):
        # A grid member's own report is, most of the time, what they found on patrol.
        values.source = "patrol" if "grid_member" in principal.roles else ""
    categories = service.list_categories(db)
    zone = _zone_area(db, values.zone_code)
    cfg = _report_map_config(
        db, zone_code=zone.code if zone else None, lon=values.lon, lat=values.lat, lang=lang
    )
    return render(
        request,
        "orders/report.html",
        status=status,
        groups=_grouped(categories),
        values=values,
        zone=zone,
        problems=problems or Problems(),
        map_config=cfg,
        description_max=MAX_DESCRIPTION,
        photo_max=get_wo_settings().photo_max_count,
        photo_max_mb=get_wo_settings().photo_max_bytes // (1024 * 1024),
        labels=_labels(),
        staff_sources=_staff_sources(principal),
    )


@router.get("/report", response_class=HTMLResponse)
def report_form(request: Request, db: SessionDep, _: Anyone, zone: str = "") -> HTMLResponse:
    """The public form. `?zone=CODE` comes from a zone's service card (/s/CODE): the order is
    filed under that zone and counted as a service-card report."""
    z = _zone_area(db, zone)
    values = ReportValues(zone_code=z.code if z else "", idem=_new_idem())
    return _ensure_anon_cookie(request, lambda: _render_report(request, db, values=values))


@router.post("/report", response_class=HTMLResponse)
def report_submit(
    request: Request, db: SessionDep, principal: Anyone, form: FormDep
) -> HTMLResponse:
    lang = _lang(request)
    categories = {c.code: c for c in service.list_categories(db)}
    values = _report_values(form, categories)
    limit = get_wo_settings().idempotency_key_max_length
    if not (0 < len(values.idem) <= limit and values.idem.isascii() and values.idem.isprintable()):
        # A form without a usable key (not made by this page) is given one, which the page
        # shown again (after an error) carries from then on.
        values.idem = _new_idem()
    problems = Problems()
    if not _csrf_ok(request, _text(form, "csrf")):
        # Nothing was taken: show the form again, filled in, with a fresh token.
        problems.general.append(translate(lang, "orders.err.csrf"))
        return _ensure_anon_cookie(
            request,
            lambda: _render_report(request, db, values=values, problems=problems, status=403),
        )

    photos = _uploads(form)
    zone = _zone_area(db, values.zone_code)
    source = _source(values, principal, zone)
    try:
        data = OrderCreate.model_validate(
            {
                "category_code": values.category_code,
                # The service strips the text and reports an empty one in its own words;
                # the schema alone would refuse "" with a bare English message.
                "description": values.description or " ",
                # No point yet: NaN makes the service report the location along with every
                # other problem in one answer (and it is replaced by a clearer message).
                "lon": values.lon if values.lon is not None else math.nan,
                "lat": values.lat if values.lat is not None else math.nan,
                "address": values.address,
                "attributes": values.attributes,
                "reporter_name": values.reporter_name,
                "reporter_phone": values.reporter_phone,
                "phone_consent": values.phone_consent,
                "zone_code": zone.code if zone else None,
                "attachment_keys": values.attachment_keys,
            }
        )
    except ValidationError as exc:
        for e in exc.errors():
            name = str(e["loc"][0]) if e["loc"] else ""
            problems.add_field(
                name if name in REPORT_SLOTS else "general",
                translate(lang, f"orders.err.too_long.{name}")
                if name in ("address", "reporter_name")
                else translate(lang, "orders.err.format"),
            )
        if "general" in problems.fields:
            problems.general.append(problems.fields.pop("general"))
        return _render_report(request, db, values=values, problems=problems, status=422)

    try:
        # A savepoint: on refusal nothing of the attempt is left for the request's own
        # commit (the page answers normally, so the session would otherwise commit).
        with db.begin_nested():
            result = service.create_order(
                db,
                data=data,
                source=source,
                actor=principal,
                idempotency_key=values.idem,
                now=utcnow(),
                photos=photos,
            )
    except AppError as exc:
        if exc.code == "idempotency_conflict":
            # The same page was sent before with other content (back button after a
            # success): keep what is typed, and let the next tap make a new report.
            values.idem = _new_idem()
            problems.general.append(translate(lang, "orders.err.already_sent"))
        else:
            problems = _problems_of(exc, lang, REPORT_SLOTS)
            if values.lon is None and "location" in problems.fields:
                problems.fields["location"] = translate(lang, "orders.report.pick_point")
        if photos and "photos" not in problems.fields:
            problems.add_field("photos", translate(lang, "orders.err.photos_again"))
        return _render_report(request, db, values=values, problems=problems, status=exc.status)
    # Durable before the reporter sees a number (the request session would commit only
    # after the response is on its way).
    db.commit()
    receipt = result.receipt
    return render(
        request,
        "orders/receipt.html",
        status=200 if result.replayed else 201,
        receipt=receipt,
        replayed=result.replayed,
        labels=_labels(),
    )


def _where(db: Session, *, lon: float, lat: float, lang: str) -> dict[str, Any]:
    """Where a WGS84 point lies, in words: the subdistrict and community grid, or that it is
    outside the district (the service's own message)."""
    try:
        loc = geo_locate.locate(db, lon=lon, lat=lat)
    except AppError as exc:
        return {"inside": False, "text": _msg(lang, exc.message, exc.message_zh)}
    sub = _msg(lang, loc.subdistrict.name_en, loc.subdistrict.name_zh)
    grid = _msg(lang, loc.grid.name_en, loc.grid.name_zh)
    return {
        "inside": True,
        "grid": loc.grid.code,
        "text": translate(lang, "orders.report.where", subdistrict=sub, grid=grid),
    }


@router.get("/report/where")
def report_where(
    request: Request,
    db: SessionDep,
    _: Anyone,
    lon: float,
    lat: float,
    given: str = Query("map", pattern="^(map|wgs84)$"),
) -> JSONResponse:
    """Where a tapped (or GPS) point lies, for the form to confirm it at once. Answers the
    point both in WGS84 (what the form sends) and in the map's datum (where the pin is
    drawn), so that a GCJ-02 basemap and a GPS fix line up."""
    datum = map_datum()
    if given == "map" and datum == "gcj02":
        wlon, wlat = (float(c) for c in gcj02_to_wgs84(lon, lat))
    else:
        wlon, wlat = lon, lat
    mlon, mlat = _to_map(wlon, wlat, datum)
    answer: dict[str, Any] = {"wgs84": [round(wlon, 7), round(wlat, 7)], "map": [mlon, mlat]}
    answer.update(_where(db, lon=wlon, lat=wlat, lang=_lang(request)))
    return JSONResponse(answer)


# -- the public tracking page ---------------------------------------------------------------


@dataclass
class TrackValues:
    number: str = ""
    phone_last4: str = ""
    token: str = ""


TRACK_SLOTS = {"number", "phone_last4", "score", "comment"}


def _track_values(form: FormData) -> TrackValues:
    return TrackValues(
        number=_text(form, "number").upper()[:20],
        phone_last4=_text(form, "phone_last4")[:8],
        token=_text(form, "token")[:64],
    )


def _render_track(
    request: Request,
    *,
    values: TrackValues,
    order: PublicOrder | None = None,
    problems: Problems | None = None,
    rating_problems: Problems | None = None,
    comment: str = "",
    score: int | None = None,
    thanks: bool = False,
    status: int = 200,
) -> HTMLResponse:
    lang = _lang(request)
    now = utcnow()
    dues = []
    if order is not None:
        dues = [
            _due_view(
                lang,
                kind="response",
                due=order.response_due_at,
                done_at=order.responded_at,
                state=order.state,
                now=now,
            ),
            _due_view(
                lang,
                kind="handling",
                due=order.handling_due_at,
                done_at=order.resolved_at,
                state=order.state,
                now=now,
            ),
        ]
    return render(
        request,
        "orders/track.html",
        status=status,
        values=values,
        order=order,
        dues=dues,
        problems=problems or Problems(),
        rating_problems=rating_problems or Problems(),
        comment=comment,
        score=score,
        thanks=thanks,
        labels=_labels(),
    )


def _check_track_input(lang: str, v: TrackValues) -> Problems:
    p = Problems()
    if not v.number:
        p.add_field("number", translate(lang, "orders.track.need_number"))
    if not v.token and not (len(v.phone_last4) == 4 and v.phone_last4.isdigit()):
        p.add_field("phone_last4", translate(lang, "orders.track.need_last4"))
    return p


@router.get("/track", response_class=HTMLResponse)
def track_form(request: Request, _: Anyone, number: str = "") -> HTMLResponse:
    # The number may come in the link; the phone digits never do (they would sit in logs).
    values = TrackValues(number=number.strip().upper()[:20])
    return _ensure_anon_cookie(request, lambda: _render_track(request, values=values))


@router.post("/track", response_class=HTMLResponse)
def track_lookup(request: Request, db: SessionDep, _: Anyone, form: FormDep) -> HTMLResponse:
    lang = _lang(request)
    values = _track_values(form)
    if not _csrf_ok(request, _text(form, "csrf")):
        p = Problems(general=[translate(lang, "orders.err.csrf")])
        return _ensure_anon_cookie(
            request, lambda: _render_track(request, values=values, problems=p, status=403)
        )
    problems = _check_track_input(lang, values)
    if problems:
        return _render_track(request, values=values, problems=problems, status=422)
    try:
        order = service.track(
            db,
            number=values.number,
            phone_last4=None if values.token else values.phone_last4,
            token=values.token or None,
        )
    except AppError as exc:
        return _render_track(
            request, values=values, problems=_problems_of(exc, lang, TRACK_SLOTS), status=exc.status
        )
    return _render_track(request, values=values, order=order)


@router.post("/track/rate", response_class=HTMLResponse)
def track_rate(request: Request, db: SessionDep, _: Anyone, form: FormDep) -> HTMLResponse:
    lang = _lang(request)
    values = _track_values(form)
    comment = str(form.get("comment") or "")
    raw_score = _text(form, "score")
    score = int(raw_score) if raw_score.isdigit() else None
    last4 = None if values.token else values.phone_last4
    token = values.token or None
    if not _csrf_ok(request, _text(form, "csrf")):
        p = Problems(general=[translate(lang, "orders.err.csrf")])
        return _ensure_anon_cookie(
            request, lambda: _render_track(request, values=values, problems=p, status=403)
        )
    problems = _check_track_input(lang, values)
    if problems:
        return _render_track(request, values=values, problems=problems, status=422)
    rating = Problems()
    if score is None:
        rating.add_field("score", translate(lang, "orders.rate.need_score"))
    else:
        try:
            with db.begin_nested():
                order = service.rate(
                    db,
                    number=values.number,
                    phone_last4=last4,
                    token=token,
                    score=score,
                    comment=comment,
                    now=utcnow(),
                )
        except AppError as exc:
            rating = _problems_of(exc, lang, TRACK_SLOTS)
        else:
            db.commit()
            return _render_track(request, values=values, order=order, thanks=True)
    try:
        order = service.track(db, number=values.number, phone_last4=last4, token=token)
    except AppError as exc:
        return _render_track(
            request, values=values, problems=_problems_of(exc, lang, TRACK_SLOTS), status=exc.status
        )
    return _render_track(
        request,
        values=values,
        order=order,
        rating_problems=rating,
        comment=comment,
        score=score,
        status=422,
    )


# -- staff: the inbox -----------------------------------------------------------------------


def _flash(action: str, number: str) -> tuple[str, str] | None:
    """(action, order number) after a redirect, shown once as a confirmation."""
    number = number.strip().upper()[:20]
    return (action, number) if action in lifecycle.ACTIONS and number else None


def _staff_nav(principal: Principal) -> dict[str, bool]:
    return {"desk": _may_use_desk(principal)}


def _may_use_desk(principal: Principal) -> bool:
    """The dispatch desk is for whoever the state machine lets dispatch somewhere: the
    desk, leaders, lead departments, chain leaders (scope is checked order by order)."""
    dispatch = lifecycle.find("accepted", "dispatch")
    roles = {role for role, _ in dispatch.grants} if dispatch else set()
    return bool(principal.roles & roles)


@dataclass(frozen=True)
class InboxFilters:
    state: str = "open"
    category: str = ""
    overdue: bool = False
    near: bool = False
    mine: bool = False
    grid: str = ""

    def query(self, **override: Any) -> str:
        values = {
            "state": self.state,
            "category": self.category,
            "overdue": "1" if self.overdue else "",
            "near": "1" if self.near else "",
            "mine": "1" if self.mine else "",
            "grid": self.grid,
            **override,
        }
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _order_filter(f: InboxFilters, categories: set[str]) -> OrderFilter:
    if f.state == "all":
        states = None
    elif f.state in lifecycle.STATES:
        states = [f.state]
    else:
        states = sorted(lifecycle.OPEN_STATES)
    category = f.category if f.category in categories or f.category in SERVICE_CATEGORIES else None
    return OrderFilter(
        state=states,
        category_code=category,
        overdue=True if f.overdue else None,
        near_deadline=True if f.near else None,
        grid_code=f.grid or None,
        mine=f.mine,
    )


@router.get("/orders", response_class=HTMLResponse)
def inbox(
    request: Request,
    db: SessionDep,
    principal: Reader,
    state: str = "open",
    category: str = "",
    overdue: str = "",
    near: str = "",
    mine: str = "",
    grid: str = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    done: str = "",
    n: str = "",
) -> HTMLResponse:
    """My queue: the orders my roles and scopes reach, newest first."""
    lang = _lang(request)
    now = utcnow()
    filters = InboxFilters(
        state=state if state in lifecycle.STATES or state == "all" else "open",
        category=category.strip(),
        overdue=overdue == "1",
        near=near == "1",
        mine=mine == "1" and bool(principal.department_ids),
        grid=grid.strip().upper()[:32],
    )
    categories = service.list_categories(db)
    result = service.list_orders(
        db,
        principal=principal,
        filters=_order_filter(filters, {c.code for c in categories}),
        page=page,
        page_size=PAGE_SIZE,
        now=now,
    )
    pages = max(1, math.ceil(result.total / PAGE_SIZE))
    return render(
        request,
        "orders/inbox.html",
        result=result,
        items=[(o, _current_due(lang, o, now)) for o in result.items],
        counts=service.queue_counts(db, principal=principal, now=now),
        filters=filters,
        groups=_grouped(categories),
        pages=pages,
        has_departments=bool(principal.department_ids),
        done=_flash(done, n),
        nav=_staff_nav(principal),
        labels=_labels(),
    )


# -- staff: the dispatch desk ----------------------------------------------------------------


def _dispatch_departments(db: Session) -> list[Any]:
    """Departments work can be dispatched to: not the desk itself (dispatching there is what
    the service refuses with 请选择承办部门)."""
    return [d for d in org_service.get_departments(db) if d.code != org_service.DISPATCH_DESK_CODE]


def _returned_from(o: OrderRead) -> str | None:
    for e in reversed(o.events):
        if e.action == "return":
            code = e.data.get("from_department")
            return str(code) if code else None
    return None


@router.get("/orders/dispatch", response_class=HTMLResponse)
def dispatch_desk(
    request: Request,
    db: SessionDep,
    principal: Actor,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    done: str = "",
    n: str = "",
) -> HTMLResponse:
    return _render_desk(request, db, principal, page=page, done=_flash(done, n))


def _render_desk(
    request: Request,
    db: Session,
    principal: Principal,
    *,
    page: int = 1,
    error_for: int | None = None,
    problems: Problems | None = None,
    done: tuple[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    if not _may_use_desk(principal):
        raise forbidden()
    lang = _lang(request)
    now = utcnow()
    result = service.list_orders(
        db,
        principal=principal,
        filters=OrderFilter(state=list(DESK_STATES)),
        page=page,
        page_size=PAGE_SIZE,
        now=now,
    )
    rows = []
    for s in result.items:
        o = service.get_order(db, order_id=s.id, principal=principal, now=now)
        suggested = (
            o.department.code
            if o.department and o.department.code != org_service.DISPATCH_DESK_CODE
            else ""
        )
        rows.append(
            {
                "order": o,
                "due": _current_due(lang, o, now),
                "suggested": suggested,
                "returned_from": _returned_from(o),
                "can_dispatch": "dispatch" in o.allowed_actions
                or ("accept" in o.allowed_actions and o.state == "submitted"),
            }
        )
    pages = max(1, math.ceil(result.total / PAGE_SIZE))
    return render(
        request,
        "orders/dispatch.html",
        status=status,
        rows=rows,
        result=result,
        pages=pages,
        departments=_dispatch_departments(db),
        dept_names={d.code: (d.name_zh, d.name_en) for d in org_service.get_departments(db)},
        error_for=error_for,
        problems=problems or Problems(),
        done=done,
        nav=_staff_nav(principal),
        labels=_labels(),
    )


# -- staff: one order ------------------------------------------------------------------------

# Parameters each action's form asks for beyond the note (docs/state-machine.md lists what
# the service requires of each).
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "reject": ("reason",),
    "dispatch": ("department", "co_departments", "priority"),
    "reassign": ("department",),
    "respond": ("mode",),
    "request_extension": ("amount",),
    "merge": ("into_number",),
}
# Actions whose work is worth a picture: arriving on site, the finished job, a check.
PHOTO_ACTIONS = frozenset({"respond", "check_in", "start", "resolve", "verify", "comment"})
# The usual path, shown as big buttons; the rest sit under 更多操作.
MAIN_ACTIONS = (
    "accept",
    "dispatch",
    "check_in",
    "respond",
    "start",
    "resolve",
    "verify",
    "close",
    "resume",
    "approve_extension",
)


@dataclass(frozen=True)
class ActionForm:
    action: str
    label_zh: str
    label_en: str
    fields: tuple[str, ...]
    note_required: bool
    public_note: bool
    photos: bool
    main: bool


def _action_forms(o: OrderRead) -> list[ActionForm]:
    out = []
    for action in o.allowed_actions:
        t = lifecycle.find(o.state, action)
        if t is None:
            continue
        fields = ACTION_FIELDS.get(action, ())
        if action == "dispatch" and o.dispatched_at is not None:
            # The desk may re-grade only before the handling clock starts.
            fields = tuple(f for f in fields if f != "priority")
        out.append(
            ActionForm(
                action=action,
                label_zh=t.label_zh,
                label_en=t.label_en,
                fields=fields,
                note_required=t.note_required,
                public_note=t.public_note,
                photos=action in PHOTO_ACTIONS,
                main=action in MAIN_ACTIONS,
            )
        )
    order = {a: i for i, a in enumerate(MAIN_ACTIONS)}
    out.sort(key=lambda f: (not f.main, order.get(f.action, 99)))
    return out


def _attribute_rows(o: OrderRead, cat: CategoryRead | None, lang: str) -> list[tuple[str, str]]:
    """The category's questions and the reporter's answers, in the category's wording."""
    rows = []
    defs = {a.code: a for a in cat.attributes} if cat else {}
    for code, value in o.attributes.items():
        d = defs.get(code)
        label = _msg(lang, d.description_en, d.description) if d else code
        names = {v.key: _msg(lang, v.name_en, v.name) for v in d.values} if d else {}
        if isinstance(value, list):
            shown = translate(lang, "list.sep").join(names.get(str(x), str(x)) for x in value)
        elif d is not None and d.datatype == "datetime":
            try:
                shown = local_time(datetime.fromisoformat(str(value)))
            except ValueError:
                shown = str(value)
        else:
            shown = names.get(str(value), str(value))
        rows.append((label, shown))
    return rows


def _order_map_config(db: Session, o: OrderRead, lang: str) -> dict[str, Any]:
    datum = map_datum()
    pairs = []
    if o.grid is not None:
        grid = geo_service.get(db, code=o.grid.code)
        if grid is not None:
            pairs.append((grid, "main"))
    return {
        "tiles": tile_config(),
        "point": list(_to_map(o.lon, o.lat, datum)),
        "features": feature_collection(pairs, datum=datum, lang=lang),
    }


@dataclass
class ActionValues:
    """What was typed into an action form, kept when the action is refused."""

    action: str = ""
    note: str = ""
    reason: str = ""
    department_code: str = ""
    co_department_codes: list[str] = field(default_factory=list)
    mode: str = ""
    amount: str = ""
    into_number: str = ""
    priority: str = ""
    attachment_keys: list[str] = field(default_factory=list)


ACTION_SLOTS = {
    "note",
    "reason",
    "department_code",
    "co_department_codes",
    "mode",
    "amount",
    "unit",
    "into_number",
    "priority",
    "photos",
}


def _render_detail(
    request: Request,
    db: Session,
    principal: Principal,
    order_id: int,
    *,
    done: str = "",
    failed: ActionValues | None = None,
    problems: Problems | None = None,
    status: int = 200,
) -> HTMLResponse:
    lang = _lang(request)
    now = utcnow()
    o = service.get_order(db, order_id=order_id, principal=principal, now=now)
    try:
        cat: CategoryRead | None = service.get_category(db, code=o.category_code)
    except AppError:
        cat = None
    dues = [
        _due_view(
            lang,
            kind="response",
            due=o.response_due_at,
            done_at=o.responded_at,
            state=o.state,
            now=now,
        ),
        _due_view(
            lang,
            kind="handling",
            due=o.handling_due_at,
            done_at=o.resolved_at,
            state=o.state,
            now=now,
        ),
    ]
    by_event: dict[int | None, list[Any]] = {}
    for a in o.attachments:
        by_event.setdefault(a.event_id, []).append(a)
    return render(
        request,
        "orders/detail.html",
        status=status,
        o=o,
        dues=dues,
        attribute_rows=_attribute_rows(o, cat, lang),
        forms=_action_forms(o),
        departments=_dispatch_departments(db),
        dept_names={d.code: (d.name_zh, d.name_en) for d in org_service.get_departments(db)},
        photos_by_event=by_event,
        map_config=_order_map_config(db, o, lang),
        done=done if done in lifecycle.ACTIONS else "",
        failed=failed or ActionValues(),
        problems=problems or Problems(),
        photo_max=get_wo_settings().photo_max_count,
        nav=_staff_nav(principal),
        labels=_labels(),
        priorities=("emergency", "urgent", "normal"),
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_detail(
    request: Request, db: SessionDep, principal: Reader, order_id: int, done: str = ""
) -> HTMLResponse:
    """404 for no such order, 403 outside the viewer's scope (both as Chinese pages)."""
    return _render_detail(request, db, principal, order_id, done=done)


def _action_values(form: FormData) -> ActionValues:
    return ActionValues(
        action=_text(form, "action"),
        note=str(form.get("note") or ""),
        reason=_text(form, "reason"),
        department_code=_text(form, "department_code"),
        co_department_codes=_texts(form, "co_department_codes"),
        mode=_text(form, "mode"),
        amount=_text(form, "amount"),
        into_number=_text(form, "into_number").upper(),
        priority=_text(form, "priority"),
        attachment_keys=list(dict.fromkeys(_texts(form, "attachment_keys"))),
    )


def _safe_back(target: str) -> str:
    # Only back into the order pages: a crafted form must not redirect anywhere else.
    return target if target.startswith("/orders") and not target.startswith("//") else ""


def _params_for(v: ActionValues, lang: str) -> tuple[dict[str, Any], Problems]:
    """The service parameters the chosen action's form carries."""
    fields = ACTION_FIELDS.get(v.action, ())
    params: dict[str, Any] = {}
    p = Problems()
    if "reason" in fields and v.reason:
        params["reason"] = v.reason
    if "department" in fields and v.department_code:
        params["department_code"] = v.department_code
    if "co_departments" in fields:
        params["co_department_codes"] = [c for c in v.co_department_codes if c != v.department_code]
    if "priority" in fields and v.priority in ("emergency", "urgent", "normal"):
        params["priority"] = v.priority
    if "mode" in fields and v.mode:
        params["mode"] = v.mode
    if "amount" in fields and v.amount:
        amount = _float(v.amount)
        if amount is None or amount <= 0:
            p.add_field("amount", translate(lang, "orders.err.number"))
        else:
            params["amount"] = amount
    if "into_number" in fields and v.into_number:
        params["into_number"] = v.into_number
    if v.action in PHOTO_ACTIONS and v.attachment_keys:
        params["attachment_keys"] = v.attachment_keys
    return params, p


@router.post("/orders/{order_id}/act", response_class=HTMLResponse)
def order_act(
    request: Request, db: SessionDep, principal: Actor, order_id: int, form: FormDep
) -> Response:
    """Take one action on an order through service.transition; on success back to the page
    it came from (the order, or the dispatch desk), on refusal the same page with the reason
    in Chinese next to the form and everything typed kept."""
    lang = _lang(request)
    v = _action_values(form)
    back = _safe_back(_text(form, "back"))
    from_desk = back.startswith("/orders/dispatch")
    accept_first = _text(form, "accept_first") == "1"

    def refused(problems: Problems, status: int) -> HTMLResponse:
        if from_desk:
            return _render_desk(
                request, db, principal, error_for=order_id, problems=problems, status=status
            )
        return _render_detail(
            request, db, principal, order_id, failed=v, problems=problems, status=status
        )

    if not _csrf_ok(request, _text(form, "csrf")):
        return refused(Problems(general=[translate(lang, "orders.err.csrf")]), 403)
    params, problems = _params_for(v, lang)
    if problems:
        return refused(problems, 422)
    photos = _uploads(form) if v.action in PHOTO_ACTIONS else []
    now = utcnow()
    try:
        with db.begin_nested():
            if accept_first:
                # The desk's one tap: accept and dispatch together, both in the history, in
                # one savepoint (if the dispatch is refused, so is the acceptance).
                current = service.get_order(db, order_id=order_id, principal=principal, now=now)
                if current.state == "submitted":
                    service.transition(
                        db, order_id=order_id, action="accept", actor=principal, note="", now=now
                    )
            service.transition(
                db,
                order_id=order_id,
                action=v.action,
                actor=principal,
                note=v.note,
                now=now,
                photos=photos,
                **params,
            )
    except AppError as exc:
        problems = _problems_of(exc, lang, ACTION_SLOTS)
        if photos and "photos" not in problems.fields:
            problems.add_field("photos", translate(lang, "orders.err.photos_again"))
        return refused(problems, exc.status)
    db.commit()
    if from_desk:
        number = service.get_order_row(db, order_id=order_id).number or ""
        return RedirectResponse(
            f"/orders/dispatch?{urlencode({'done': v.action, 'n': number})}", status_code=303
        )
    try:
        service.get_order(db, order_id=order_id, principal=principal, now=utcnow())
    except AppError:
        # The action took the order out of this user's reach (e.g. returned to the desk).
        number = service.get_order_row(db, order_id=order_id).number or ""
        return RedirectResponse(
            f"/orders?{urlencode({'done': v.action, 'n': number})}", status_code=303
        )
    return RedirectResponse(f"/orders/{order_id}?done={v.action}#top", status_code=303)


# -- the grid card's open work orders -----------------------------------------------------


@dataclass(frozen=True)
class GridOrders:
    total: int
    overdue: int
    items: list[tuple[OrderSummary, DueView]]
    link: str


def grid_open_orders(principal: Principal | None, grid_code: str, lang: str) -> GridOrders | None:
    """Open orders on a grid for its card (org/pages.py renders the card; the template calls
    this through a Jinja global so that the card needs no change in its route). None when the
    viewer may not read work orders."""
    if principal is None or not principal.can("orders.read"):
        return None
    now = utcnow()
    filters = OrderFilter(grid_code=grid_code, state=sorted(lifecycle.OPEN_STATES))
    with dbmod.session_scope(write=False) as db:
        page = service.list_orders(db, principal=principal, filters=filters, page_size=8, now=now)
        late = service.list_orders(
            db,
            principal=principal,
            filters=filters.model_copy(update={"overdue": True}),
            page_size=1,
            now=now,
        )
    return GridOrders(
        total=page.total,
        overdue=late.total,
        items=[(o, _current_due(lang, o, now)) for o in page.items],
        link=f"/orders?{urlencode({'grid': grid_code})}",
    )


templates.env.globals["grid_open_orders"] = grid_open_orders
templates.env.globals["orders_labels"] = _labels
