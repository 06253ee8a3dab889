"""Plans (coverage of the demo, versions, the limits that keep them to one page), warning
suggestions from observed rain, alarms starting rounds and crews, pump-crew dispatch, and the
service cards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.flood_response.conftest import actor

from watergrid.errors import AppError
from watergrid.flood import alarms as alarm_service
from watergrid.flood import assets as asset_service
from watergrid.flood import cards as card_service
from watergrid.flood import dispatch
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.ingest import ingest
from watergrid.flood.parse import RawReading
from watergrid.flood.response_schemas import (
    LevelBlock,
    PlanBody,
    PlanCreate,
    PlanVersionIn,
    RoleHolder,
    ServiceCardUpdate,
)
from watergrid.flood.state import IngestState
from watergrid.flood.warning_models import CallRound, CrewTask, CrewTaskEvent, WarningCriterion
from watergrid.geo import service as geo_service
from watergrid.timers.clock import FrozenClock


def test_every_reservoir_river_point_subdistrict_and_grid_has_a_plan(db: Session) -> None:
    plans = plan_service.get_all(db)
    by_asset = {p.asset_id for p in plans if p.asset_id}
    by_area = {p.area_id for p in plans if p.area_id}
    for kind in ("reservoir", "river", "waterlogging_point"):
        for a in asset_service.get_all(db, kind=kind):
            assert a.id in by_asset, a.code
    for kind in ("subdistrict", "grid"):
        for a in geo_service.get_all(db, kind=kind):
            assert a.id in by_area, a.code
    today = dt.date(2025, 6, 1)
    for s in plan_service.summaries(db, plans):
        assert s.review_by > today and s.subdistrict_codes
    read = plan_service.to_read(
        db,
        plan=plan_service.get_or_404(db, code="YA-SUB-440311002"),
        full_contacts=False,
        today=today,
    )
    assert all("*" in p.mobile for ps in read.current.roles.values() for p in ps)
    # The main stem of 茅洲河 answers to warnings in every subdistrict it runs through.
    mzh = plan_service.summaries(db, [plan_service.get_or_404(db, code="YA-RIV-MZH")])[0]
    assert set(mzh.subdistrict_codes) == {"440311002", "440311005", "440311006"}


def _body() -> PlanBody:
    return PlanBody(
        levels={
            "red": LevelBlock(
                trigger_zh="测试", actions_zh=["行动"], answer_within_min=5, repeat_every_min=2
            )
        }
    )


def test_plan_validation(db: Session, clock: FrozenClock) -> None:
    roles = [
        RoleHolder(role=r, person_code="P0001")
        for r in ("administrative", "technical", "patrol", "transfer")
    ]
    with pytest.raises(ValidationError):  # a role left empty
        PlanVersionIn(body=_body(), roles=roles[:3], review_by=dt.date(2026, 1, 1))
    with pytest.raises(ValidationError):  # more people in a role than a page holds
        PlanVersionIn(
            body=_body(),
            review_by=dt.date(2026, 1, 1),
            roles=roles + [RoleHolder(role="patrol", person_code=f"P000{i}") for i in range(2, 6)],
        )
    with pytest.raises(ValidationError):  # an action too long for the sheet
        LevelBlock(trigger_zh="x", actions_zh=["很" * 49], answer_within_min=5, repeat_every_min=2)
    with pytest.raises(ValidationError):  # repeats slower than the answer time
        LevelBlock(trigger_zh="x", actions_zh=["a"], answer_within_min=5, repeat_every_min=6)
    data = PlanCreate(
        code="T-1",
        kind="grid",
        target_code="W02",
        name_zh="测试预案",
        body=_body(),
        roles=roles[:3] + [RoleHolder(role="transfer", person_code="NOPE")],
        review_by=dt.date(2026, 1, 1),
    )
    with pytest.raises(AppError) as e:
        plan_service.create(db, data=data, actor_user_id=None, actor_name="t", now=clock.now())
    assert e.value.status == 422
    data = data.model_copy(update={"roles": roles, "target_code": "440311001"})
    with pytest.raises(AppError):  # a grid plan must target a grid
        plan_service.create(db, data=data, actor_user_id=None, actor_name="t", now=clock.now())
    data = data.model_copy(
        update={"target_code": "W02", "body": _body().model_copy(update={"shelters": ["GMSK"]})}
    )
    with pytest.raises(AppError):  # a reservoir is no shelter
        plan_service.create(db, data=data, actor_user_id=None, actor_name="t", now=clock.now())
    plan = plan_service.create(
        db,
        data=data.model_copy(update={"body": _body()}),
        actor_user_id=None,
        actor_name="t",
        now=clock.now(),
    )
    assert plan.current_version == 1
    plan_service.add_version(
        db,
        plan=plan,
        data=PlanVersionIn(body=_body(), roles=roles, review_by=dt.date(2025, 5, 1)),
        actor_user_id=None,
        actor_name="t",
        now=clock.now(),
    )
    assert plan.current_version == 2
    assert plan in plan_service.review_overdue(db, today=dt.date(2025, 6, 1))
    v1 = plan_service.version_row(db, plan=plan, number=1)
    assert v1.review_by == dt.date(2026, 1, 1)


def _rain(
    db: Session,
    sensor_code: str,
    start: dt.datetime,
    mm_per_5min: float,
    steps: int,
    now: dt.datetime,
) -> None:
    readings = [
        RawReading(sensor_code, start + dt.timedelta(minutes=5 * i), mm_per_5min, None, None, {})
        for i in range(1, steps + 1)
    ]
    ingest(db, readings=readings, source="test", state=IngestState(), now=now)


def test_rain_crossing_the_criteria_suggests_a_signal(db: Session, clock: FrozenClock) -> None:
    crit = {(c.scheme, c.level): c for c in warning_service.criteria(db)}
    sz = [c for c in crit.values() if c.active]
    assert {(c.level, c.window_h, c.threshold_mm) for c in sz} == {
        ("yellow", 6, 50.0),
        ("orange", 3, 50.0),
        ("red", 3, 100.0),
    }
    assert all(c.scheme == "Shenzhen" for c in sz)
    assert not crit[("CMA national", "blue")].active  # kept for reference
    now = clock.now() + dt.timedelta(hours=3)
    # 60 mm in 3 h at one gauge of 新湖街道: orange (50 mm / 3 h) on the wettest gauge.
    _rain(db, "RG-XH-01", clock.now(), 60 / 36, 36, now)
    out = warning_service.check_rain(db, now=now)
    sub = geo_service.get_or_404(db, code="440311003")
    mine = [s for s in out if s.subdistrict_id == sub.id]
    assert (
        len(mine) == 1
        and mine[0].level == "orange"
        and mine[0].observed_mm == pytest.approx(60, abs=0.5)
    )
    assert warning_service.check_rain(db, now=now)[0].id == mine[0].id  # refreshed, not repeated
    w = warning_service.accept_suggestion(
        db, suggestion_id=mine[0].id, actor=actor(), reason="", now=now
    )
    assert w.level == "orange" and w.suggestion_id == mine[0].id
    assert (
        "<certainty>Observed</certainty>" in warning_service.events(db, warning_id=w.id)[0].cap_xml
    )
    # With an orange signal on, the same rain suggests nothing more.
    assert not [s for s in warning_service.check_rain(db, now=now) if s.subdistrict_id == sub.id]
    # Dismissed suggestions stay quiet for the criterion's window.
    _rain(db, "RG-FH-01", clock.now(), 60 / 36, 36, now)
    fh = geo_service.get_or_404(db, code="440311004")
    s = next(s for s in warning_service.check_rain(db, now=now) if s.subdistrict_id == fh.id)
    with pytest.raises(AppError):
        warning_service.dismiss_suggestion(
            db, suggestion_id=s.id, actor=actor(), reason=" ", now=now
        )
    warning_service.dismiss_suggestion(
        db, suggestion_id=s.id, actor=actor(), reason="局地降雨", now=now
    )
    assert not [x for x in warning_service.check_rain(db, now=now) if x.subdistrict_id == fh.id]


def test_ponding_alarm_calls_the_point_plan_and_sends_the_nearest_crew(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    point = asset_service.get_or_404(db, code="WP-GM-1")
    alarm = alarm_service.raise_manual(
        db,
        asset_id=point.id,
        metric="ponding_depth",
        level=3,
        user_id=None,  # type: ignore[arg-type]
        reason="巡查发现积水",
        now=clock.now(),
    )
    rounds = list(
        db.scalars(
            select(CallRound).where(
                CallRound.trigger_kind == "alarm", CallRound.trigger_id == alarm.id
            )
        )
    )
    assert [r.chain["plan"]["code"] for r in rounds] == ["YA-PT-WP-GM-1"] and rounds[
        0
    ].level == "orange"
    task = dispatch.open_task(db, point_asset_id=point.id)
    assert task is not None and task.state == "assigned" and task.alarm_id == alarm.id
    crews = dispatch.available_crews(db) + [db.get(asset_service.FloodAsset, task.crew_asset_id)]

    def score(c: asset_service.FloodAsset) -> float:
        return plan_service.distance_m(point.lon, point.lat, c.lon, c.lat) * (
            1.0 if c.kind == "pump_truck" else 1.2
        )

    chosen = db.get(asset_service.FloodAsset, task.crew_asset_id)
    assert score(chosen) == pytest.approx(min(score(c) for c in crews))
    assert task.distance_m == pytest.approx(
        plan_service.distance_m(point.lon, point.lat, chosen.lon, chosen.lat), abs=0.1
    )
    sweep()
    # The crew's contact heard of it through the outbox.
    from watergrid.notify.models import OutboxMessage

    assert db.scalar(
        select(OutboxMessage).where(
            OutboxMessage.subject_type == "flood_crew_task",
            OutboxMessage.subject_id == str(task.id),
        )
    )
    # Escalated alarm: a new round at the higher level supersedes the first.
    alarm_service.clear(
        db,
        alarm_id=alarm.id,
        user_id=None,
        now=clock.now() + dt.timedelta(minutes=30),
        reason="退水",
    )  # type: ignore[arg-type]
    db.refresh(rounds[0])
    assert rounds[0].state == "closed"


def test_dispatch_lifecycle(db: Session, clock: FrozenClock) -> None:
    now = clock.now()
    points = asset_service.get_all(db, kind="waterlogging_point")
    crews = dispatch.available_crews(db)
    tasks = []
    for p in points:
        tasks.append(
            dispatch.open_for_point(
                db,
                point=p,
                source="manual",
                alarm_id=None,
                exercise=False,
                actor_user_id=None,
                actor_name="t",
                reason="",
                now=now,
            )
        )
    assigned = [t for t in tasks if t.state == "assigned"]
    waiting = [t for t in tasks if t.state == "waiting"]
    assert len(assigned) == min(len(points), len(crews)) and len(
        {t.crew_asset_id for t in assigned}
    ) == len(assigned)
    assert len(waiting) == max(0, len(points) - len(crews))
    t = assigned[0]
    with pytest.raises(AppError):  # never backwards
        dispatch.set_status(
            db,
            task_id=t.id,
            state="assigned",
            actor_user_id=None,
            actor_name="t",
            reason="",
            now=now,
        )
    for state in ("en_route", "on_site", "pumping"):
        dispatch.set_status(
            db, task_id=t.id, state=state, actor_user_id=None, actor_name="t", reason="", now=now
        )
    with pytest.raises(AppError):
        dispatch.set_status(
            db,
            task_id=t.id,
            state="en_route",
            actor_user_id=None,
            actor_name="t",
            reason="",
            now=now,
        )
    crew = t.crew_asset_id
    dispatch.set_status(
        db, task_id=t.id, state="done", actor_user_id=None, actor_name="t", reason="", now=now
    )
    if waiting:
        db.refresh(waiting[0])
        assert waiting[0].state == "assigned" and waiting[0].crew_asset_id == crew
    # Reassign to the nearest other free crew, or to a named one; a busy one is refused.
    other = assigned[1]
    busy = assigned[2].crew_asset_id
    busy_code = db.get(asset_service.FloodAsset, busy).code
    with pytest.raises(AppError):
        dispatch.reassign(
            db,
            task_id=other.id,
            crew_code=busy_code,
            actor_user_id=None,
            actor_name="t",
            reason="",
            now=now,
        )
    dispatch.set_status(
        db,
        task_id=assigned[3].id,
        state="cancelled",
        actor_user_id=None,
        actor_name="t",
        reason="误报",
        now=now,
    )
    free = dispatch.available_crews(db)
    if free:
        before = other.crew_asset_id
        dispatch.reassign(
            db,
            task_id=other.id,
            crew_code=None,
            actor_user_id=None,
            actor_name="t",
            reason="车辆故障",
            now=now,
        )
        assert other.crew_asset_id not in (None, before) and other.state == "assigned"
    history = [(e.action, e.from_state, e.to_state) for e in dispatch.task_events(db, task_id=t.id)]
    assert history[0] == ("opened", None, "waiting") and history[-1] == ("done", "pumping", "done")
    rows = dispatch.to_read(db, dispatch.list_tasks(db, open_only=False))
    assert {r.state for r in rows} >= {"done", "assigned"}
    assert db.scalar(select(CrewTaskEvent).where(CrewTaskEvent.task_id == t.id)) is not None


def test_public_waterlogging_orders_get_a_crew(db: Session, clock: FrozenClock) -> None:
    from watergrid.db import utcnow
    from watergrid.workorders import service as wo_service
    from watergrid.workorders.schemas import OrderCreate

    point = asset_service.get_or_404(db, code="WP-MT-1")
    far = asset_service.get_or_404(db, code="WP-GOM-2")
    data = OrderCreate(
        category_code="disaster.waterlogging",
        description="路口积水没过脚踝",
        lon=far.lon,
        lat=far.lat,
        attributes={"depth": "10to30"},
    )
    res = wo_service.create_order(
        db, data=data, source="public_web", actor=None, idempotency_key=None, now=utcnow()
    ).receipt
    created = dispatch.sync_work_orders(db, now=utcnow())
    mine = [t for t in created if t.work_order_id == res.id]
    assert (
        len(mine) == 1
        and mine[0].source == "work_order"
        and mine[0].state in ("assigned", "waiting")
    )
    assert dispatch.sync_work_orders(db, now=utcnow()) == []  # once only
    # A report right next to a point that already has a crew adds none.
    dispatch.open_for_point(
        db,
        point=point,
        source="manual",
        alarm_id=None,
        exercise=False,
        actor_user_id=None,
        actor_name="t",
        reason="",
        now=utcnow(),
    )
    assert db.scalar(select(CrewTask).where(CrewTask.point_asset_id == point.id)) is not None


def test_service_card(db: Session, clock: FrozenClock) -> None:
    grid = card_service.grid_or_404(db, "w01")
    printed = card_service.card(db, grid=grid, public=False)
    public = card_service.card(db, grid=grid, public=True)
    assert printed.contact_name and printed.contact_phone.isdigit() and "*" in public.contact_phone
    assert (
        len(printed.shelters) == 2
        and printed.shelters[0].distance_m <= printed.shelters[1].distance_m
    )
    assert [a[0] for a in printed.advice] == ["yellow", "orange", "red"]
    assert printed.public_url.endswith("/f/W01") and printed.hotline
    card_service.update(
        db,
        grid=grid,
        data=ServiceCardUpdate(
            hotline="0755-88888888", shelter_codes=["SH-03"], note_zh="低洼处注意"
        ),
        actor_name="t",
        now=clock.now(),
    )
    again = card_service.card(db, grid=grid, public=False)
    assert (
        again.hotline == "0755-88888888"
        and [s.code for s in again.shelters] == ["SH-03"]
        and again.note
    )
    with pytest.raises(AppError):
        card_service.update(
            db,
            grid=grid,
            data=ServiceCardUpdate(shelter_codes=["GMSK"]),
            actor_name="t",
            now=clock.now(),
        )
    w = warning_service.issue(
        db,
        data=warning_service.WarningIssue(subdistrict_code=again.subdistrict.code, level="red"),
        actor=actor(),
        now=clock.now(),
    )
    assert card_service.card(db, grid=grid, public=True).current_level == "red"
    assert w.level == "red"


def test_criteria_edits_are_checked(db: Session, clock: FrozenClock) -> None:
    from watergrid.flood.response_schemas import CriterionUpdate

    c = db.scalar(
        select(WarningCriterion).where(
            WarningCriterion.scheme == "Shenzhen", WarningCriterion.level == "red"
        )
    )
    with pytest.raises(AppError):
        warning_service.update_criterion(
            db, criterion_id=c.id, data=CriterionUpdate(window_h=2), actor=actor(), now=clock.now()
        )
    out = warning_service.update_criterion(
        db,
        criterion_id=c.id,
        data=CriterionUpdate(threshold_mm=90, basis="mean"),
        actor=actor(),
        now=clock.now(),
    )
    assert out.threshold_mm == 90 and out.basis == "mean" and out.updated_by == "测试值班员"


def test_demo_loader_adds_nothing_the_second_time(db: Session, clock: FrozenClock) -> None:
    from watergrid.flood.response_demo import load_flood_response_demo

    before = len(plan_service.get_all(db))
    out = load_flood_response_demo(db, now=clock.now())
    assert out == {"criteria": 0, "asset_plans": 0, "area_plans": 0, "service_cards": 0}
    assert len(plan_service.get_all(db)) == before
