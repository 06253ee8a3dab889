"""Random sequences of work-order operations: the rollups kept up by differences (some after
each change, some later by the watermark job) equal a rebuild from history, and every stored
fact equals a fact computed afresh."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.kpi.helpers import T0, who
from tests.workorders.helpers import grid_point, report

from watergrid.errors import AppError
from watergrid.kpi import rollups, service
from watergrid.kpi.models import OrderFact
from watergrid.workorders import lifecycle
from watergrid.workorders import service as wo
from watergrid.workorders.models import WorkOrder
from watergrid.workorders.schemas import OrderCreate

GRIDS = ("W01", "W13", "W20")
CATEGORIES = (("drainage.backflow", {"premises": "shop"}), ("drainage.blocked_drain", {}))
PARAMS: dict[str, dict[str, Any]] = {
    "reject": {"reason": "invalid", "note": "无效"},
    "reassign": {"department_code": "DRAINAGE", "note": "改派"},
    "return": {"note": "非本部门"},
    "respond": {"mode": "on_site"},
    "resolve": {"note": "已办结"},
    "reopen": {"note": "重办"},
    "suspend": {"note": "等待"},
    "request_extension": {"amount": 1, "note": "延期"},
    "supervise": {"note": "督办"},
    "comment": {"note": "备注"},
}

step = st.tuples(
    st.integers(0, 999),  # which order (or a new one)
    st.integers(0, 999),  # which action among those allowed
    st.integers(1, 36 * 60),  # minutes until this step
    st.booleans(),  # refresh now (the hook) or leave it to the catch-up job
)


def _create(db: Session, now: Any, i: int) -> int:
    grid = GRIDS[i % len(GRIDS)]
    code, attrs = CATEGORIES[i % len(CATEGORIES)]
    lon, lat = grid_point(db, grid)
    body = report(lon=lon, lat=lat, category_code=code, attributes=attrs)
    source = "patrol" if i % 3 == 0 else "public_web"
    actor = who(db, "grid01") if source == "patrol" and grid == "W01" else None
    if source == "patrol" and actor is None:
        source = "phone"
        actor = who(db, "leader")
    return wo.create_order(
        db, data=OrderCreate(**body), source=source, actor=actor, idempotency_key=None, now=now
    ).receipt.id


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=5, max_size=40))
def test_incremental_equals_rebuild(db: Session, steps: list[tuple[int, int, int, bool]]) -> None:
    nested = db.begin_nested()
    try:
        leader = who(db, "leader")
        now = T0
        orders: list[int] = []
        for pick, choice, minutes, hook in steps:
            now += timedelta(minutes=minutes)
            touched: int | None = None
            if not orders or pick % 4 == 0:
                touched = _create(db, now, len(orders))
                orders.append(touched)
            else:
                oid = orders[pick % len(orders)]
                order = db.get(WorkOrder, oid)
                assert order is not None
                actions = [a for a in lifecycle.ACTIONS if lifecycle.find(order.state, a)]
                if order.state in lifecycle.DONE_STATES and order.rating is None:
                    actions.append("rate")
                if not actions:
                    continue
                action = actions[choice % len(actions)]
                try:
                    if action == "rate":
                        wo.rate(
                            db,
                            number=order.number or "",
                            phone_last4="8000",
                            score=1 + choice % 5,
                            now=now,
                        )
                    else:
                        params = dict(PARAMS.get(action, {}))
                        if action == "merge":
                            others = [o for o in orders if o != oid]
                            if not others:
                                continue
                            target = db.get(WorkOrder, others[choice % len(others)])
                            params["into_number"] = target.number if target else ""
                        wo.transition(
                            db, order_id=oid, action=action, actor=leader, now=now, **params
                        )
                except AppError:
                    continue  # refused by the rules: nothing changed
                touched = oid
            if hook and touched is not None:
                rollups.refresh_orders(db, order_ids=[touched])
        rollups.catch_up(db, now=now)

        incremental = rollups.rollup_snapshot(db)
        stored = rollups.stored_facts(db, orders)
        fresh = rollups.facts_for(db, orders)
        assert stored == fresh
        rollups.rebuild(db, now=now)
        assert rollups.rollup_snapshot(db) == incremental
        # And the figures read from them agree with a count over the facts.
        fig = service.figures(
            db, dim="all", key="", start=date(2026, 1, 1), end=date(2026, 12, 31), now=now
        )
        facts = list(fresh.values())
        assert fig["created"] == len(facts)
        assert fig["r_met"] == sum(f["resp_outcome"] == "met" for f in facts)
        assert fig.r_due == sum(
            f["resp_outcome"] in ("met", "missed")
            or (f["resp_outcome"] == "open" and f["resp_due_at"] < now)
            for f in facts
        )
        assert db.query(OrderFact).count() == len(orders)
    finally:
        nested.rollback()
