"""Work-order REST routes under /api/v1: thin — fetch, 404, check scope, call the service.

Write routes commit before they answer: a citizen's report is durable before the client
hears 2xx (the request session's own commit runs only after the response is sent)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Header, Query, Response, UploadFile
from sqlalchemy.orm import Session

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.workorders import batching, service
from watergrid.workorders import jobs as _jobs  # noqa: F401  (registers the timer handlers)
from watergrid.workorders.config import get_wo_settings
from watergrid.workorders.intake import CreateRequest
from watergrid.workorders.photos import PhotoUpload
from watergrid.workorders.schemas import (
    ActionRequest,
    AttachmentRead,
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    OrderCreate,
    OrderFilter,
    OrderPage,
    OrderRead,
    OrderReceipt,
    PublicOrder,
    RatingCreate,
    SupervisionRead,
    TrackQuery,
)

router = APIRouter(prefix="/api/v1", tags=["work orders"])
Public = Annotated[Principal | None, Depends(public)]
Reader = Annotated[Principal, Depends(allow("orders.read"))]
Actor = Annotated[Principal, Depends(allow("orders.act"))]
CategoryAdmin = Annotated[Principal, Depends(allow("categories.write"))]
SupervisionReader = Annotated[Principal, Depends(allow("supervision.read"))]


def _durable(db: Session) -> None:
    db.commit()


class OrderCreateRequest(OrderCreate):
    """POST /orders: the report plus where it came from. Open311 clients use /open311/v2/;
    patrol and phone entries need a staff login."""

    source: Literal["public_web", "service_card", "api", "patrol", "phone"] = "api"


# -- categories ---------------------------------------------------------------------------


@router.get("/categories", response_model=list[CategoryRead])
def list_categories(
    db: SessionDep, principal: Public, include_inactive: bool = False
) -> list[CategoryRead]:
    admin = principal is not None and principal.can("categories.write")
    return service.list_categories(db, include_inactive=include_inactive and admin)


@router.get("/categories/{code}", response_model=CategoryRead)
def get_category(db: SessionDep, _: Public, code: str) -> CategoryRead:
    return service.get_category(db, code=code)


@router.post("/categories", response_model=CategoryRead, status_code=201)
def create_category(db: SessionDep, _: CategoryAdmin, body: CategoryCreate) -> CategoryRead:
    out = service.create_category(db, data=body)
    _durable(db)
    return out


@router.patch("/categories/{code}", response_model=CategoryRead)
def update_category(
    db: SessionDep, _: CategoryAdmin, code: str, body: CategoryUpdate
) -> CategoryRead:
    out = service.update_category(db, code=code, data=body)
    _durable(db)
    return out


# -- orders -------------------------------------------------------------------------------


@router.post(
    "/orders",
    response_model=OrderReceipt,
    status_code=201,
    responses={
        200: {"description": "A retry with the same Idempotency-Key: the first receipt"},
        409: {"description": "Idempotency-Key reused with a different request"},
    },
)
async def create_order(
    db: SessionDep,
    principal: Public,
    body: OrderCreateRequest,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    # Through this process's intake queue (group commit, workorders.batching): the answer
    # comes after the report's transaction has committed. The body is an OrderCreate
    # already (the service hashes only OrderCreate's fields), and the receipt was built by
    # the service: it is written out once, not validated again.
    result = await batching.submit(
        db, CreateRequest(body, body.source, principal, idempotency_key, utcnow())
    )
    return Response(
        result.receipt.model_dump_json(),
        status_code=200 if result.replayed else 201,
        media_type="application/json",
    )


@router.get("/orders", response_model=OrderPage)
def list_orders(
    db: SessionDep,
    principal: Reader,
    state: Annotated[list[str] | None, Query()] = None,
    category: str | None = None,
    overdue: bool | None = None,
    near_deadline: bool | None = None,
    source: str | None = None,
    grid: str | None = None,
    zone: str | None = None,
    department: str | None = None,
    number: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    mine: bool = False,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderPage:
    filters = OrderFilter(
        state=state,
        category_code=category,
        overdue=overdue,
        near_deadline=near_deadline,
        source=source,
        grid_code=grid,
        zone_code=zone,
        department_code=department,
        number=number,
        created_from=created_from,
        created_to=created_to,
        mine=mine,
    )
    return service.list_orders(
        db, principal=principal, filters=filters, page=page, page_size=page_size, now=utcnow()
    )


@router.get("/orders/by-number/{number}", response_model=OrderRead)
def get_order_by_number(db: SessionDep, principal: Reader, number: str) -> OrderRead:
    order_id = service.order_id_for_number(db, number=number)
    return service.get_order(db, order_id=order_id, principal=principal, now=utcnow())


@router.get("/orders/{order_id}", response_model=OrderRead)
def get_order(db: SessionDep, principal: Reader, order_id: int) -> OrderRead:
    """404 when no such order exists; 403 when it exists outside the caller's scope."""
    return service.get_order(db, order_id=order_id, principal=principal, now=utcnow())


@router.post("/orders/{order_id}/actions/{action}", response_model=OrderRead)
def act(
    db: SessionDep, principal: Actor, order_id: int, action: str, body: ActionRequest
) -> OrderRead:
    params = body.model_dump(exclude={"note"}, exclude_none=True)
    out = service.transition(
        db,
        order_id=order_id,
        action=action,
        actor=principal,
        note=body.note,
        now=utcnow(),
        **params,
    )
    _durable(db)
    return out


# -- attachments --------------------------------------------------------------------------


@router.post("/attachments", response_model=AttachmentRead, status_code=201)
def upload(db: SessionDep, principal: Public, file: UploadFile = File(...)) -> AttachmentRead:
    # Read one byte past the limit: enough to refuse an oversize file without holding it all.
    data = file.file.read(get_wo_settings().photo_max_bytes + 1)
    out = service.upload_attachment(
        db,
        photo=PhotoUpload(
            filename=file.filename or "", data=data, content_type=file.content_type or ""
        ),
        actor=principal,
        now=utcnow(),
    )
    _durable(db)
    return out


@router.get("/attachments/{key}", response_class=Response)
def attachment(
    db: SessionDep,
    principal: Public,
    key: str,
    variant: Literal["public", "original"] = "public",
) -> Response:
    content = service.attachment_content(db, key=key, variant=variant, principal=principal)
    return Response(
        content.data,
        media_type=content.content_type,
        headers={
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )


# -- the reporter's side ------------------------------------------------------------------


@router.post("/track", response_model=PublicOrder)
def track(db: SessionDep, _: Public, body: TrackQuery) -> PublicOrder:
    """POST so that phone digits and tokens stay out of URLs and access logs."""
    return service.track(db, number=body.number, phone_last4=body.phone_last4, token=body.token)


@router.post("/track/rate", response_model=PublicOrder)
def rate(db: SessionDep, _: Public, body: RatingCreate) -> PublicOrder:
    out = service.rate(
        db,
        number=body.number,
        phone_last4=body.phone_last4,
        token=body.token,
        score=body.score,
        comment=body.comment,
        now=utcnow(),
    )
    _durable(db)
    return out


# -- supervision --------------------------------------------------------------------------


@router.get("/supervisions", response_model=list[SupervisionRead])
def supervisions(
    db: SessionDep,
    principal: SupervisionReader,
    state: Literal["open", "closed"] | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[SupervisionRead]:
    return service.list_supervisions(
        db, principal=principal, state=state, page=page, page_size=page_size
    )
