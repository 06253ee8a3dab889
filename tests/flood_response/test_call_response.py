"""The call-and-response end to end, with a controllable clock, on every backend: a warning
for one subdistrict starts call rounds for all its plans; the unanswered are repeated and
escalate at the configured minute; an answer stops escalation; a drill runs the same path
marked as an exercise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.flood_response.conftest import actor, outbox_for_calls

from watergrid.flood import calls as call_service
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.response_schemas import PlanVersionIn, RoleHolder, WarningIssue
from watergrid.flood.warning_models import (
    Call,
    CallEvent,
    CallKey,
    CallRound,
    HistoryIsAppendOnly,
    WarningEvent,
)
from watergrid.geo import service as geo_service
from watergrid.timers.clock import FrozenClock

GONGMING = "440311002"


def _issue(
    db: Session,
    clock: FrozenClock,
    level: str = "red",
    exercise: bool = False,
    code: str = GONGMING,
):
    return warning_service.issue(
        db,
        data=WarningIssue(subdistrict_code=code, level=level, exercise=exercise),
        actor=actor(),
        now=clock.now(),
    )


def _rounds(db: Session, warning_id: int, state: str | None = None) -> list[CallRound]:
    q = select(CallRound).where(
        CallRound.trigger_kind == "warning", CallRound.trigger_id == warning_id
    )
    if state:
        q = q.where(CallRound.state == state)
    return list(db.scalars(q.order_by(CallRound.id)))


def _calls(db: Session, round_ids: list[int]) -> list[Call]:
    return list(db.scalars(select(Call).where(Call.round_id.in_(round_ids)).order_by(Call.id)))


def _token(db: Session, call: Call, person_id: int | None = None) -> str:
    """The token of the newest message of a call to a person, read from the link in it,
    as the person's phone would."""
    msgs = [m for m in outbox_for_calls(db, [call.id]) if m.channel == "inapp"]
    if person_id is not None:
        msgs = [m for m in msgs if m.person_id == person_id]
    assert msgs, "no message for this call"
    return msgs[-1].link.rsplit("/a/", 1)[1]


def test_warning_starts_rounds_for_all_plans_of_the_subdistrict(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    sub = geo_service.get_or_404(db, code=GONGMING, kind="subdistrict")
    covering = plan_service.for_subdistrict(db, subdistrict_id=sub.id)
    kinds = {p.kind for p in covering}
    # The subdistrict, its communities and the assets inside it (a reservoir, rivers, points).
    assert {"subdistrict", "grid", "waterlogging_point", "reservoir", "river"} <= kinds

    w = _issue(db, clock)
    rounds = _rounds(db, w.id)
    assert {r.plan_id for r in rounds} == {p.id for p in covering}
    assert all(r.state == "running" and r.level == "red" and not r.exercise for r in rounds)
    calls = _calls(db, [r.id for r in rounds])
    assert calls and all(c.state == "queued" for c in calls)
    # Every called role of the red level is there, each person once per round.
    for r in rounds:
        mine = [c for c in calls if c.round_id == r.id]
        assert len({c.person_id for c in mine}) == len(mine)
        wanted = {
            p["person_id"]
            for role in ("administrative", "technical", "patrol", "transfer")
            for p in r.chain["roles"].get(role, [])
        }
        assert {c.person_id for c in mine} == wanted

    # One timer drives all rounds of the warning.
    assert sweep() >= 1
    calls = _calls(db, [r.id for r in rounds])
    assert all(
        c.state == "calling" and c.attempt == 1 and c.first_notified_at == clock.now()
        for c in calls
    )
    msgs = outbox_for_calls(db, [c.id for c in calls])
    inapp = [m for m in msgs if m.channel == "inapp"]
    # One first notification per call, to the person called, with an answer link.
    assert sorted(int(m.subject_id) for m in inapp) == sorted(c.id for c in calls)
    by_call = {int(m.subject_id): m for m in inapp}
    for c in calls:
        m = by_call[c.id]
        assert m.person_id == c.person_id
        assert "/a/" in (m.link or "") and "回复短信" in m.body
        assert m.topic == call_service.TOPIC
    assert db.scalar(
        select(func.count()).select_from(CallKey).where(CallKey.call_id.in_([c.id for c in calls]))
    ) == len(calls)


def test_unanswered_escalate_at_the_configured_minute_and_an_answer_stops_it(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    w = _issue(db, clock)
    sweep()
    rounds = _rounds(db, w.id)
    # Red: answer within 5 minutes, repeated every 2 (demo plan timing).
    assert {(r.answer_within_min, r.repeat_every_min) for r in rounds} == {(5, 2)}
    calls = _calls(db, [r.id for r in rounds])
    escalating = [c for c in calls if len(c.path) > 1]
    answerer, silent = escalating[0], escalating[1]

    # The first person answers through the link in their message, one minute in.
    clock.advance(minutes=1)
    res = call_service.answer_with_token(
        db, token=_token(db, answerer), via="link", now=clock.now()
    )
    assert res.state == "answered" and not res.late and not res.already

    clock.advance(seconds=59)  # 1:59 — nothing is due yet
    sweep()
    db.refresh(silent)
    assert (silent.step, silent.attempt) == (0, 1)

    clock.advance(seconds=1)  # 2:00 — the first repeat
    sweep()
    db.refresh(silent)
    assert (silent.step, silent.attempt) == (0, 2)
    repeats = [m for m in outbox_for_calls(db, [silent.id]) if m.channel == "inapp"]
    assert len(repeats) == 2 and "第2次" in repeats[-1].subject

    clock.advance(minutes=2, seconds=59)  # 4:59 — repeated at 4:00, not escalated yet
    sweep()
    db.refresh(silent)
    assert (silent.step, silent.attempt) == (0, 3)

    clock.advance(seconds=1)  # 5:00 — escalated to the next person up
    sweep()
    db.refresh(silent)
    db.refresh(answerer)
    assert silent.step == 1 and silent.state == "calling" and silent.late
    up = silent.path[1]["person_id"]
    to_up = [
        m for m in outbox_for_calls(db, [silent.id]) if m.channel == "inapp" and m.person_id == up
    ]
    assert len(to_up) == 1 and "未应答" in to_up[0].subject
    # The answered call was left alone: no repeat, no escalation.
    assert answerer.state == "answered" and answerer.step == 0
    assert len([m for m in outbox_for_calls(db, [answerer.id]) if m.channel == "inapp"]) == 1
    steps = [
        (e.action, e.step)
        for e in db.scalars(
            select(CallEvent).where(CallEvent.call_id == silent.id).order_by(CallEvent.id)
        )
    ]
    assert steps == [("notified", 0), ("repeated", 0), ("repeated", 0), ("escalated", 1)]

    # Every escalating call escalated at 5:00, none before.
    for c in _calls(db, [r.id for r in rounds]):
        if c.state == "calling" and len(c.path) > 1:
            assert c.step == 1

    # The superior answers for the silent person: escalation stops, counted as not by self.
    res = call_service.answer_with_token(
        db, token=_token(db, silent, up), via="link", now=clock.now()
    )
    db.refresh(silent)
    assert silent.state == "answered" and silent.answered_by_person_id == up and res.late
    clock.advance(minutes=30)
    sweep()
    db.refresh(silent)
    assert silent.step == 1
    assert not [
        m
        for m in outbox_for_calls(db, [silent.id])
        if m.created_at > clock.now() - timedelta(minutes=29)
    ]


def test_calls_run_up_the_whole_chain_then_stop(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    w = _issue(db, clock, level="yellow", code="440311001")
    sweep()
    rounds = _rounds(db, w.id)
    assert {r.answer_within_min for r in rounds} == {15}
    call = max(_calls(db, [r.id for r in rounds]), key=lambda c: len(c.path))
    for _ in range(len(call.path)):
        clock.advance(minutes=15)
        sweep()
    db.refresh(call)
    assert call.state == "unanswered" and call.next_due_at is None
    actions = [e.action for e in db.scalars(select(CallEvent).where(CallEvent.call_id == call.id))]
    assert actions.count("escalated") == len(call.path) - 1 and actions[-1] == "unanswered"
    # A late answer is still taken, and marked late.
    res = call_service.answer_with_token(
        db, token=_token(db, call, call.person_id), via="link", now=clock.now()
    )
    assert res.state == "answered" and res.late


def test_round_completes_when_everyone_answered(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    w = _issue(db, clock, level="orange", code="440311004")
    sweep()
    rnd = _rounds(db, w.id)[0]
    clock.advance(minutes=3)
    for c in _calls(db, [rnd.id]):
        call_service.answer_with_token(db, token=_token(db, c), via="link", now=clock.now())
    db.refresh(rnd)
    assert rnd.state == "complete"
    clock.advance(minutes=30)
    sweep()
    assert all(c.state == "answered" and c.step == 0 for c in _calls(db, [rnd.id]))
    read = call_service.round_reads(db, [rnd], now=clock.now(), with_calls=True)[0]
    assert read.answered == read.total and read.late == 0
    assert all(c.seconds_to_answer == 180 for c in read.calls)


def test_drill_runs_the_same_path_marked_exercise(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    real = _issue(db, clock, level="yellow")
    drill = _issue(db, clock, level="red", exercise=True)  # beside the real one, untouched
    assert drill.exercise and drill.number != real.number
    sweep()
    rounds = _rounds(db, drill.id)
    assert rounds and all(r.exercise for r in rounds)
    calls = _calls(db, [r.id for r in rounds])
    assert all(c.exercise and c.state == "calling" for c in calls)
    msgs = [m for m in outbox_for_calls(db, [c.id for c in calls]) if m.channel == "inapp"]
    assert msgs and all(m.subject.startswith("【演练】") for m in msgs)
    # The real warning's rounds are not superseded by the drill.
    assert all(r.state == "running" for r in _rounds(db, real.id))
    caps = list(db.scalars(select(WarningEvent).where(WarningEvent.warning_id == drill.id)))
    assert caps and all("<status>Exercise</status>" in e.cap_xml and e.exercise for e in caps)
    clock.advance(minutes=5)
    sweep()
    assert any(c.step == 1 for c in _calls(db, [r.id for r in rounds]))
    # KPIs keep drills apart.
    real_kpi = call_service.kpis(
        db, start=clock.now() - timedelta(hours=1), end=clock.now() + timedelta(hours=1)
    )
    drill_kpi = call_service.kpis(
        db,
        start=clock.now() - timedelta(hours=1),
        end=clock.now() + timedelta(hours=1),
        exercise=True,
    )
    assert drill_kpi.total.calls == len(calls)
    assert real_kpi.total.calls == len(_calls(db, [r.id for r in _rounds(db, real.id)]))


def test_upgrade_supersedes_lift_stands_down(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    w = _issue(db, clock, level="yellow", code="440311003")
    sweep()
    yellow = _rounds(db, w.id)
    clock.advance(minutes=3)
    warning_service.change_level(
        db, warning_id=w.id, level="red", actor=actor(), reason="雨势加大", now=clock.now()
    )
    rounds = _rounds(db, w.id)
    assert all(r.state == "superseded" for r in rounds if r.id in {y.id for y in yellow})
    red = [r for r in rounds if r.level == "red"]
    assert {r.plan_id for r in red} == {r.plan_id for r in yellow}
    sweep()
    # Downgrading starts nothing new.
    clock.advance(minutes=1)
    warning_service.change_level(
        db, warning_id=w.id, level="orange", actor=actor(), reason="", now=clock.now()
    )
    assert len(_rounds(db, w.id)) == len(rounds)
    clock.advance(minutes=1)
    warning_service.lift(db, warning_id=w.id, actor=actor(), reason="降雨减弱", now=clock.now())
    assert all(r.state != "running" for r in _rounds(db, w.id))
    calls = _calls(db, [r.id for r in red])
    assert all(c.state == "stood_down" for c in calls)
    clock.advance(minutes=20)
    before = len(outbox_for_calls(db))
    sweep()
    assert len(outbox_for_calls(db)) == before
    hist = warning_service.events(db, warning_id=w.id)
    assert [(e.action, e.cap_msg_type) for e in hist] == [
        ("issued", "Alert"),
        ("upgraded", "Update"),
        ("downgraded", "Update"),
        ("lifted", "Cancel"),
    ]
    assert hist[-1].from_level == "orange" and hist[-1].to_state == "lifted"


def test_running_round_keeps_its_snapshot_when_the_plan_changes(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    plan = plan_service.get_or_404(db, code="YA-SUB-440311005")
    w = _issue(db, clock, level="red", code="440311005")
    sweep()
    rnd = next(r for r in _rounds(db, w.id) if r.plan_id == plan.id)
    before = [c.path for c in _calls(db, [rnd.id])]
    # A new version with someone else as the only escalation contact and other timing.
    cur = plan_service.to_read(db, plan=plan, full_contacts=True, today=clock.now().date())
    roles = [
        RoleHolder(role=r, person_code=p.code)
        for r, ps in cur.current.roles.items()
        if r != "escalation"
        for p in ps
    ]
    roles.append(RoleHolder(role="escalation", person_code="P0001"))
    body = cur.current.body.model_copy(deep=True)
    body.levels["red"].answer_within_min = 60
    body.levels["red"].repeat_every_min = 30
    plan_service.add_version(
        db,
        plan=plan,
        data=PlanVersionIn(body=body, roles=roles, review_by=cur.current.review_by),
        actor_user_id=None,
        actor_name="t",
        now=clock.now(),
    )
    db.refresh(rnd)
    assert rnd.answer_within_min == 5 and [c.path for c in _calls(db, [rnd.id])] == before
    clock.advance(minutes=5)
    sweep()
    assert any(c.step == 1 for c in _calls(db, [rnd.id]))


def test_history_rows_are_append_only(
    db: Session, clock: FrozenClock, sweep: Callable[[], int]
) -> None:
    w = _issue(db, clock, level="yellow", code="440311006")
    sweep()
    ev = db.scalar(select(WarningEvent).where(WarningEvent.warning_id == w.id))
    assert ev is not None
    ev.reason = "changed"
    with pytest.raises(HistoryIsAppendOnly):
        db.flush()
    db.rollback()
    from sqlalchemy import update

    with pytest.raises(HistoryIsAppendOnly):
        db.execute(update(CallEvent).values(reason="x"))
