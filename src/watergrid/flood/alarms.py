"""Alarms: their lifecycle raised → acknowledged → cleared, the append-only history, and the
hooks other flood features hang on (the call-and-response starts its rounds from
`on_alarm_raised`).

Ingestion decides *when* a level changes (flood/hysteresis.py) and calls `apply_level_change`
inside the same transaction as the reading batch; people acknowledge and clear through the
functions below. None of them commit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from watergrid.errors import AppError, not_found
from watergrid.flood import kinds
from watergrid.flood.models import Alarm, AlarmEvent, FloodAsset, Sensor
from watergrid.flood.schemas import AlarmEventRead, AlarmRead
from watergrid.geo import service as geo_service

log = logging.getLogger("watergrid.flood.alarms")


@dataclass(frozen=True, slots=True)
class AlarmNotice:
    """What a hook learns about an alarm change. `action` is raised (a new alarm),
    escalated (its level went up; it needs acknowledging again) or cleared."""

    alarm_id: int
    action: str
    asset_id: int
    sensor_id: int | None
    metric: str
    level: int
    previous_level: int
    value: float | None
    reading_at: datetime | None
    subdistrict_id: int | None
    grid_id: int | None
    exercise: bool


AlarmHook = Callable[[Session, AlarmNotice], None]

# Called inside the transaction that raised, escalated or cleared the alarm, so whatever a
# hook writes (call rounds, outbox rows) commits or rolls back with it. Each call runs in a
# savepoint: a failing hook is logged and undone alone and never costs the readings.
on_alarm_raised: list[AlarmHook] = []
on_alarm_cleared: list[AlarmHook] = []


def run_hooks(db: Session, notices: Sequence[AlarmNotice]) -> None:
    for notice in notices:
        hooks = on_alarm_cleared if notice.action == "cleared" else on_alarm_raised
        for hook in list(hooks):
            try:
                with db.begin_nested():
                    hook(db, notice)
            except Exception:
                log.exception("alarm hook %r failed for alarm %s", hook, notice.alarm_id)


def _history(
    db: Session,
    alarm: Alarm,
    *,
    action: str,
    from_state: str | None,
    from_level: int | None,
    at: datetime,
    actor_id: int | None = None,
    reason: str = "",
    reading_at: datetime | None = None,
) -> None:
    db.add(
        AlarmEvent(
            alarm_id=alarm.id,
            at=at,
            actor_id=actor_id,
            action=action,
            from_state=from_state,
            to_state=alarm.state,
            from_level=from_level,
            to_level=alarm.level,
            value=alarm.last_value,
            reading_at=reading_at,
            reason=reason[:300],
        )
    )


def _notice(alarm: Alarm, action: str, previous: int) -> AlarmNotice:
    return AlarmNotice(
        alarm_id=alarm.id,
        action=action,
        asset_id=alarm.asset_id,
        sensor_id=alarm.sensor_id,
        metric=alarm.metric,
        level=alarm.level,
        previous_level=previous,
        value=alarm.last_value,
        reading_at=alarm.reading_at,
        subdistrict_id=alarm.subdistrict_id,
        grid_id=alarm.grid_id,
        exercise=alarm.exercise,
    )


def open_alarm(db: Session, *, sensor_id: int, metric: str, lock: bool = False) -> Alarm | None:
    q = select(Alarm).where(
        Alarm.sensor_id == sensor_id, Alarm.metric == metric, Alarm.state.in_(kinds.OPEN_STATES)
    )
    if lock:
        q = q.with_for_update()
    return db.scalar(q)


def apply_level_change(
    db: Session,
    *,
    asset_id: int,
    sensor_id: int,
    metric: str,
    new_level: int,
    value: float,
    reading_at: datetime,
    subdistrict_id: int | None,
    grid_id: int | None,
    now: datetime,
) -> AlarmNotice | None:
    """Bring the open alarm of (sensor, metric) to `new_level` (0 clears it). Returns what
    hooks should hear, or None when nothing needs announcing."""
    alarm = open_alarm(db, sensor_id=sensor_id, metric=metric, lock=True)
    if new_level == 0:
        if alarm is None:
            return None
        previous, from_state = alarm.level, alarm.state
        alarm.state, alarm.level, alarm.cleared_at, alarm.updated_at = "cleared", 0, now, now
        alarm.last_value = value
        alarm.clear_reason = "value back below the clear level for the set duration"
        _history(
            db,
            alarm,
            action="cleared",
            from_state=from_state,
            from_level=previous,
            at=now,
            reason=alarm.clear_reason,
            reading_at=reading_at,
        )
        return _notice(alarm, "cleared", previous)
    if alarm is None:
        alarm = Alarm(
            asset_id=asset_id,
            sensor_id=sensor_id,
            metric=metric,
            level=new_level,
            peak_level=new_level,
            state="raised",
            subdistrict_id=subdistrict_id,
            grid_id=grid_id,
            raised_at=now,
            reading_at=reading_at,
            value=value,
            last_value=value,
            updated_at=now,
        )
        db.add(alarm)
        db.flush()
        _history(
            db,
            alarm,
            action="raised",
            from_state=None,
            from_level=0,
            at=now,
            reason=f"{kinds.level_name(new_level)} threshold reached",
            reading_at=reading_at,
        )
        return _notice(alarm, "raised", 0)
    previous, from_state = alarm.level, alarm.state
    if new_level == previous:
        return None
    alarm.level, alarm.last_value, alarm.updated_at = new_level, value, now
    if new_level > previous:
        # A higher level is news even to someone who acknowledged the lower one.
        alarm.state, alarm.peak_level = "raised", max(alarm.peak_level, new_level)
        alarm.reading_at = reading_at
        _history(
            db,
            alarm,
            action="escalated",
            from_state=from_state,
            from_level=previous,
            at=now,
            reason=f"{kinds.level_name(new_level)} threshold reached",
            reading_at=reading_at,
        )
        return _notice(alarm, "escalated", previous)
    _history(
        db,
        alarm,
        action="downgraded",
        from_state=from_state,
        from_level=previous,
        at=now,
        reason=f"below the {kinds.level_name(previous)} clear level",
        reading_at=reading_at,
    )
    return None


# -- people acting on alarms -------------------------------------------------------------


def get_or_404(db: Session, *, alarm_id: int) -> Alarm:
    alarm = db.get(Alarm, alarm_id)
    if alarm is None:
        raise not_found("alarm", "告警", alarm_id)
    return alarm


def _conflict(alarm: Alarm, wanted: str) -> AppError:
    return AppError(
        409,
        "alarm_state",
        f"Alarm {alarm.id} is {alarm.state}; cannot {wanted}",
        f"告警当前状态为{alarm.state}，无法执行此操作",
    )


def acknowledge(
    db: Session, *, alarm_id: int, user_id: int, now: datetime, reason: str = ""
) -> Alarm:
    """raised → acknowledged. Conditional, so two officers acknowledging at once record one
    acknowledgement and the second gets a clear 409."""
    alarm = get_or_404(db, alarm_id=alarm_id)
    changed = db.execute(
        update(Alarm)
        .where(Alarm.id == alarm_id, Alarm.state == "raised")
        .values(state="acknowledged", acknowledged_at=now, acknowledged_by=user_id, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.refresh(alarm)
    if changed != 1:
        raise _conflict(alarm, "acknowledge")
    _history(
        db,
        alarm,
        action="acknowledged",
        from_state="raised",
        from_level=alarm.level,
        at=now,
        actor_id=user_id,
        reason=reason,
    )
    db.flush()
    return alarm


def clear(db: Session, *, alarm_id: int, user_id: int, now: datetime, reason: str) -> Alarm:
    """Clear by hand (a broken sensor, a drill over). While the water stays up the sensor's
    level does not change, so no new alarm follows until the level moves again."""
    if not reason.strip():
        raise AppError(422, "reason_required", "Say why the alarm is cleared", "请填写解除原因")
    alarm = get_or_404(db, alarm_id=alarm_id)
    from_state, from_level = alarm.state, alarm.level
    changed = db.execute(
        update(Alarm)
        .where(Alarm.id == alarm_id, Alarm.state.in_(kinds.OPEN_STATES))
        .values(
            state="cleared",
            level=0,
            cleared_at=now,
            cleared_by=user_id,
            clear_reason=reason[:300],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.refresh(alarm)
    if changed != 1:
        raise _conflict(alarm, "clear")
    _history(
        db,
        alarm,
        action="cleared",
        from_state=from_state,
        from_level=from_level,
        at=now,
        actor_id=user_id,
        reason=reason,
    )
    db.flush()
    run_hooks(db, [_notice(alarm, "cleared", from_level)])
    return alarm


def raise_manual(
    db: Session,
    *,
    asset_id: int,
    metric: str,
    level: int,
    user_id: int,
    reason: str,
    now: datetime,
    exercise: bool = False,
) -> Alarm:
    """An alarm raised by a person (a patrol saw the water, or a drill), not by a sensor."""
    if level not in kinds.LEVELS or metric not in kinds.ALARM_METRICS:
        raise AppError(422, "bad_alarm", "Unknown level or metric", "告警等级或类型无效")
    asset = db.get(FloodAsset, asset_id)
    if asset is None:
        raise not_found("asset", "防汛设施", asset_id)
    alarm = Alarm(
        asset_id=asset.id,
        sensor_id=None,
        metric=metric,
        level=level,
        peak_level=level,
        state="raised",
        exercise=exercise,
        subdistrict_id=asset.subdistrict_id,
        grid_id=asset.grid_id,
        raised_at=now,
        updated_at=now,
    )
    db.add(alarm)
    db.flush()
    why = ("[演练] " if exercise else "") + reason
    _history(
        db,
        alarm,
        action="raised",
        from_state=None,
        from_level=0,
        at=now,
        actor_id=user_id,
        reason=why,
    )
    db.flush()
    run_hooks(db, [_notice(alarm, "raised", 0)])
    return alarm


# -- reading ------------------------------------------------------------------------------


def get_all(
    db: Session,
    *,
    state: str | None = None,
    open_only: bool = False,
    asset_id: int | None = None,
    subdistrict_id: int | None = None,
    limit: int = 200,
) -> list[Alarm]:
    q = select(Alarm).order_by(Alarm.raised_at.desc(), Alarm.id.desc()).limit(limit)
    if open_only:
        q = q.where(Alarm.state.in_(kinds.OPEN_STATES))
    if state is not None:
        q = q.where(Alarm.state == state)
    if asset_id is not None:
        q = q.where(Alarm.asset_id == asset_id)
    if subdistrict_id is not None:
        q = q.where(Alarm.subdistrict_id == subdistrict_id)
    return list(db.scalars(q))


def history(db: Session, *, alarm_id: int) -> list[AlarmEvent]:
    return list(
        db.scalars(
            select(AlarmEvent).where(AlarmEvent.alarm_id == alarm_id).order_by(AlarmEvent.id)
        )
    )


def to_read(db: Session, alarms: Sequence[Alarm], *, with_history: bool = False) -> list[AlarmRead]:
    asset_ids = {a.asset_id for a in alarms}
    sensor_ids = {a.sensor_id for a in alarms if a.sensor_id is not None}
    assets = (
        {x.id: x for x in db.scalars(select(FloodAsset).where(FloodAsset.id.in_(asset_ids)))}
        if asset_ids
        else {}
    )
    sensors = (
        dict(db.execute(select(Sensor.id, Sensor.code).where(Sensor.id.in_(sensor_ids))).all())
        if sensor_ids
        else {}
    )
    codes = {i: v[1] for i, v in geo_service.area_links(db).by_id.items()}
    out = []
    for a in alarms:
        asset = assets[a.asset_id]
        out.append(
            AlarmRead(
                id=a.id,
                asset_code=asset.code,
                asset_name_zh=asset.name_zh,
                asset_kind=asset.kind,
                sensor_code=sensors.get(a.sensor_id) if a.sensor_id else None,
                metric=a.metric,
                level=a.level,
                level_name=kinds.level_name(a.level),
                peak_level=a.peak_level,
                state=a.state,
                exercise=a.exercise,
                subdistrict_code=codes.get(a.subdistrict_id) if a.subdistrict_id else None,
                grid_code=codes.get(a.grid_id) if a.grid_id else None,
                raised_at=a.raised_at,
                reading_at=a.reading_at,
                value=a.value,
                last_value=a.last_value,
                acknowledged_at=a.acknowledged_at,
                cleared_at=a.cleared_at,
                clear_reason=a.clear_reason,
                history=[AlarmEventRead.model_validate(e) for e in history(db, alarm_id=a.id)]
                if with_history
                else [],
            )
        )
    return out
