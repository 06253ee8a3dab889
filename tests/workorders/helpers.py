"""Helpers shared by the work-order tests."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

# 2026-03-02 is a Monday; 09:00 in Asia/Shanghai.
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def counts(db: Session) -> dict[str, int]:
    """Rows in every table a create or an action may write."""
    from watergrid.notify.models import InboxItem, OutboxMessage
    from watergrid.timers.models import DueItem
    from watergrid.workorders.models import (
        Attachment,
        AttachmentBlob,
        IdempotencyRecord,
        OrderCoHandler,
        OrderCounter,
        OrderEvent,
        OrderFollower,
        OrderSuspension,
        Supervision,
        WorkOrder,
    )

    db.flush()
    out = {}
    for m in (
        WorkOrder,
        OrderEvent,
        OrderFollower,
        OrderCoHandler,
        OrderSuspension,
        IdempotencyRecord,
        Attachment,
        AttachmentBlob,
        Supervision,
        DueItem,
        OutboxMessage,
        InboxItem,
    ):
        out[m.__tablename__] = int(db.scalar(select(func.count()).select_from(m)) or 0)
    out["counter"] = int(db.scalar(select(func.coalesce(func.sum(OrderCounter.last), 0))) or 0)
    return out


def grid_point(db: Session, code: str) -> tuple[float, float]:
    """A point well inside a grid and, when possible, outside every key zone."""
    from shapely.geometry import shape

    from watergrid.geo import service as geo_service

    grid = shape(geo_service.get_or_404(db, code=code).geometry)
    zones = [shape(z.geometry) for z in geo_service.get_all(db, kind="zone")]
    inner = grid.buffer(-0.001)
    free = inner
    for z in zones:
        free = free.difference(z.buffer(0.0005))
    target = free if not free.is_empty else inner
    p = target.representative_point()
    return float(p.x), float(p.y)


def zone_point(db: Session, zone_code: str, grid_code: str | None = None) -> tuple[float, float]:
    """A point well inside a key zone (and inside `grid_code` when given)."""
    from shapely.geometry import shape

    from watergrid.geo import service as geo_service

    region = shape(geo_service.get_or_404(db, code=zone_code).geometry)
    if grid_code is not None:
        region = region.intersection(shape(geo_service.get_or_404(db, code=grid_code).geometry))
    p = region.buffer(-0.0005).representative_point()
    return float(p.x), float(p.y)


def jpeg(size: tuple[int, int] = (64, 48), exif: bool = False) -> bytes:
    from PIL import Image

    img = Image.new("RGB", size, (30, 120, 200))
    buf = io.BytesIO()
    if exif:
        ex = Image.Exif()
        ex[0x010F] = "PhoneMaker"  # Make
        ex[0x0112] = 6  # Orientation: rotate 90° CW to display
        img.save(buf, "JPEG", exif=ex.tobytes())
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


def report(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category_code": "drainage.blocked_drain",
        "description": "雨水口被垃圾堵住，路面积水 / gully blocked",
        "lon": 0.0,
        "lat": 0.0,
        "address": "光明大道123号",
        "reporter_phone": "13800138000",
        "phone_consent": True,
    }
    body.update(over)
    return body
