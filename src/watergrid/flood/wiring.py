"""Where the flood response hooks into the rest: the alarm hooks (an alarm starts the call
rounds of its asset's plans and, at a waterlogging point, a pump-crew task; a cleared alarm
ends its rounds), and the timer kinds it runs on (the round ticks of calls.py and the
response sweep below).

Importing this module installs all of it. Every process that raises alarms (the MQTT
consumer in `watergrid worker`, the web app) or runs timers must import it; flood_api2 does
for the web app."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.orm import Session

from watergrid.flood import alarms, dispatch, kinds
from watergrid.flood import calls as call_service
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.models import FloodAsset
from watergrid.flood.response_schemas import LEVEL_ZH
from watergrid.flood.response_settings import get_response_settings
from watergrid.timers import service as timers

log = logging.getLogger("watergrid.flood.wiring")

KIND_SWEEP = "flood.response_sweep"
SWEEP_SUBJECT = ("flood_response", "district")


def on_alarm(db: Session, notice: alarms.AlarmNotice) -> None:
    """Raised or escalated: call the asset's plans at the alarm's level (a river section's
    alarm calls its river's plans); at a waterlogging point, send a crew."""
    if notice.action not in ("raised", "escalated"):
        return
    asset = db.get(FloodAsset, notice.asset_id)
    if asset is None or notice.level not in kinds.LEVELS:
        return
    level = kinds.LEVELS[notice.level][0]
    now = _now(db, notice)
    asset_ids = [asset.id]
    if asset.kind == "river_section" and asset.parent_id is not None:
        asset_ids.append(asset.parent_id)
    trigger = call_service.Trigger(
        "alarm", notice.alarm_id, f"{asset.name_zh}{LEVEL_ZH[level]}告警", notice.exercise
    )
    plans = [p for asset_id in asset_ids for p in plan_service.for_asset(db, asset_id=asset_id)]
    call_service.start_rounds(
        db, plans=plans, level=level, trigger=trigger, started_by_user_id=None, now=now
    )
    if asset.kind == "waterlogging_point" and notice.metric == "ponding_depth":
        dispatch.open_for_point(
            db,
            point=asset,
            source="alarm",
            alarm_id=notice.alarm_id,
            exercise=notice.exercise,
            actor_user_id=None,
            actor_name="系统",
            reason=f"积水{LEVEL_ZH[level]}告警",
            now=now,
        )


def _now(db: Session, notice: alarms.AlarmNotice) -> dt.datetime:
    # The alarm row carries the time the system decided (ingestion's `now`, which tests
    # drive); the reading time may lie in the past for late data.
    from watergrid.flood.models import Alarm

    alarm = db.get(Alarm, notice.alarm_id)
    if alarm is not None and alarm.updated_at is not None:
        return alarm.updated_at
    return dt.datetime.now(dt.UTC)


def on_alarm_cleared(db: Session, notice: alarms.AlarmNotice) -> None:
    alarm_now = _now(db, notice)
    call_service.close_for_trigger(
        db, trigger_kind="alarm", trigger_id=notice.alarm_id, reason="告警解除", now=alarm_now
    )


def install() -> None:
    """Add the hooks once, however often this module is imported or reloaded."""
    for hooks, fn in (
        (alarms.on_alarm_raised, on_alarm),
        (alarms.on_alarm_cleared, on_alarm_cleared),
    ):
        names = {f"{getattr(h, '__module__', '')}.{getattr(h, '__qualname__', '')}" for h in hooks}
        if f"{fn.__module__}.{fn.__qualname__}" not in names:
            hooks.append(fn)


install()


# -- the response sweep ------------------------------------------------------------------------


def sweep(db: Session, *, now: dt.datetime) -> dict[str, int]:
    """Rain against the warning criteria, new public waterlogging reports, waiting tasks."""
    suggestions = warning_service.check_rain(db, now=now)
    try:
        tasks = dispatch.sync_work_orders(db, now=now)
    except Exception:
        # Work orders are another domain: their trouble must not stop warning suggestions.
        log.exception("waterlogging work orders could not be read")
        tasks = []
    served = dispatch.assign_waiting(db, now=now)
    return {"suggestions": len(suggestions), "tasks": len(tasks), "served": served}


@timers.register(KIND_SWEEP)
def _sweep_handler(db: Session, item: Any, now: dt.datetime) -> None:
    sweep(db, now=now)
    interval = dt.timedelta(seconds=get_response_settings().sweep_interval_s)
    timers.schedule(
        db,
        kind=KIND_SWEEP,
        subject_type=SWEEP_SUBJECT[0],
        subject_id=SWEEP_SUBJECT[1],
        due_at=now + interval,
        now=now,
    )


def on_worker_start(db: Session, now: dt.datetime) -> None:
    """What `watergrid worker` (and the embedded worker) does at start (ops/worker.py)."""
    ensure_sweep(db, now=now)


def ensure_sweep(db: Session, *, now: dt.datetime) -> None:
    """Arm the sweep unless it is armed already (it re-arms itself each run)."""
    item = timers.get(
        db, kind=KIND_SWEEP, subject_type=SWEEP_SUBJECT[0], subject_id=SWEEP_SUBJECT[1]
    )
    if item is not None and item.state in timers.OPEN_STATES:
        return
    timers.schedule(
        db,
        kind=KIND_SWEEP,
        subject_type=SWEEP_SUBJECT[0],
        subject_id=SWEEP_SUBJECT[1],
        due_at=now,
        now=now,
    )
