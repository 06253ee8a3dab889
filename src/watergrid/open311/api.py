"""Open311 GeoReport v2 routes under /open311/v2/ (docs/open311.md).

Thin: read the parameters (params.py), call `workorders.service`, shape the answer
(mapping.py) and render it as JSON or XML (formats.py). Every route ends in `.json` or
`.xml` and answers errors in the spec's error list in that format; parameters are taken as
plain strings so that FastAPI's own validation never answers in the REST API's shape.

GET routes are public. POST requests is public at the gate too, because its caller is an
Open311 client holding an api_key, not a signed-in user; the key is checked in the route
and a missing or bad one is a 403 in the Open311 format."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from watergrid.auth import service as auth_service
from watergrid.auth.deps import public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError
from watergrid.open311 import mapping
from watergrid.open311.config import CHANGESET, PAGE_SIZE_MAX, SPECIFICATION, get_open311_settings
from watergrid.open311.errors import (
    Open311Error,
    bad_param,
    error,
    from_app_error,
    from_validation_error,
)
from watergrid.open311.formats import FORMATS, render, render_error
from watergrid.open311.params import (
    check_format,
    check_jurisdiction,
    csv,
    locale_of,
    paging,
    request_ids,
    window,
)
from watergrid.settings import get_settings
from watergrid.workorders import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.workorders import service

PREFIX = "/open311/v2"
router = APIRouter(tags=["open311"])
Public = Annotated[Principal | None, Depends(public)]

Fmt = Annotated[str, "json or xml: the extension of the resource"]
Jurisdiction = Annotated[
    str | None, Query(description="Optional; when given it must be this server's jurisdiction")
]
Locale = Annotated[str | None, Query(description="zh_CN (default) or en: language of names")]
Text = Annotated[str | None, Query()]


def _answer(
    fmt: str,
    locale_raw: str | None,
    build: Callable[[str, str], Response],
    *,
    rollback: Session | None = None,
) -> Response:
    """Run `build(fmt, locale)` and turn any error a caller can cause into the spec's error
    list. On a write route the session is rolled back first, so a refused request stores
    nothing even though the request's session commits when the route returns."""
    out_fmt = fmt if fmt in FORMATS else "json"
    locale = locale_of(None)
    try:
        check_format(fmt)
        locale = locale_of(locale_raw)
        return build(fmt, locale)
    except Open311Error as exc:
        err = exc
    except AppError as exc:
        err = from_app_error(exc)
    except ValidationError as exc:
        err = from_validation_error(exc)
    if rollback is not None:
        rollback.rollback()
    return render_error(out_fmt, err, locale)


# -- discovery and services ---------------------------------------------------------------


@router.get("/open311/discovery.{fmt}", response_class=Response)
@router.get(f"{PREFIX}/discovery.{{fmt}}", response_class=Response)
def discovery(_: Public, fmt: Fmt) -> Response:
    def build(fmt: str, locale: str) -> Response:
        s = get_open311_settings()
        base = get_settings().public_base_url.rstrip("/")
        return render(
            fmt,
            "discovery",
            {
                "changeset": CHANGESET,
                "contact": s.contact,
                "key_service": s.key_service,
                "endpoints": [
                    {
                        "specification": SPECIFICATION,
                        "url": f"{base}{PREFIX}",
                        "changeset": CHANGESET,
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            },
        )

    return _answer(fmt, None, build)


@router.get(f"{PREFIX}/services.{{fmt}}", response_class=Response)
def services(
    db: SessionDep, _: Public, fmt: Fmt, jurisdiction_id: Jurisdiction = None, locale: Locale = None
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        items = [mapping.service_item(c, locale) for c in service.list_categories(db)]
        return render(fmt, "services", items)

    return _answer(fmt, locale, build)


@router.get(f"{PREFIX}/services/{{service_code}}.{{fmt}}", response_class=Response)
def service_definition(
    db: SessionDep,
    _: Public,
    service_code: str,
    fmt: Fmt,
    jurisdiction_id: Jurisdiction = None,
    locale: Locale = None,
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        category = service.get_category_by_service_code(db, service_code=service_code)
        if not category.active:
            # Not in the services list, so not offered: the same 404 as an unknown code.
            raise error(404, f"service {service_code} not found", f"未找到服务类别：{service_code}")
        return render(fmt, "service_definition", mapping.service_definition(category, locale))

    return _answer(fmt, locale, build)


# -- creating a request -------------------------------------------------------------------


async def read_form(request: Request) -> mapping.FormInput:
    """The POST body as form pairs. Read here (async) so the route itself can stay a plain
    function run in the thread pool like every other database route."""
    query = {k: v for k, v in request.query_params.items()}
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return mapping.FormInput(
            query=query,
            problem=error(
                400,
                f"send the request form-encoded (application/x-www-form-urlencoded), not {ctype}",
                f"请以表单编码（application/x-www-form-urlencoded）提交，而不是 {ctype}",
            ),
        )
    try:
        form = await request.form()
    except (StarletteHTTPException, ValueError) as exc:
        detail = getattr(exc, "detail", str(exc))
        return mapping.FormInput(
            query=query, problem=error(400, f"unreadable form: {detail}", f"表单无法解析：{detail}")
        )
    items: list[tuple[str, str]] = []
    problem = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            problem = mapping.no_files()
            continue
        items.append((key, value))
    return mapping.FormInput(items=items, query=query, problem=problem)


FormDep = Annotated[mapping.FormInput, Depends(read_form)]


@router.post(
    f"{PREFIX}/requests.{{fmt}}",
    response_class=Response,
    status_code=201,
    responses={
        200: {"description": "A retry with the same Idempotency-Key: the first answer again"},
        400: {"description": "A parameter is missing or invalid (the spec's error list)"},
        403: {"description": "api_key missing, unknown or revoked"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["api_key", "service_code", "lat", "long", "description"],
                        "properties": {
                            name: {"type": "string"}
                            for name in (
                                "api_key",
                                "jurisdiction_id",
                                "service_code",
                                "lat",
                                "long",
                                "address_string",
                                "email",
                                "device_id",
                                "account_id",
                                "first_name",
                                "last_name",
                                "phone",
                                "phone_consent",
                                "description",
                                "media_url",
                                "locale",
                            )
                        },
                        "additionalProperties": {
                            "description": "attribute[code]=value; attribute[code][]=value "
                            "repeated for a multivaluelist"
                        },
                    }
                }
            },
        }
    },
)
def create_request(
    db: SessionDep,
    _: Public,
    fmt: Fmt,
    form: FormDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        if form.problem is not None:
            raise form.problem
        check_jurisdiction(form.param("jurisdiction_id"))
        key = form.param("api_key")
        if not key:
            raise error(403, "api_key is required to post a request", "提交诉求需要 api_key")
        client = auth_service.api_key_client(db, key=key)
        if client is None:
            raise error(403, "api_key is not valid (unknown or revoked)", "api_key 无效或已停用")
        code = (form.get("service_code") or "").strip()
        if not code:
            raise bad_param("service_code", "is required", "必填")
        try:
            category = service.get_category_by_service_code(db, service_code=code)
        except AppError as exc:
            if exc.status != 404:
                raise
            # A code in the body of a POST is a bad parameter, not a missing resource.
            raise bad_param(
                "service_code", f"unknown service {code}", f"未知的服务类别 {code}"
            ) from None
        data = mapping.order_from_form(form, category_code=category.code, client_id=client.id)
        result = service.create_order(
            db,
            data=data,
            source="open311",
            actor=None,
            idempotency_key=idempotency_key,
            now=utcnow(),
        )
        # Durable before the client hears 2xx (the request session would commit only after
        # the response is sent).
        db.commit()
        item = mapping.receipt_item(
            result.receipt, account_id=form.get("account_id"), locale=locale
        )
        return render(fmt, "service_requests", [item], status=200 if result.replayed else 201)

    return _answer(fmt, form.param("locale"), build, rollback=db)


# -- reading requests ---------------------------------------------------------------------


@router.get(f"{PREFIX}/requests.{{fmt}}", response_class=Response)
def list_requests(
    db: SessionDep,
    _: Public,
    fmt: Fmt,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[
        str | None, Query(description="Comma list; when given, the other filters are ignored")
    ] = None,
    service_code: Annotated[str | None, Query(description="One code or a comma list")] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601; default 90 days ago")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; default now")] = None,
    status: Annotated[str | None, Query(description="open, closed or both (comma list)")] = None,
    page: Annotated[str | None, Query(description="1, 2, …")] = None,
    page_size: Annotated[str | None, Query(description=f"1–{PAGE_SIZE_MAX}; default 50")] = None,
    locale: Locale = None,
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        ids = request_ids(service_request_id)
        if ids:
            rows, total = service.search_public(db, numbers=ids, page=1, page_size=len(ids))
        else:
            span = window(start_date, end_date, now=utcnow())
            states = mapping.states_for(status)
            page_no, size = paging(page, page_size)
            rows, total = service.search_public(
                db,
                service_codes=csv(service_code),
                states=states,
                start=span.start,
                end=span.end,
                page=page_no,
                page_size=size,
            )
        items = [mapping.request_item(r, locale) for r in rows]
        return render(fmt, "service_requests", items, headers={"X-Total-Count": str(total)})

    return _answer(fmt, locale, build)


@router.get(f"{PREFIX}/requests/{{service_request_id}}.{{fmt}}", response_class=Response)
def get_request(
    db: SessionDep,
    _: Public,
    service_request_id: str,
    fmt: Fmt,
    jurisdiction_id: Jurisdiction = None,
    locale: Locale = None,
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        rows, _total = service.search_public(db, numbers=[service_request_id], page=1, page_size=1)
        if not rows:
            raise error(
                404,
                f"service_request_id {service_request_id} not found",
                f"未找到诉求：{service_request_id}",
            )
        return render(fmt, "service_requests", [mapping.request_item(rows[0], locale)])

    return _answer(fmt, locale, build)


@router.get(f"{PREFIX}/tokens/{{token}}.{{fmt}}", response_class=Response)
def token_lookup(
    db: SessionDep, _: Public, token: str, fmt: Fmt, jurisdiction_id: Jurisdiction = None
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        number = service.number_for_token(db, token=token)
        if number is None:
            raise error(404, "token not found", "未找到该 token 对应的诉求")
        return render(fmt, "service_requests", [{"service_request_id": number, "token": token}])

    return _answer(fmt, None, build)


@router.get(f"{PREFIX}/servicerequestupdates.{{fmt}}", response_class=Response)
def request_updates(
    db: SessionDep,
    _: Public,
    fmt: Fmt,
    jurisdiction_id: Jurisdiction = None,
    service_request_id: Annotated[
        str | None, Query(description="Comma list: only these requests' updates")
    ] = None,
    start_date: Annotated[str | None, Query(description="ISO 8601; default 90 days ago")] = None,
    end_date: Annotated[str | None, Query(description="ISO 8601; default now")] = None,
    page: Annotated[str | None, Query(description="1, 2, …")] = None,
    page_size: Annotated[str | None, Query(description=f"1–{PAGE_SIZE_MAX}; default 50")] = None,
    locale: Locale = None,
) -> Response:
    def build(fmt: str, locale: str) -> Response:
        check_jurisdiction(jurisdiction_id)
        ids = request_ids(service_request_id)
        page_no, size = paging(page, page_size)
        start = end = None
        # One request's whole history needs no window; a feed of everything does.
        if not ids or start_date or end_date:
            span = window(start_date, end_date, now=utcnow())
            start, end = span.start, span.end
        rows, total = service.list_public_updates(
            db, numbers=ids, start=start, end=end, page=page_no, page_size=size
        )
        items = [mapping.update_item(u, locale) for u in rows]
        return render(fmt, "service_request_updates", items, headers={"X-Total-Count": str(total)})

    return _answer(fmt, locale, build)


# -- anything else under /open311/v2/ -----------------------------------------------------

_KNOWN = re.compile(
    r"^(discovery|services|requests|servicerequestupdates|services/[^/]+|requests/[^/]+"
    r"|tokens/[^/]+)\.(json|xml)$"
)


@router.api_route(
    f"{PREFIX}/{{rest:path}}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
def unknown(_: Public, rest: str) -> Response:
    """Open311 clients get Open311 errors even for a path or method that does not exist."""
    fmt = "xml" if rest.endswith(".xml") else "json"
    if _KNOWN.match(rest):
        err = error(405, "method not allowed on this resource", "该资源不支持此请求方法")
    elif not rest.endswith((".json", ".xml")):
        err = error(
            404,
            f"unknown resource {rest}: add .json or .xml",
            f"未知资源 {rest}：请加 .json 或 .xml",
        )
    else:
        err = error(404, f"unknown resource {rest}", f"未知资源 {rest}")
    return render_error(fmt, err, locale_of(None))
