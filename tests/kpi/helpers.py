"""Building orders for the KPI tests through the work-order service (the real state rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session
from tests.workorders.helpers import grid_point, report

from watergrid.auth import service as auth_service
from watergrid.auth.principal import Principal
from watergrid.kpi import rollups
from watergrid.workorders import service
from watergrid.workorders.schemas import OrderCreate

# Monday 2026-03-02, 09:00 in Asia/Shanghai. drainage.backflow is "urgent": respond within 2
# clock hours (due 11:00), handle within 2 working days of dispatch.
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
D = timedelta(days=1)


def who(db: Session, username: str) -> Principal:
    user = auth_service.get_by_username(db, username=username)
    assert user is not None
    return auth_service.load_principal(db, user=user)


def new_order(
    db: Session,
    *,
    grid: str = "W01",
    at: timedelta = timedelta(0),
    source: str = "public_web",
    actor: str | None = None,
) -> int:
    lon, lat = grid_point(db, grid)
    body = report(
        lon=lon, lat=lat, category_code="drainage.backflow", attributes={"premises": "shop"}
    )
    principal = who(db, actor) if actor else None
    oid = service.create_order(
        db,
        data=OrderCreate(**body),
        source=source,
        actor=principal,
        idempotency_key=None,
        now=T0 + at,
    ).receipt.id
    rollups.refresh_orders(db, order_ids=[oid])
    return oid


def act(db: Session, oid: int, action: str, user: str, at: timedelta, **params: Any) -> None:
    service.transition(db, order_id=oid, action=action, actor=who(db, user), now=T0 + at, **params)
    rollups.refresh_orders(db, order_ids=[oid])


def dispatched(db: Session, *, grid: str = "W01", at: timedelta = timedelta(0), **kw: Any) -> int:
    """An order accepted and dispatched ten minutes after it came in."""
    oid = new_order(db, grid=grid, at=at, **kw)
    act(db, oid, "accept", "watercorp", at + 5 * M)
    act(db, oid, "dispatch", "watercorp", at + 10 * M)
    return oid


def rate(db: Session, oid: int, score: int, at: timedelta) -> None:
    from watergrid.workorders.models import WorkOrder

    number = db.get(WorkOrder, oid).number  # type: ignore[union-attr]
    service.rate(db, number=number or "", phone_last4="8000", score=score, now=T0 + at)
    rollups.refresh_orders(db, order_ids=[oid])
