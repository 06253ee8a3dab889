"""Statutory-service REST routes under /api/v1/permits: thin — parse, call the service, commit.

Public: the service catalogue, applying (multipart: `payload` JSON plus files named
`doc__<document code>`), status by application number, the applicant's own view and
corrections (number + token). Staff: lists, detail, actions, documents, on-time figures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeAlias

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, FieldError, invalid
from watergrid.permits import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.permits import service
from watergrid.permits.catalog import SERVICES
from watergrid.permits.documents import MAX_BYTES, Upload
from watergrid.permits.schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApplicationSummary,
    OnTimeSummary,
    PublicStatus,
    Receipt,
    StaffActionRequest,
)

router = APIRouter(prefix="/api/v1/permits", tags=["statutory services"])
Public = Annotated[Principal | None, Depends(public)]
Reader: TypeAlias = Annotated[Principal, Depends(allow("permit.read"))]
Handler: TypeAlias = Annotated[Principal, Depends(allow("permit.handle"))]
KpiReader: TypeAlias = Annotated[Principal, Depends(allow("permit.kpi"))]
DOC_FIELD = "doc__"


class DocumentSpecOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    required: bool
    hint_zh: str


class ServiceOut(BaseModel):
    code: str
    name_zh: str
    name_en: str
    department_code: str
    limit_workdays: int
    legal_limit_workdays: int
    legal_basis_zh: str
    intro_zh: str
    documents: list[DocumentSpecOut]


class ApplicantQuery(BaseModel):
    number: str = Field(min_length=1, max_length=32)
    token: str = Field(min_length=1, max_length=64)


async def read_uploads(request: Request) -> tuple[dict[str, Any], list[Upload]]:
    """The form's plain fields and its `doc__<code>` files (empty file inputs skipped). A
    dependency, so that routes stay synchronous and their database work runs off the event
    loop."""
    form = await request.form()
    fields: dict[str, Any] = {}
    uploads: list[Upload] = []
    for name, value in form.multi_items():
        if isinstance(value, StarletteUpload):
            if not name.startswith(DOC_FIELD) or not value.filename:
                continue
            data = await value.read(MAX_BYTES + 1)
            if data:
                uploads.append(
                    Upload(doc_code=name[len(DOC_FIELD) :], filename=value.filename, data=data)
                )
        elif name in fields:
            # Repeated names (checkboxes) become lists, in the order sent.
            prev = fields[name]
            fields[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            fields[name] = value
    return fields, uploads


Form_ = Annotated[tuple[dict[str, Any], list[Upload]], Depends(read_uploads)]


def parse_application(payload: str) -> ApplicationCreate:
    try:
        return ApplicationCreate.model_validate(json.loads(payload))
    except json.JSONDecodeError as exc:
        raise AppError(
            422, "bad_payload", f"payload is not JSON: {exc.msg}", "提交内容格式错误"
        ) from None
    except ValidationError as exc:
        raise invalid(
            [
                FieldError(
                    field=".".join(str(p) for p in e["loc"]) or "payload",
                    message=e["msg"],
                    message_zh="格式或取值不正确",
                )
                for e in exc.errors()
            ]
        ) from None


@router.get("/services", response_model=list[ServiceOut])
def services(_: Public) -> list[ServiceOut]:
    return [
        ServiceOut(
            code=s.code,
            name_zh=s.name_zh,
            name_en=s.name_en,
            department_code=s.department_code,
            limit_workdays=s.limit_workdays,
            legal_limit_workdays=s.legal_limit_workdays,
            legal_basis_zh=s.legal_basis_zh,
            intro_zh=s.intro_zh,
            documents=[
                DocumentSpecOut(
                    code=d.code,
                    name_zh=d.name_zh,
                    name_en=d.name_en,
                    required=d.required,
                    hint_zh=d.hint_zh,
                )
                for d in s.documents
            ],
        )
        for s in SERVICES.values()
    ]


@router.post(
    "/applications",
    response_model=Receipt,
    status_code=201,
    responses={200: {"description": "A retry with the same client_key: the first receipt"}},
)
def apply(db: SessionDep, _: Public, response: Response, form: Form_) -> Receipt:
    fields, uploads = form
    data = parse_application(str(fields.get("payload", "")))
    out = service.submit(db, data=data, uploads=uploads, now=utcnow())
    db.commit()
    if out.replayed:
        response.status_code = 200
    return out


@router.get("/status/{number}", response_model=PublicStatus)
def status(db: SessionDep, _: Public, number: str) -> PublicStatus:
    return service.public_status(db, number=number, now=utcnow())


@router.post("/applicant", response_model=ApplicationRead)
def applicant_view(db: SessionDep, _: Public, body: ApplicantQuery) -> ApplicationRead:
    """POST so that the token stays out of URLs and access logs."""
    app = service.for_applicant(db, number=body.number, token=body.token)
    return service.application_read(db, app=app, actor=None, now=utcnow())


@router.post("/applicant/corrections", response_model=ApplicationRead)
def corrections(db: SessionDep, _: Public, form: Form_) -> ApplicationRead:
    fields, uploads = form
    out = service.supplement(
        db,
        number=str(fields.get("number", "")),
        token=str(fields.get("token", "")),
        uploads=uploads,
        note=str(fields.get("note", ""))[:2000],
        now=utcnow(),
    )
    db.commit()
    return out


@router.get("/applications", response_model=list[ApplicationSummary])
def applications(
    db: SessionDep,
    principal: Reader,
    state: str | None = None,
    service_code: str | None = None,
    open_only: bool = False,
    overdue: bool = False,
) -> list[ApplicationSummary]:
    return service.list_applications(
        db,
        actor=principal,
        now=utcnow(),
        state=state,
        service_code=service_code,
        open_only=open_only,
        overdue=overdue,
    )


@router.get("/applications/{application_id}", response_model=ApplicationRead)
def application(db: SessionDep, principal: Reader, application_id: int) -> ApplicationRead:
    app = service.get_for_staff(db, application_id=application_id, actor=principal)
    return service.application_read(db, app=app, actor=principal, now=utcnow())


@router.post("/applications/{application_id}/actions/{action}", response_model=ApplicationRead)
def act(
    db: SessionDep,
    principal: Handler,
    application_id: int,
    action: str,
    body: StaffActionRequest,
) -> ApplicationRead:
    out = service.act(
        db, application_id=application_id, action=action, req=body, actor=principal, now=utcnow()
    )
    db.commit()
    return out


@router.get("/documents/{key}", response_class=Response)
def document(db: SessionDep, principal: Reader, key: str) -> Response:
    data, content_type, filename = service.document_content(db, key=key, actor=principal)
    ascii_name = filename.encode("ascii", "ignore").decode() or "document"
    return Response(
        data,
        media_type=content_type,
        headers={
            "Content-Disposition": f'inline; filename="{ascii_name}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=600",
        },
    )


@router.get("/kpi", response_model=OnTimeSummary)
def kpi(
    db: SessionDep,
    _: KpiReader,
    since: datetime | None = None,
    until: datetime | None = None,
    service_code: str | None = None,
) -> OnTimeSummary:
    """办结及时率 over [since, until); by default the last 365 days."""
    end = until or utcnow()
    start = since or end - timedelta(days=365)
    if start.tzinfo is None or end.tzinfo is None:
        raise AppError(422, "naive_time", "Give times with a zone offset", "时间须带时区")
    return service.on_time_summary(db, since=start, until=end, service_code=service_code)
