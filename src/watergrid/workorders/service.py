"""Work orders: the service other domains call (the Open311 adapter, the pages, the KPIs).

Typed keyword-only functions taking a Session. They never commit (the caller's transaction
holds the order, its history, its timers and its outbox rows together), never send, and
take `now` from the caller so that tests drive time. Errors a user can cause are AppError
with Chinese and English messages and change nothing.

Categories live here; intake, reading, transitions and the public side live in their own
modules and are re-exported below, so callers import only `workorders.service`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.errors import AppError, not_found
from watergrid.org.categories import SERVICE_CATEGORIES
from watergrid.workorders.actions import transition
from watergrid.workorders.common import field_error
from watergrid.workorders.intake import (
    check_attributes,
    create_order,
    distance_m,
    find_duplicates,
    normalise_mobile,
    purge_unclaimed_uploads,
    upload_attachment,
)
from watergrid.workorders.models import Category
from watergrid.workorders.photos import PhotoUpload
from watergrid.workorders.public import (
    PublicSummary,
    list_public_updates,
    rate,
    search_public,
    track,
)
from watergrid.workorders.queries import (
    AttachmentContent,
    allowed_actions,
    attachment_content,
    check_read,
    deadline_plan,
    get_order,
    get_order_row,
    list_orders,
    list_supervisions,
    number_for_token,
    order_id_for_number,
    queue_counts,
    read_order,
)
from watergrid.workorders.schemas import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    CreateResult,
    OrderFilter,
    OrderRead,
    OrderReceipt,
)


def _category_read(c: Category) -> CategoryRead:
    group = SERVICE_CATEGORIES.get(c.group_code, (c.group_code, c.group_code))
    return CategoryRead.model_validate(
        {
            "id": c.id,
            "code": c.code,
            "group_code": c.group_code,
            "group_name_zh": group[0],
            "group_name_en": group[1],
            "name_zh": c.name_zh,
            "name_en": c.name_en,
            "description_zh": c.description_zh,
            "description_en": c.description_en,
            "default_priority": c.default_priority,
            "deadlines": c.deadlines,
            "service_code": c.service_code,
            "keywords": c.keywords or [],
            "attributes": sorted(c.attributes or [], key=lambda a: (a.get("order", 0), a["code"])),
            "active": c.active,
            "position": c.position,
        }
    )


def list_categories(db: Session, *, include_inactive: bool = False) -> list[CategoryRead]:
    q = select(Category).order_by(Category.position, Category.code)
    if not include_inactive:
        q = q.where(Category.active.is_(True))
    return [_category_read(c) for c in db.scalars(q)]


def _category_row(db: Session, *, code: str) -> Category:
    c = db.scalar(select(Category).where(Category.code == code))
    if c is None:
        raise not_found("category", "诉求类别", code)
    return c


def get_category(db: Session, *, code: str) -> CategoryRead:
    return _category_read(_category_row(db, code=code))


def get_category_by_service_code(db: Session, *, service_code: str) -> CategoryRead:
    """For Open311: the category behind a service_code (404 when none)."""
    c = db.scalar(select(Category).where(Category.service_code == service_code))
    if c is None:
        raise not_found("service", "服务类别", service_code)
    return _category_read(c)


def _check_service_code_free(db: Session, *, service_code: str, except_id: int | None) -> None:
    other = db.scalar(select(Category).where(Category.service_code == service_code))
    if other is not None and other.id != except_id:
        raise AppError(
            409,
            "service_code_taken",
            f"Service code {service_code} is used by {other.code}",
            f"服务编码 {service_code} 已被 {other.code} 使用",
        )


def create_category(db: Session, *, data: CategoryCreate) -> CategoryRead:
    group = data.code.split(".", 1)[0]
    if group not in SERVICE_CATEGORIES:
        raise AppError(
            422,
            "unknown_group",
            f"{group} is not one of the service categories {sorted(SERVICE_CATEGORIES)}",
            f"{group} 不是六类涉水服务之一",
            [
                field_error(
                    "code", "Unknown service category prefix", "类别编码前缀不是六类涉水服务之一"
                )
            ],
        )
    if db.scalar(select(Category.id).where(Category.code == data.code)) is not None:
        raise AppError(
            409, "category_exists", f"Category {data.code} exists", f"诉求类别 {data.code} 已存在"
        )
    _check_service_code_free(db, service_code=data.service_code, except_id=None)
    dumped = data.model_dump(mode="json")
    row = Category(group_code=group, **dumped)
    db.add(row)
    db.flush()
    return _category_read(row)


def update_category(db: Session, *, code: str, data: CategoryUpdate) -> CategoryRead:
    """Change a category. Orders already made keep the deadlines they were given."""
    row = _category_row(db, code=code)
    changes = data.model_dump(mode="json", exclude_unset=True)
    if changes.get("service_code"):
        _check_service_code_free(db, service_code=changes["service_code"], except_id=row.id)
    for key, value in changes.items():
        if value is None and key not in ("description_zh", "description_en"):
            continue
        setattr(row, key, value)
    db.flush()
    return _category_read(row)


__all__ = [
    "AttachmentContent",
    "CreateResult",
    "OrderFilter",
    "OrderRead",
    "OrderReceipt",
    "PhotoUpload",
    "PublicSummary",
    "allowed_actions",
    "attachment_content",
    "check_attributes",
    "check_read",
    "create_category",
    "create_order",
    "deadline_plan",
    "distance_m",
    "find_duplicates",
    "get_category",
    "get_category_by_service_code",
    "get_order",
    "get_order_row",
    "list_categories",
    "list_orders",
    "list_public_updates",
    "list_supervisions",
    "normalise_mobile",
    "number_for_token",
    "order_id_for_number",
    "purge_unclaimed_uploads",
    "queue_counts",
    "rate",
    "read_order",
    "search_public",
    "track",
    "transition",
    "update_category",
    "upload_attachment",
]
