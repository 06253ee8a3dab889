"""Applications for the statutory services: submission, completeness, correction requests,
decisions, tracking and the on-time figures the KPIs use.

Typed keyword-only functions taking a Session; they never commit, never send, take `now` from
the caller, and check everything before the first write, so a user's mistake changes nothing.

The clock (docs/permits.md): the limit in working days runs from submission; every period
between a correction request and the corrections arriving is cut out (the clock stands
still, there is no due time meanwhile); the decision is on time when it is made by the due
time. Staff act only on applications of their own department unless they act for the whole
district."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import Table, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden, invalid, not_found
from watergrid.geo import locate as geo_locate
from watergrid.geo import service as geo_service
from watergrid.geo.datum import gcj02_to_wgs84
from watergrid.inspections.history import primary_role
from watergrid.inspections.service import normalise_phone
from watergrid.org import service as org_service
from watergrid.permits import flows, jobs
from watergrid.permits.catalog import (
    BUILD_LABELS,
    DETAILS_MODELS,
    DISCHARGE_LABELS,
    PLAN_FORM_LABELS,
    SERVICES,
    ServiceSpec,
    SwcDetails,
    swc_plan_form,
)
from watergrid.permits.documents import CheckedDocument, Upload, check_uploads
from watergrid.permits.models import (
    FINAL_STATES,
    Application,
    Document,
    DocumentBlob,
    PermitCounter,
    PermitEvent,
    Suspension,
)
from watergrid.permits.schemas import (
    ACTION_LABELS,
    STATE_LABELS,
    ApplicationCreate,
    ApplicationRead,
    ApplicationSummary,
    ClockRead,
    DocumentRead,
    DocumentStatus,
    EventRead,
    OnTimeSummary,
    PublicEvent,
    PublicStatus,
    Receipt,
    ServiceOnTime,
    StaffActionRequest,
    SuspensionRead,
)
from watergrid.settings import get_settings
from watergrid.timers.deadlines import DueResult, counted_time
from watergrid.timers.spans import require_aware

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
DECISION_PREFIX = {"approve": "光水许准", "refuse": "光水许不准", "not_accept": "光水不受"}
OUTCOME_STATE = {"approve": "approved", "refuse": "refused", "not_accept": "not_accepted"}
# Which staff action applies from which state, and where it leads.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "request_correction": (("submitted", "under_review"), "correction"),
    "accept": (("submitted",), "under_review"),
    "not_accept": (("submitted",), "not_accepted"),
    "approve": (("under_review",), "approved"),
    "refuse": (("under_review",), "refused"),
}
# Actions whose timeline entry the public tracking page shows (no notes, no names).
PUBLIC_ACTIONS = (
    "submit",
    "request_correction",
    "supplement",
    "accept",
    "not_accept",
    "approve",
    "refuse",
)


def _field(name: str, en: str, zh: str) -> FieldError:
    return FieldError(field=name, message=en, message_zh=zh)


def _one(code: str, name: str, en: str, zh: str, status: int = 422) -> AppError:
    return AppError(status, code, en, zh, [_field(name, en, zh)])


def _sha256(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(raw).hexdigest()


def _tz() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def _pg(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def service_spec(code: str) -> ServiceSpec:
    spec = SERVICES.get(code)
    if spec is None:
        raise not_found("service", "办理事项", code)
    return spec


# =====================================================================================
# validation
# =====================================================================================


def credit_code_check_char(first17: str) -> str:
    """The check character of a unified social credit code (GB 32100-2015)."""
    total = sum(
        CREDIT_ALPHABET.index(ch) * w for ch, w in zip(first17, CREDIT_WEIGHTS, strict=True)
    )
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def valid_credit_code(code: str) -> bool:
    code = code.strip().upper()
    if len(code) != 18 or any(ch not in CREDIT_ALPHABET for ch in code):
        return False
    return credit_code_check_char(code[:17]) == code[17]


def access_token(client_key: str) -> str:
    """The applicant's token, derived from the form's own key with the server secret: a retry
    of a submit whose answer was lost gets the same token back, and nobody without the key
    (which never leaves the applicant's browser and our database) can work it out."""
    key = get_settings().secret_key.encode()
    digest = hmac.new(key, ("permit-token:" + client_key).encode(), hashlib.sha256).hexdigest()
    # 64 bits, written as four groups of four so that it can be copied off a receipt by hand.
    return normalise_token(digest[:16])


def normalise_token(raw: str) -> str:
    """ "3F46 fbbc-3fc4 2211" and "3f46fbbc3fc42211" are the same token: 3f46-fbbc-3fc4-2211."""
    hexits = "".join(ch for ch in (raw or "").lower() if ch in "0123456789abcdef")
    return "-".join(hexits[i : i + 4] for i in range(0, len(hexits), 4))


def details_text(service_code: str, details: dict[str, Any]) -> list[tuple[str, str]]:
    """The project data as labelled lines for pages and the decision document."""
    if service_code == "drainage_connection":
        return [
            ("排水类型", DISCHARGE_LABELS.get(details.get("discharge_type", ""), "")),
            ("预计日排水量", f"{float(details.get('sewage_m3_per_day', 0)):g} 立方米/日"),
            ("接驳点数量", f"{details.get('connection_points', 1)} 处"),
            ("接驳类型", BUILD_LABELS.get(details.get("build_kind", ""), "")),
        ]
    if service_code == "swc_plan":
        form = details.get("plan_form")
        return [
            ("项目类型", str(details.get("project_kind", ""))),
            ("征占地面积", f"{float(details.get('area_ha', 0)):g} 公顷"),
            ("挖填土石方总量", f"{float(details.get('earthwork_m3', 0)):g} 立方米"),
            ("方案形式", PLAN_FORM_LABELS.get(form or "", "")),
        ]
    return [(k, str(v)) for k, v in details.items()]


def _check_details(
    spec: ServiceSpec, raw: dict[str, Any]
) -> tuple[dict[str, Any], list[FieldError]]:
    model = DETAILS_MODELS[spec.code]
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        return {}, [
            _field(
                "details." + ".".join(str(p) for p in e["loc"]),
                e["msg"],
                "项目信息格式或取值不正确",
            )
            for e in exc.errors()
        ]
    out = parsed.model_dump()
    if isinstance(parsed, SwcDetails):
        form = swc_plan_form(parsed)
        if form is None:
            msg = (
                "征占地不足0.5公顷且挖填土石方不足1000立方米的项目无需报批水土保持方案，"
                "按规定填报水土保持登记表即可"
            )
            return {}, [_field("details.area_ha", "Below the thresholds for an approved plan", msg)]
        out["plan_form"] = form
    return out, []


def _locate(db: Session, *, lon: float, lat: float, datum: str) -> tuple[float, float, int, int]:
    if datum == "gcj02":
        lon, lat = gcj02_to_wgs84(lon, lat)
    loc = geo_locate.locate(db, lon=lon, lat=lat)
    return round(lon, 7), round(lat, 7), loc.grid.id, loc.subdistrict.id


def _next_seq(db: Session, *, prefix: str, year: int) -> int:
    table = cast(Table, PermitCounter.__table__)
    ins = pg_insert(table) if _pg(db) else sqlite_insert(table)
    stmt = (
        ins.values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(index_elements=["prefix", "year"], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )
    return int(db.execute(stmt).scalar_one())


def _request_hash(data: ApplicationCreate, uploads: Sequence[Upload]) -> str:
    body = json.dumps(
        {
            "data": data.model_dump(mode="json"),
            "files": [[u.doc_code, _sha256(u.data)] for u in uploads],
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return _sha256(body)


def _event(
    db: Session,
    *,
    app: Application,
    action: str,
    from_state: str | None,
    to_state: str,
    actor: Principal | None,
    role: str | None,
    now: datetime,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> PermitEvent:
    ev = PermitEvent(
        application_id=app.id,
        at=now,
        action=action,
        from_state=from_state,
        to_state=to_state,
        actor_user_id=actor.user_id if actor else None,
        actor_role=role or (primary_role(actor) if actor else None),
        actor_name=actor.display_name[:64] if actor else None,
        note=note.strip(),
        data=data or {},
    )
    db.add(ev)
    db.flush()
    return ev


def _store(
    db: Session, *, app: Application, docs: list[CheckedDocument], round_: int, now: datetime
) -> None:
    for d in docs:
        row = Document(
            key=secrets.token_hex(16),
            application_id=app.id,
            doc_code=d.doc_code,
            round=round_,
            filename=d.filename,
            content_type=d.content_type,
            size=len(d.data),
            sha256=_sha256(d.data),
            uploaded_at=now,
        )
        db.add(row)
        db.flush()
        db.add(DocumentBlob(document_id=row.id, data=d.data))
    db.flush()


# =====================================================================================
# the applicant's side
# =====================================================================================


def _receipt(
    app: Application, *, token: str | None, replayed: bool, warnings: list[str] | None = None
) -> Receipt:
    spec = SERVICES[app.service_code]
    return Receipt(
        id=app.id,
        number=app.number,
        service_code=app.service_code,
        service_name=spec.name_zh,
        state=app.state,
        submitted_at=app.submitted_at,
        due_at=app.due_at,
        limit_workdays=app.limit_workdays,
        access_token=token,
        replayed=replayed,
        warnings=warnings or list(app.deadline_warnings or []),
    )


def submit(
    db: Session, *, data: ApplicationCreate, uploads: Sequence[Upload], now: datetime
) -> Receipt:
    """Take in an application with its documents. Every field and file is checked first; the
    required documents of the service must all be there. A retry with the same client key
    returns the first receipt (with the same token); the key with other content is a 409."""
    require_aware(now, "now")
    spec = service_spec(data.service_code)
    request_hash = _request_hash(data, uploads)
    previous = db.scalar(select(Application).where(Application.client_key == data.client_key))
    if previous is not None:
        if previous.request_sha256 != request_hash:
            raise AppError(
                409,
                "client_key_reused",
                "This form key was already used for a different application",
                "该表单已提交过不同的内容，请刷新页面重新填写",
            )
        return _receipt(previous, token=access_token(data.client_key), replayed=True)

    problems: list[FieldError] = []
    details, detail_problems = _check_details(spec, data.details)
    problems += detail_problems
    credit = data.credit_code.strip().upper()
    if not valid_credit_code(credit):
        problems.append(
            _field(
                "credit_code",
                "Not a valid unified social credit code",
                "统一社会信用代码不正确（18位，请核对校验位）",
            )
        )
    phone = ""
    try:
        phone = normalise_phone(data.contact_phone, field_name="contact_phone")
    except AppError as exc:
        problems += exc.fields
    email = data.contact_email.strip()
    if email and not EMAIL_RE.match(email):
        problems.append(_field("contact_email", "Not an e-mail address", "电子邮箱格式不正确"))
    if data.sms_consent and not phone.startswith("1"):
        problems.append(
            _field("sms_consent", "SMS needs a mobile number", "接收短信须填写手机号码")
        )
    present = {u.doc_code for u in uploads}
    missing = [d for d in spec.documents if d.required and d.code not in present]
    for d in missing:
        problems.append(_field(f"doc__{d.code}", f"{d.code} is required", f"请上传：{d.name_zh}"))
    location: tuple[float, float, int, int] | None = None
    try:
        location = _locate(db, lon=data.lon, lat=data.lat, datum=data.datum)
    except AppError as exc:
        problems.append(_field("lon", exc.message, exc.message_zh))
    if problems:
        raise invalid(problems, "The application has errors; nothing was submitted")
    assert location is not None
    docs = check_uploads(list(uploads), known_codes={d.code for d in spec.documents})
    dept = org_service.get_department(db, code=spec.department_code)
    if dept is None:  # pragma: no cover - a deployment without the handling section
        raise AppError(
            503,
            "no_department",
            "The handling department is not set up",
            "办理部门未配置，请联系水务局",
        )

    year = now.astimezone(_tz()).year
    number = (
        f"{spec.number_prefix}-{year}-{_next_seq(db, prefix=spec.number_prefix, year=year):05d}"
    )
    lon, lat, grid_id, sub_id = location
    token = access_token(data.client_key)
    app = Application(
        number=number,
        service_code=spec.code,
        state="submitted",
        client_key=data.client_key,
        request_sha256=request_hash,
        access_token_sha256=_sha256(token),
        project_name=data.project_name.strip(),
        project_address=data.project_address.strip(),
        lon=lon,
        lat=lat,
        grid_id=grid_id,
        subdistrict_id=sub_id,
        applicant_name=data.applicant_name.strip(),
        credit_code=credit,
        contact_name=data.contact_name.strip(),
        contact_phone=phone,
        contact_email=email,
        sms_consent=data.sms_consent,
        details=details,
        department_id=dept.id,
        limit_workdays=float(spec.limit_workdays),
        submitted_at=now,
        created_at=now,
        updated_at=now,
    )
    db.add(app)
    db.flush()
    due = jobs.due_of(db, app=app)
    assert isinstance(due, DueResult)  # no correction requests yet
    app.due_at = due.due_at
    app.deadline_warnings = list(due.warnings)
    _store(db, app=app, docs=docs, round_=0, now=now)
    _event(
        db,
        app=app,
        action="submit",
        from_state=None,
        to_state="submitted",
        actor=None,
        role="applicant",
        now=now,
        data={"due_at": app.due_at.isoformat(), "documents": sorted(present)},
    )
    jobs.schedule(db, app=app, now=now)
    flows.submitted(db, app=app, cause="submit", now=now)
    db.flush()
    return _receipt(app, token=token, replayed=False, warnings=list(due.warnings))


def _by_number(db: Session, number: str) -> Application | None:
    return db.scalar(
        select(Application).where(Application.number == (number or "").strip().upper())
    )


def for_applicant(db: Session, *, number: str, token: str) -> Application:
    """The application for whoever holds its number and token. Every failure is the same 404,
    so nobody learns which numbers exist this way."""
    app = _by_number(db, number)
    if (
        app is None
        or not token
        or not hmac.compare_digest(app.access_token_sha256, _sha256(normalise_token(token)))
    ):
        raise not_found("application", "申请（请核对申请编号和查询码）", number)
    return app


def supplement(
    db: Session, *, number: str, token: str, uploads: Sequence[Upload], note: str, now: datetime
) -> ApplicationRead:
    """The applicant supplies the corrections asked for: at least one file for each document
    requested. The clock runs again from now, the due time moves by the time it stood."""
    require_aware(now, "now")
    app = for_applicant(db, number=number, token=token)
    if _pg(db):
        db.refresh(app, with_for_update=True)
    if app.state != "correction":
        raise AppError(
            409,
            "not_awaiting_corrections",
            "No corrections are being asked for",
            "该申请当前无需补正材料",
        )
    spec = SERVICES[app.service_code]
    sus = db.scalar(
        select(Suspension).where(
            Suspension.application_id == app.id, Suspension.resumed_at.is_(None)
        )
    )
    assert sus is not None
    present = {u.doc_code for u in uploads}
    missing = [c for c in sus.doc_codes if c not in present]
    if missing:
        names = [_doc_name(spec, c) for c in missing]
        raise invalid(
            [
                _field(f"doc__{c}", f"{c} was asked for", f"请补正：{n}")
                for c, n in zip(missing, names, strict=True)
            ],
            "Some requested documents are missing",
        )
    if not uploads:
        raise _one("no_files", "documents", "Upload the corrected documents", "请上传补正材料")
    docs = check_uploads(list(uploads), known_codes={d.code for d in spec.documents})
    round_ = int(
        db.scalar(
            select(func.count()).select_from(Suspension).where(Suspension.application_id == app.id)
        )
        or 1
    )
    _store(db, app=app, docs=docs, round_=round_, now=now)
    sus.resumed_at = now
    db.flush()
    before = app.state
    app.state = app.correction_from or "submitted"
    app.correction_from = None
    due = jobs.due_of(db, app=app)
    assert isinstance(due, DueResult)
    app.due_at = due.due_at
    app.deadline_warnings = sorted(set(app.deadline_warnings or []) | set(due.warnings))
    app.updated_at = now
    paused = now - sus.suspended_at
    _event(
        db,
        app=app,
        action="supplement",
        from_state=before,
        to_state=app.state,
        actor=None,
        role="applicant",
        now=now,
        note=note,
        data={
            "documents": sorted(present),
            "due_at": app.due_at.isoformat(),
            "paused_hours": round(paused.total_seconds() / 3600, 2),
        },
    )
    jobs.schedule(db, app=app, now=now)
    flows.supplemented(db, app=app, cause=f"supplement{round_}", now=now)
    db.flush()
    return application_read(db, app=app, actor=None, now=now)


def public_status(db: Session, *, number: str, now: datetime) -> PublicStatus:
    app = _by_number(db, number)
    if app is None:
        raise not_found("application", "申请（请核对申请编号）", number)
    clock = _clock(db, app, now)
    events = db.scalars(
        select(PermitEvent)
        .where(
            PermitEvent.application_id == app.id,
            PermitEvent.action.in_(PUBLIC_ACTIONS),
        )
        .order_by(PermitEvent.id)
    )
    return PublicStatus(
        number=app.number,
        service_name=SERVICES[app.service_code].name_zh,
        project_name=app.project_name,
        subdistrict=_area_name(db, app.subdistrict_id),
        state=app.state,
        state_label=STATE_LABELS[app.state][0],
        submitted_at=app.submitted_at,
        accepted_at=app.accepted_at,
        decided_at=app.decided_at,
        decision_number=app.decision_number,
        limit_workdays=app.limit_workdays,
        due_at=app.due_at,
        paused=clock.paused,
        remaining_workdays=clock.remaining_workdays,
        timeline=[PublicEvent(at=e.at, action_label=ACTION_LABELS[e.action][0]) for e in events],
    )


# =====================================================================================
# staff
# =====================================================================================


def in_scope(actor: Principal, app: Application) -> bool:
    return actor.district or app.department_id in actor.department_ids


def get_for_staff(db: Session, *, application_id: int, actor: Principal) -> Application:
    app = db.get(Application, application_id)
    if app is None:
        raise not_found("application", "申请", application_id)
    if not in_scope(actor, app):
        raise forbidden()
    return app


def allowed_actions(actor: Principal, app: Application) -> list[str]:
    if not actor.can("permit.handle") or not in_scope(actor, app):
        return []
    return [a for a, (sources, _) in TRANSITIONS.items() if app.state in sources]


def act(
    db: Session,
    *,
    application_id: int,
    action: str,
    req: StaffActionRequest,
    actor: Principal,
    now: datetime,
) -> ApplicationRead:
    """Take a staff action: request corrections (补正, stops the clock), accept (受理, only
    with every required document there), not accept (不予受理), approve or refuse (with
    reasons; a numbered decision). 409 when the action does not apply to the state."""
    require_aware(now, "now")
    if action not in TRANSITIONS:
        raise not_found("action", "操作", action)
    app = db.get(Application, application_id, with_for_update=_pg(db))
    if app is None:
        raise not_found("application", "申请", application_id)
    if not actor.can("permit.handle") or not in_scope(actor, app):
        raise forbidden()
    sources, target = TRANSITIONS[action]
    if app.state not in sources:
        raise AppError(
            409,
            "invalid_transition",
            f"Cannot {action} an application that is {app.state}",
            f"申请当前为“{STATE_LABELS[app.state][0]}”，不能“{ACTION_LABELS[action][0]}”",
        )
    spec = SERVICES[app.service_code]
    before = app.state
    data: dict[str, Any] = {}
    note = req.note
    if action == "request_correction":
        codes = list(dict.fromkeys(req.doc_codes))
        unknown = [c for c in codes if spec.document(c) is None]
        if unknown:
            raise _one(
                "unknown_document",
                "doc_codes",
                f"Unknown documents {unknown}",
                "材料清单中没有所选材料",
            )
        if not codes:
            raise _one(
                "doc_codes_required",
                "doc_codes",
                "Say which documents to correct",
                "请勾选需要补正的材料",
            )
        if not req.note.strip():
            raise _one(
                "note_required",
                "note",
                "Say what to correct, all at once",
                "请一次性写明需要补正的全部内容",
            )
        db.add(
            Suspension(
                application_id=app.id, suspended_at=now, doc_codes=codes, note=req.note.strip()
            )
        )
        app.correction_from = app.state
        app.due_at = None
        jobs.cancel(db, application_id=app.id, now=now)
        data["doc_codes"] = codes
        names = "、".join(_doc_name(spec, c) for c in codes)
        flows.to_applicant(
            db,
            app=app,
            text=f"需补正材料：{names}，补正期间暂停计时",
            cause=f"correction{now.isoformat()}",
            now=now,
        )
    elif action == "accept":
        have = set(db.scalars(select(Document.doc_code).where(Document.application_id == app.id)))
        missing = [d for d in spec.documents if d.required and d.code not in have]
        if missing:
            raise invalid(
                [
                    _field(f"doc__{d.code}", f"{d.code} missing", f"缺少：{d.name_zh}")
                    for d in missing
                ],
                "Required documents are missing",
            )
        app.accepted_at = now
        flows.to_applicant(db, app=app, text="已受理，进入审查", cause="accept", now=now)
    else:
        reasons = req.reasons.strip()
        if action in ("refuse", "not_accept") and not reasons:
            raise _one("reasons_required", "reasons", "Give the reasons", "请写明理由和依据")
        if action == "approve" and not reasons:
            reasons = f"经审查，申请材料齐全，符合{spec.legal_basis_zh}规定的条件。"
        year = now.astimezone(_tz()).year
        prefix = DECISION_PREFIX[action]
        app.decision_number = f"{prefix}〔{year}〕{_next_seq(db, prefix=prefix, year=year)}号"
        app.decision_reasons = reasons
        app.decision_conditions = req.conditions.strip() if action == "approve" else ""
        app.decided_at = now
        app.decided_by_user_id = actor.user_id
        app.decider_name = actor.display_name[:64]
        app.on_time = bool(app.due_at is not None and now <= app.due_at)
        app.used_workdays = round(_used(db, app, now), 2)
        jobs.cancel(db, application_id=app.id, now=now)
        data.update(
            decision_number=app.decision_number,
            on_time=app.on_time,
            used_workdays=app.used_workdays,
        )
        verdict = STATE_LABELS[target][0]
        flows.to_applicant(
            db,
            app=app,
            text=f"已办结：{verdict}（{app.decision_number}）",
            cause="decision",
            now=now,
        )
        note = note or reasons
    app.state = target
    app.updated_at = now
    _event(
        db,
        app=app,
        action=action,
        from_state=before,
        to_state=target,
        actor=actor,
        role=None,
        now=now,
        note=note,
        data=data,
    )
    db.flush()
    return application_read(db, app=app, actor=actor, now=now)


def list_applications(
    db: Session,
    *,
    actor: Principal,
    now: datetime,
    state: str | None = None,
    service_code: str | None = None,
    open_only: bool = False,
    overdue: bool = False,
) -> list[ApplicationSummary]:
    q = select(Application).order_by(Application.submitted_at.desc(), Application.id.desc())
    if not actor.district:
        q = q.where(Application.department_id.in_(actor.department_ids or {-1}))
    if state:
        q = q.where(Application.state == state)
    if service_code:
        q = q.where(Application.service_code == service_code)
    if open_only or overdue:
        q = q.where(Application.state.not_in(FINAL_STATES))
    if overdue:
        q = q.where(Application.due_at.is_not(None), Application.due_at < now)
    out = []
    for app in db.scalars(q.limit(500)):
        clock = _clock(db, app, now)
        out.append(
            ApplicationSummary(
                id=app.id,
                number=app.number,
                service_code=app.service_code,
                service_name=SERVICES[app.service_code].name_zh,
                state=app.state,
                state_label=STATE_LABELS[app.state][0],
                project_name=app.project_name,
                applicant_name=app.applicant_name,
                subdistrict=_area_name(db, app.subdistrict_id),
                submitted_at=app.submitted_at,
                due_at=app.due_at,
                remaining_workdays=clock.remaining_workdays,
                overdue=clock.overdue,
                escalated=app.escalated_at is not None,
                decided_at=app.decided_at,
                on_time=app.on_time,
            )
        )
    return out


# =====================================================================================
# reading
# =====================================================================================


def _area_name(db: Session, area_id: int) -> str:
    return geo_service.area_links(db).by_id[area_id][2]


def _used(db: Session, app: Application, until: datetime) -> float:
    """Working days the limit has used up by `until`, correction periods left out."""
    spent = counted_time(
        app.submitted_at,
        until,
        unit="workdays",
        calendar=jobs.calendar(db),
        suspensions=jobs.suspensions(db, application_id=app.id),
    )
    return spent / timedelta(days=1)


def _clock(db: Session, app: Application, now: datetime) -> ClockRead:
    end = app.decided_at or now
    used = _used(db, app, end)
    paused = app.state == "correction"
    remaining: float | None = None
    if app.state not in FINAL_STATES:
        remaining = max(app.limit_workdays - used, 0.0)
    overdue = app.state not in FINAL_STATES and app.due_at is not None and app.due_at < now
    return ClockRead(
        limit_workdays=app.limit_workdays,
        due_at=app.due_at,
        paused=paused,
        remaining_workdays=None if remaining is None else round(remaining, 2),
        used_workdays=round(used, 2),
        overdue=overdue,
        warnings=list(app.deadline_warnings or []),
    )


def clock(db: Session, *, app: Application, now: datetime) -> ClockRead:
    return _clock(db, app, now)


def _doc_name(spec: ServiceSpec, code: str) -> str:
    doc = spec.document(code)
    return doc.name_zh if doc is not None else code


def _doc_url(d: Document, *, staff: bool) -> str:
    return f"/api/v1/permits/documents/{d.key}" if staff else f"/permits/documents/{d.key}"


def application_read(
    db: Session, *, app: Application, actor: Principal | None, now: datetime, lang: str = "zh_CN"
) -> ApplicationRead:
    spec = SERVICES[app.service_code]
    docs = list(
        db.scalars(
            select(Document)
            .where(Document.application_id == app.id)
            .order_by(Document.round, Document.id)
        )
    )
    sus = list(
        db.scalars(
            select(Suspension).where(Suspension.application_id == app.id).order_by(Suspension.id)
        )
    )
    open_codes = set(sus[-1].doc_codes) if sus and sus[-1].resumed_at is None else set()
    events = db.scalars(
        select(PermitEvent).where(PermitEvent.application_id == app.id).order_by(PermitEvent.id)
    )
    dept = org_service.get_departments(db)
    dept_name = next((d.name_zh for d in dept if d.id == app.department_id), "")
    li = 1 if lang == "en" else 0
    return ApplicationRead(
        id=app.id,
        number=app.number,
        service_code=app.service_code,
        service_name=spec.name_zh,
        state=app.state,
        state_label=STATE_LABELS[app.state][li],
        project_name=app.project_name,
        project_address=app.project_address,
        lon=app.lon,
        lat=app.lat,
        subdistrict=_area_name(db, app.subdistrict_id),
        grid=_area_name(db, app.grid_id),
        applicant_name=app.applicant_name,
        credit_code=app.credit_code,
        contact_name=app.contact_name,
        contact_phone=app.contact_phone,
        contact_email=app.contact_email,
        details=app.details,
        details_text=details_text(app.service_code, app.details),
        department=dept_name,
        submitted_at=app.submitted_at,
        accepted_at=app.accepted_at,
        decided_at=app.decided_at,
        decision_number=app.decision_number,
        decision_reasons=app.decision_reasons,
        decision_conditions=app.decision_conditions,
        on_time=app.on_time,
        clock=_clock(db, app, now),
        escalated_at=app.escalated_at,
        documents=[
            DocumentRead(
                id=d.id,
                doc_code=d.doc_code,
                doc_name=_doc_name(spec, d.doc_code),
                round=d.round,
                filename=d.filename,
                content_type=d.content_type,
                size=d.size,
                uploaded_at=d.uploaded_at,
                url=_doc_url(d, staff=actor is not None),
            )
            for d in docs
        ],
        checklist=[
            DocumentStatus(
                code=s.code,
                name=s.name_zh,
                required=s.required,
                hint=s.hint_zh,
                files=sum(1 for d in docs if d.doc_code == s.code),
                requested=s.code in open_codes,
            )
            for s in spec.documents
        ],
        suspensions=[
            SuspensionRead(
                suspended_at=s.suspended_at,
                resumed_at=s.resumed_at,
                doc_codes=s.doc_codes,
                doc_names=[_doc_name(spec, c) for c in s.doc_codes],
                note=s.note,
            )
            for s in sus
        ],
        events=[
            EventRead(
                id=e.id,
                at=e.at,
                action=e.action,
                action_label=ACTION_LABELS[e.action][li],
                from_state=e.from_state,
                to_state=e.to_state,
                actor_name=e.actor_name,
                actor_role=e.actor_role,
                note=e.note,
                data=e.data,
            )
            for e in events
        ],
        actions=allowed_actions(actor, app) if actor else [],
    )


def document_content(
    db: Session, *, key: str, actor: Principal | None, number: str = "", token: str = ""
) -> tuple[bytes, str, str]:
    """(bytes, content type, filename): to staff of the application's department, or to the
    applicant with the number and token."""
    d = db.scalar(select(Document).where(Document.key == key))
    if d is None:
        raise not_found("document", "材料", key)
    app = db.get(Application, d.application_id)
    assert app is not None
    if actor is not None and actor.can("permit.read"):
        if not in_scope(actor, app):
            raise forbidden()
    else:
        owner = for_applicant(db, number=number, token=token)
        if owner.id != app.id:
            raise not_found("document", "材料", key)
    blob = db.get(DocumentBlob, d.id)
    assert blob is not None
    return blob.data, d.content_type, d.filename


# =====================================================================================
# KPIs
# =====================================================================================


def on_time_summary(
    db: Session,
    *,
    since: datetime,
    until: datetime,
    service_code: str | None = None,
    department_ids: set[int] | None = None,
) -> OnTimeSummary:
    """Decided in [since, until) and how many by their due time (办结及时率), plus what is
    open at `until` and how much of that is past due. `department_ids` narrows it to the
    applications those departments handle (a section's own desk); None is the district."""
    require_aware(since, "since")
    require_aware(until, "until")
    rows: list[ServiceOnTime] = []
    for spec in SERVICES.values():
        if service_code and spec.code != service_code:
            continue
        scope = [Application.service_code == spec.code]
        if department_ids is not None:
            scope.append(Application.department_id.in_(department_ids or {-1}))
        decided = list(
            db.scalars(
                select(Application.on_time).where(
                    *scope,
                    Application.decided_at >= since,
                    Application.decided_at < until,
                )
            )
        )
        # Open at `until`: submitted before it and not decided by then (a past `until` counts
        # applications decided since as open then), judged against their current due time.
        open_q = select(Application.due_at).where(
            *scope,
            Application.submitted_at < until,
            or_(Application.decided_at.is_(None), Application.decided_at >= until),
        )
        open_due = list(db.scalars(open_q))
        n_on = sum(1 for v in decided if v)
        rows.append(
            ServiceOnTime(
                service_code=spec.code,
                service_name=spec.name_zh,
                decided=len(decided),
                on_time=n_on,
                rate=n_on / len(decided) if decided else None,
                open=len(open_due),
                open_overdue=sum(1 for d in open_due if d is not None and d < until),
            )
        )
    decided_n = sum(r.decided for r in rows)
    on_n = sum(r.on_time for r in rows)
    return OnTimeSummary(
        since=since,
        until=until,
        decided=decided_n,
        on_time=on_n,
        rate=on_n / decided_n if decided_n else None,
        open=sum(r.open for r in rows),
        open_overdue=sum(r.open_overdue for r in rows),
        by_service=rows,
    )
