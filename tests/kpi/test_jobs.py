"""The catch-up timer carries order changes into the rollups without any hook, and re-arms."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session
from tests.kpi.helpers import T0, who
from tests.workorders.helpers import grid_point, report

from watergrid.kpi import jobs
from watergrid.kpi.models import OrderFact
from watergrid.timers import service as timers
from watergrid.workorders import service as wo
from watergrid.workorders.schemas import OrderCreate


def test_catch_up_timer_refreshes_and_rearms(db: Session) -> None:
    lon, lat = grid_point(db, "W01")
    body = report(
        lon=lon, lat=lat, category_code="drainage.backflow", attributes={"premises": "shop"}
    )
    oid = wo.create_order(
        db, data=OrderCreate(**body), source="public_web", actor=None, idempotency_key=None, now=T0
    ).receipt.id
    wo.transition(db, order_id=oid, action="accept", actor=who(db, "watercorp"), now=T0)
    assert db.get(OrderFact, oid) is None  # no hook: nothing yet
    jobs.ensure_scheduled(db, now=T0)
    jobs.ensure_scheduled(db, now=T0)  # idempotent
    db.flush()
    conn = db.get_bind()

    def factory() -> Session:
        return Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)

    ran = timers.run_due(factory, worker_id="test", now=T0 + jobs.CATCH_UP_EVERY)
    assert ran >= 1
    db.expire_all()
    fact = db.get(OrderFact, oid)
    assert fact is not None and fact.state == "accepted" and fact.resp_outcome == "open"
    item = timers.get(db, kind=jobs.KIND_CATCH_UP, subject_type="kpi", subject_id="rollups")
    assert item is not None and item.state == "pending"
    assert item.due_at == T0 + 2 * jobs.CATCH_UP_EVERY
    assert timedelta(seconds=30) == jobs.CATCH_UP_EVERY
