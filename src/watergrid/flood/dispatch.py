"""Pump-crew dispatch: every active waterlogging point — one whose ponding alarm is up, or
one the public reported as a waterlogging work order — gets the nearest available pump
truck or team. The crew reports en route → on site → pumping → done; the duty officer may
reassign. A crew is available when active and on no open task; a task that finds none waits
and is served as soon as a crew comes free.

Distances are straight-line from the crew's recorded position (its base): the district is
small and the command map shows the real roads; routing belongs to the navigation apps the
crews already use. Functions take a Session and never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, not_found
from watergrid.flood import assets as asset_service
from watergrid.flood.models import FloodAsset
from watergrid.flood.plans import distance_m
from watergrid.flood.response_schemas import TASK_STATE_ZH, TaskRead, TaskState
from watergrid.flood.warning_models import CrewTask, CrewTaskEvent
from watergrid.geo import service as geo_service
from watergrid.notify import service as notify
from watergrid.org import service as org_service

CREW_KINDS = ("pump_truck", "team")
BUSY_STATES = ("assigned", "en_route", "on_site", "pumping")
OPEN_STATES = ("waiting", *BUSY_STATES)
# The order a crew reports in; a crew may skip ahead (arrive and start pumping at once)
# but never go back.
PROGRESS = ("assigned", "en_route", "on_site", "pumping", "done")
WATERLOGGING_CATEGORY = "disaster.waterlogging"
# A public report this close to a point that already has a crew adds no second crew.
SAME_PLACE_M = 150.0
TOPIC = "flood.dispatch"


def _event(
    db: Session,
    task: CrewTask,
    *,
    action: str,
    from_state: str | None,
    from_crew: int | None,
    actor_user_id: int | None,
    actor_name: str,
    reason: str,
    now: dt.datetime,
) -> None:
    db.add(
        CrewTaskEvent(
            task_id=task.id,
            at=now,
            action=action,
            from_state=from_state,
            to_state=task.state,
            from_crew_id=from_crew,
            to_crew_id=task.crew_asset_id,
            actor_user_id=actor_user_id,
            actor_name=actor_name,
            reason=reason,
        )
    )


def busy_crew_ids(db: Session) -> set[int]:
    return set(
        db.scalars(
            select(CrewTask.crew_asset_id).where(
                CrewTask.state.in_(BUSY_STATES), CrewTask.crew_asset_id.is_not(None)
            )
        )
    )


def available_crews(db: Session, *, exclude: Sequence[int] = ()) -> list[FloodAsset]:
    busy = busy_crew_ids(db) | set(exclude)
    return [
        a
        for kind in CREW_KINDS
        for a in asset_service.get_all(db, kind=kind, active_only=True)
        if a.id not in busy
    ]


def nearest_crew(
    db: Session, *, lon: float, lat: float, exclude: Sequence[int] = ()
) -> tuple[FloodAsset, float] | None:
    """The closest available crew; a pump truck wins a near tie with a team, since pumping
    is what a waterlogging point needs first."""
    best: tuple[float, FloodAsset] | None = None
    for crew in available_crews(db, exclude=exclude):
        d = distance_m(lon, lat, crew.lon, crew.lat)
        score = d * (1.0 if crew.kind == "pump_truck" else 1.2)
        if best is None or score < best[0]:
            best = (score, crew)
    if best is None:
        return None
    crew = best[1]
    return crew, distance_m(lon, lat, crew.lon, crew.lat)


def crew_contacts(db: Session, crew: FloodAsset) -> list[int]:
    """Who hears of a task: the crew's contact person (attrs.contact_person_code)."""
    code = (crew.attrs or {}).get("contact_person_code")
    person = org_service.get_person(db, code=str(code)) if code else None
    return [person.id] if person is not None and person.active else []


def _notify_crew(
    db: Session, task: CrewTask, crew: FloodAsset, *, now: dt.datetime, reassigned: bool
) -> None:
    people = crew_contacts(db, crew)
    if not people:
        return
    drill = "【演练】" if task.exercise else ""
    km = f"{(task.distance_m or 0) / 1000:.1f}"
    notify.enqueue(
        db,
        person_ids=people,
        topic=TOPIC,
        subject=f"{drill}{'改派' if reassigned else '派车'}：{task.label_zh}",
        body=(
            f"{crew.name_zh}请立即前往{task.label_zh}抽排积水（直线约{km}公里）。"
            f"出发、到场、开始抽排和完成时请在防汛调度页面报告。"
        ),
        link=f"/flood/dispatch#task-{task.id}",
        subject_type="flood_crew_task",
        subject_id=task.id,
        dedupe_key=f"flood-task-{task.id}-crew-{crew.id}-{task.updated_at.timestamp():.0f}",
        now=now,
    )


def _assign(
    db: Session,
    task: CrewTask,
    *,
    exclude: Sequence[int] = (),
    crew: FloodAsset | None = None,
    actor_user_id: int | None,
    actor_name: str,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Give the task a crew (the one named, else the nearest available); False when none."""
    if crew is None:
        found = nearest_crew(db, lon=task.lon, lat=task.lat, exclude=exclude)
        if found is None:
            return False
        crew, dist = found
    else:
        dist = distance_m(task.lon, task.lat, crew.lon, crew.lat)
    from_state, from_crew = task.state, task.crew_asset_id
    task.crew_asset_id, task.distance_m = crew.id, round(dist, 1)
    task.state, task.updated_at = "assigned", now
    db.flush()
    action = "reassigned" if from_crew is not None else "assigned"
    _event(
        db,
        task,
        action=action,
        from_state=from_state,
        from_crew=from_crew,
        actor_user_id=actor_user_id,
        actor_name=actor_name,
        reason=reason,
        now=now,
    )
    _notify_crew(db, task, crew, now=now, reassigned=from_crew is not None)
    return True


def open_task(db: Session, *, point_asset_id: int) -> CrewTask | None:
    return db.scalar(
        select(CrewTask).where(
            CrewTask.point_asset_id == point_asset_id, CrewTask.state.in_(OPEN_STATES)
        )
    )


def open_for_point(
    db: Session,
    *,
    point: FloodAsset,
    source: str,
    alarm_id: int | None,
    exercise: bool,
    actor_user_id: int | None,
    actor_name: str,
    reason: str,
    now: dt.datetime,
) -> CrewTask:
    """The point's open task, or a new one with the nearest available crew."""
    if point.kind != "waterlogging_point":
        raise AppError(
            422, "not_a_point", f"{point.code} is not a waterlogging point", "该设施不是内涝积水点"
        )
    current = open_task(db, point_asset_id=point.id)
    if current is not None:
        return current
    task = CrewTask(
        source=source,
        point_asset_id=point.id,
        alarm_id=alarm_id,
        label_zh=point.name_zh,
        lon=point.lon,
        lat=point.lat,
        subdistrict_id=point.subdistrict_id,
        state="waiting",
        exercise=exercise,
        created_at=now,
        updated_at=now,
    )
    db.add(task)
    db.flush()
    _event(
        db,
        task,
        action="opened",
        from_state=None,
        from_crew=None,
        actor_user_id=actor_user_id,
        actor_name=actor_name,
        reason=reason,
        now=now,
    )
    _assign(
        db,
        task,
        actor_user_id=actor_user_id,
        actor_name=actor_name or "系统",
        reason="就近派车",
        now=now,
    )
    return task


def _system_principal() -> Principal:
    # The dispatcher reads every waterlogging order in the district, as the desk does.
    return Principal(
        user_id=0, username="system", display_name="系统", roles=frozenset({"admin"}), district=True
    )


def sync_work_orders(db: Session, *, now: dt.datetime) -> list[CrewTask]:
    """Open tasks for public waterlogging reports still being handled, unless a crew is
    already at (or sent to) a task within SAME_PLACE_M."""
    from watergrid.workorders import service as wo_service
    from watergrid.workorders.lifecycle import DONE_STATES, FINAL_STATES
    from watergrid.workorders.schemas import PUBLIC_SOURCES, OrderFilter

    live = sorted(
        {"submitted", "accepted", "dispatched", "returned", "responded", "in_progress"}
        - FINAL_STATES
        - DONE_STATES
    )
    created: list[CrewTask] = []
    page = wo_service.list_orders(
        db,
        principal=_system_principal(),
        filters=OrderFilter(category_code=WATERLOGGING_CATEGORY, state=live),
        page_size=200,
        now=now,
    )
    if not page.items:
        return created
    known = set(
        db.scalars(select(CrewTask.work_order_id).where(CrewTask.work_order_id.is_not(None)))
    )
    open_tasks = list(db.scalars(select(CrewTask).where(CrewTask.state.in_(OPEN_STATES))))
    for order in page.items:
        if order.source not in PUBLIC_SOURCES or order.id in known:
            continue
        if any(distance_m(order.lon, order.lat, t.lon, t.lat) <= SAME_PLACE_M for t in open_tasks):
            continue
        label = f"群众报告积水：{order.address or order.number}"
        task = CrewTask(
            source="work_order",
            work_order_id=order.id,
            work_order_number=order.number,
            label_zh=label[:200],
            lon=order.lon,
            lat=order.lat,
            subdistrict_id=order.subdistrict.id if order.subdistrict else None,
            state="waiting",
            exercise=False,
            created_at=now,
            updated_at=now,
        )
        db.add(task)
        db.flush()
        _event(
            db,
            task,
            action="opened",
            from_state=None,
            from_crew=None,
            actor_user_id=None,
            actor_name="系统",
            reason=f"工单 {order.number}",
            now=now,
        )
        _assign(db, task, actor_user_id=None, actor_name="系统", reason="就近派车", now=now)
        open_tasks.append(task)
        created.append(task)
    return created


def get_or_404(db: Session, *, task_id: int) -> CrewTask:
    task = db.get(CrewTask, task_id)
    if task is None:
        raise not_found("crew task", "抢险任务", task_id)
    return task


def set_status(
    db: Session,
    *,
    task_id: int,
    state: str,
    actor_user_id: int | None,
    actor_name: str,
    reason: str,
    now: dt.datetime,
) -> CrewTask:
    task = get_or_404(db, task_id=task_id)
    if task.state in ("done", "cancelled"):
        raise AppError(409, "task_closed", f"Task {task.id} is {task.state}", "该任务已结束")
    if state == "cancelled":
        if not reason.strip():
            raise AppError(422, "reason_required", "Say why", "请填写取消原因")
    elif task.state == "waiting" or PROGRESS.index(state) <= PROGRESS.index(task.state):
        raise AppError(
            409,
            "task_state",
            f"Task {task.id} is {task.state}; cannot go to {state}",
            f"任务当前为“{TASK_STATE_ZH[task.state]}”，不能改为“{TASK_STATE_ZH[state]}”",
        )
    from_state = task.state
    task.state, task.updated_at = state, now
    if state in ("done", "cancelled"):
        task.done_at = now
    db.flush()
    _event(
        db,
        task,
        action=state,
        from_state=from_state,
        from_crew=task.crew_asset_id,
        actor_user_id=actor_user_id,
        actor_name=actor_name,
        reason=reason,
        now=now,
    )
    if state in ("done", "cancelled"):
        assign_waiting(db, now=now)
    return task


def reassign(
    db: Session,
    *,
    task_id: int,
    crew_code: str | None,
    actor_user_id: int | None,
    actor_name: str,
    reason: str,
    now: dt.datetime,
) -> CrewTask:
    task = get_or_404(db, task_id=task_id)
    if task.state in ("done", "cancelled"):
        raise AppError(409, "task_closed", f"Task {task.id} is {task.state}", "该任务已结束")
    crew = None
    if crew_code:
        crew = asset_service.get(db, code=crew_code)
        if crew is None or crew.kind not in CREW_KINDS or not crew.active:
            raise AppError(
                422, "bad_crew", f"No crew {crew_code}", f"未找到可用的泵车或队伍：{crew_code}"
            )
        if crew.id == task.crew_asset_id:
            raise AppError(409, "same_crew", "Already this crew's task", "已由该队伍承担")
        if crew.id in busy_crew_ids(db):
            raise AppError(
                409,
                "crew_busy",
                f"{crew_code} is on another task",
                f"{crew.name_zh}正在执行其他任务",
            )
    exclude = [task.crew_asset_id] if task.crew_asset_id else []
    freed = task.crew_asset_id
    ok = _assign(
        db,
        task,
        exclude=exclude,
        crew=crew,
        actor_user_id=actor_user_id,
        actor_name=actor_name,
        reason=reason or "改派",
        now=now,
    )
    if not ok:
        raise AppError(409, "no_crew", "No other crew available", "暂无其他可用的泵车或队伍")
    if freed is not None:
        assign_waiting(db, now=now)
    return task


def assign_waiting(db: Session, *, now: dt.datetime) -> int:
    """Serve waiting tasks, oldest first, with whatever crews are free."""
    n = 0
    for task in db.scalars(
        select(CrewTask)
        .where(CrewTask.state == "waiting")
        .order_by(CrewTask.created_at, CrewTask.id)
    ):
        if not _assign(
            db, task, actor_user_id=None, actor_name="系统", reason="有空闲队伍，补派", now=now
        ):
            break
        n += 1
    return n


def list_tasks(
    db: Session, *, open_only: bool = True, since: dt.datetime | None = None, limit: int = 200
) -> list[CrewTask]:
    q = select(CrewTask).order_by(CrewTask.created_at.desc(), CrewTask.id.desc()).limit(limit)
    if open_only:
        q = q.where(CrewTask.state.in_(OPEN_STATES))
    if since is not None:
        q = q.where((CrewTask.state.in_(OPEN_STATES)) | (CrewTask.updated_at >= since))
    return list(db.scalars(q))


def task_events(db: Session, *, task_id: int) -> list[CrewTaskEvent]:
    return list(
        db.scalars(
            select(CrewTaskEvent).where(CrewTaskEvent.task_id == task_id).order_by(CrewTaskEvent.id)
        )
    )


def to_read(db: Session, tasks: Sequence[CrewTask]) -> list[TaskRead]:
    ids = {t.crew_asset_id for t in tasks if t.crew_asset_id} | {
        t.point_asset_id for t in tasks if t.point_asset_id
    }
    assets = (
        {a.id: a for a in db.scalars(select(FloodAsset).where(FloodAsset.id.in_(ids)))}
        if ids
        else {}
    )
    codes = {i: v[1] for i, v in geo_service.area_links(db).by_id.items()}
    out = []
    for t in tasks:
        crew = assets.get(t.crew_asset_id) if t.crew_asset_id else None
        point = assets.get(t.point_asset_id) if t.point_asset_id else None
        out.append(
            TaskRead(
                id=t.id,
                source=t.source,
                label_zh=t.label_zh,
                point_code=point.code if point else None,
                work_order_number=t.work_order_number,
                lon=t.lon,
                lat=t.lat,
                subdistrict_code=codes.get(t.subdistrict_id) if t.subdistrict_id else None,
                crew_code=crew.code if crew else None,
                crew_name_zh=crew.name_zh if crew else None,
                crew_kind=crew.kind if crew else None,
                crew_lon=crew.lon if crew else None,
                crew_lat=crew.lat if crew else None,
                distance_m=t.distance_m,
                state=cast(TaskState, t.state),
                exercise=t.exercise,
                created_at=t.created_at,
                updated_at=t.updated_at,
            )
        )
    return out


def counts(db: Session) -> dict[str, int]:
    return {
        s: int(n)
        for s, n in db.execute(
            select(CrewTask.state, func.count())
            .where(CrewTask.state.in_(OPEN_STATES))
            .group_by(CrewTask.state)
        )
    }
