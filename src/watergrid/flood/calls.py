"""The call-and-response (叫应): when a warning, an alarm or a drill begins for a plan, a
call round starts; every responsible person is called and must answer within the level's
minutes; no answer → the call is repeated, then escalated to the next person up the chain;
every step is a row in flood_call_event.

How it runs. `start_round` copies the plan's chain (plans.chain_snapshot) into the round,
writes one queued call per person and arms the round's timer (timers, kind
"flood.round_tick", due at once). The tick handler sends the first notifications, repeats
and escalates what is due, and re-arms itself for the earliest next step; each call's next
step is a column (`flood_call.next_due_at`), so one timer per round serves any number of
calls and a restart loses nothing. Answers are conditional updates (state 'calling' →
'answered'), so an answer racing a tick either stops the step or arrives after it — never
both, never twice.

Every notification goes through the outbox (notify.enqueue) in the transaction of the step
that causes it. Functions take a Session and never commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, func, insert, select, update
from sqlalchemy.orm import Session

from watergrid.errors import AppError, forbidden, not_found
from watergrid.flood import plans as plan_service
from watergrid.flood.response_schemas import (
    CALL_STATE_ZH,
    LEVEL_RANK,
    LEVEL_ZH,
    ROLE_ZH,
    AnswerResult,
    CallEventRead,
    CallKpi,
    CallKpiReport,
    CallRead,
    RoundRead,
)
from watergrid.flood.warning_models import Call, CallEvent, CallKey, CallRound, Plan
from watergrid.notify import service as notify
from watergrid.org.models import Person
from watergrid.settings import get_settings
from watergrid.timers import service as timers

log = logging.getLogger("watergrid.flood.calls")

TOPIC = "flood.call"
SUBJECT_CALL = "flood_call"
SUBJECT_ROUND = "flood_calls"
KIND_TICK = "flood.round_tick"
OPEN_CALL_STATES = ("queued", "calling")
ANSWERABLE_STATES = ("calling", "unanswered")
SMS_CODE_RE = re.compile(r"(?<!\d)(\d{6})(?!\d)")

KPI_DEFINITIONS = {
    "calls": "Calls notified in rounds started in the period, less those stood down (warning "
    "lifted, round superseded) before their answer time ran out.",
    "answer_rate": "Share of those calls answered by the called person themselves, at any time.",
    "on_time_rate": "Share answered by the called person within the level's minutes "
    "(answer_within_min) from the first notification.",
    "seconds_to_answer": "From the first notification to the person's own answer; answers by a "
    "superior after escalation are counted apart and not timed.",
}


@dataclass(frozen=True)
class Trigger:
    """What starts a round: a warning, an alarm or a drill (`id` is the warning's or the
    alarm's; a plan drill has none)."""

    kind: str
    id: int | None
    label: str
    exercise: bool


# -- starting and ending rounds --------------------------------------------------------------


def _round_event(
    db: Session,
    rnd: CallRound,
    *,
    action: str,
    from_state: str | None,
    to_state: str,
    reason: str,
    now: dt.datetime,
    actor_user_id: int | None = None,
) -> None:
    db.add(
        CallEvent(
            round_id=rnd.id,
            call_id=None,
            at=now,
            action=action,
            from_state=from_state,
            to_state=to_state,
            actor_user_id=actor_user_id,
            reason=reason,
        )
    )


def _lock_round(db: Session, round_id: int) -> CallRound | None:
    # On PostgreSQL the tick, an end and a completion of one round queue on its row, so a
    # call is never notified by a tick while the round is being stood down.
    q = select(CallRound).where(CallRound.id == round_id).execution_options(populate_existing=True)
    if db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return db.scalar(q)


def timer_subject(rnd: CallRound) -> str:
    """Rounds started by one warning or alarm share one timer (one due item drives all
    their calls, which keeps a district-wide warning to a handful of items); a drill's
    round has its own."""
    if rnd.trigger_id is not None:
        return f"{rnd.trigger_kind}:{rnd.trigger_id}"
    return f"round:{rnd.id}"


def _rounds_of_subject(db: Session, subject: str, *, lock: bool) -> list[CallRound]:
    kind, _, ref = subject.partition(":")
    q = select(CallRound).where(CallRound.state == "running").order_by(CallRound.id)
    if kind == "round":
        q = q.where(CallRound.id == int(ref))
    else:
        q = q.where(CallRound.trigger_kind == kind, CallRound.trigger_id == int(ref))
    q = q.execution_options(populate_existing=True)
    if lock and db.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return list(db.scalars(q))


def _rearm(db: Session, subject: str, *, now: dt.datetime) -> None:
    """Arm the subject's timer for the earliest pending step of its running rounds, or
    cancel it when nothing is pending."""
    ids = [r.id for r in _rounds_of_subject(db, subject, lock=False)]
    queued, earliest = 0, None
    if ids:
        queued, earliest = db.execute(
            select(
                func.count().filter(Call.state == "queued"),
                func.min(Call.next_due_at).filter(Call.state == "calling"),
            ).where(Call.round_id.in_(ids), Call.state.in_(OPEN_CALL_STATES))
        ).one()
    if queued:
        earliest = now
    if earliest is None:
        timers.cancel(db, kind=KIND_TICK, subject_type=SUBJECT_ROUND, subject_id=subject, now=now)
        return
    timers.schedule(
        db, kind=KIND_TICK, subject_type=SUBJECT_ROUND, subject_id=subject, due_at=earliest, now=now
    )


def running_rounds(
    db: Session, *, plan_ids: Sequence[int], exercise: bool
) -> dict[int, list[CallRound]]:
    out: dict[int, list[CallRound]] = {pid: [] for pid in plan_ids}
    if not plan_ids:
        return out
    for r in db.scalars(
        select(CallRound).where(
            CallRound.plan_id.in_(list(plan_ids)),
            CallRound.state == "running",
            CallRound.exercise.is_(exercise),
        )
    ):
        out[r.plan_id].append(r)
    return out


def start_rounds(
    db: Session,
    *,
    plans: Sequence[Plan],
    level: str,
    trigger: Trigger,
    started_by_user_id: int | None,
    now: dt.datetime,
) -> list[CallRound]:
    """Start calling the people of each plan at `level` (see start_round). Written in a
    handful of statements whatever the number of plans — a district-wide warning starts a
    round for every plan in the district — and the trigger's timer is armed once."""
    snaps = plan_service.chain_snapshots(db, plans=plans, level=level)
    running = running_rounds(db, plan_ids=[p.id for p in plans], exercise=trigger.exercise)
    todo: list[tuple[Plan, Any, dict[str, Any], list[tuple[str, int, dict[str, Any]]]]] = []
    for plan in plans:
        snap = snaps.get(plan.id)
        if snap is None:
            continue
        version, chain = snap
        if any(LEVEL_RANK[r.level] >= LEVEL_RANK[level] for r in running[plan.id]):
            continue
        people = plan_service.targets(chain)
        if not people:
            log.warning("plan %s has nobody to call at %s", plan.code, level)
            continue
        for r in running[plan.id]:
            end_round(
                db,
                round_id=r.id,
                state="superseded",
                reason=f"升级为{LEVEL_ZH[level]}（{trigger.label}）",
                now=now,
            )
        todo.append((plan, version, chain, people))
    if not todo:
        return []
    round_ids = [
        int(i)
        for i in db.execute(
            insert(CallRound).returning(CallRound.id, sort_by_parameter_order=True),
            [
                {
                    "plan_id": plan.id,
                    "plan_version_id": version.id,
                    "trigger_kind": trigger.kind,
                    "trigger_id": trigger.id,
                    "trigger_label": trigger.label[:120],
                    "level": level,
                    "exercise": trigger.exercise,
                    "state": "running",
                    "started_at": now,
                    "started_by_user_id": started_by_user_id,
                    "ended_at": None,
                    "end_reason": "",
                    "answer_within_min": chain["answer_within_min"],
                    "repeat_every_min": chain["repeat_every_min"],
                    "chain": chain,
                }
                for plan, version, chain, _ in todo
            ],
        ).scalars()
    ]
    db.execute(
        insert(Call),
        [
            {
                "round_id": rid,
                "person_id": person["person_id"],
                "role": role,
                "position": pos,
                "name": person["name"],
                "path": plan_service.escalation_path(chain, role=role, position=pos),
                "exercise": trigger.exercise,
                "state": "queued",
                "step": 0,
                "attempt": 0,
            }
            for rid, (_, _, chain, people) in zip(round_ids, todo, strict=True)
            for role, pos, person in people
        ],
    )
    db.execute(
        insert(CallEvent),
        [
            {
                "round_id": rid,
                "call_id": None,
                "at": now,
                "action": "started",
                "from_state": None,
                "to_state": "running",
                "actor_user_id": started_by_user_id,
                "reason": f"{trigger.label}：{plan.name_zh} {LEVEL_ZH[level]}，"
                f"{len(people)} 人待叫应",
            }
            for rid, (plan, _, _, people) in zip(round_ids, todo, strict=True)
        ],
    )
    started = list(
        db.scalars(select(CallRound).where(CallRound.id.in_(round_ids)).order_by(CallRound.id))
    )
    for subject in dict.fromkeys(timer_subject(r) for r in started):
        timers.schedule(
            db,
            kind=KIND_TICK,
            subject_type=SUBJECT_ROUND,
            subject_id=subject,
            due_at=now,
            now=now,
        )
    return started


def start_round(
    db: Session,
    *,
    plan: Plan,
    level: str,
    trigger: Trigger,
    started_by_user_id: int | None,
    now: dt.datetime,
) -> CallRound | None:
    """Start calling the plan's people at `level`. None when the plan has nothing for the
    level, or is already being called at this level or above (a second warning over the
    same river does not call its people twice); a running round at a lower level is
    superseded: people must answer the new level."""
    started = start_rounds(
        db,
        plans=[plan],
        level=level,
        trigger=trigger,
        started_by_user_id=started_by_user_id,
        now=now,
    )
    return started[0] if started else None


def end_round(
    db: Session,
    *,
    round_id: int,
    state: str,
    reason: str,
    now: dt.datetime,
    actor_user_id: int | None = None,
) -> bool:
    """Close (trigger over) or supersede (a higher level took over) a running round: open
    calls are stood down and the timer re-armed for what is left. False when it was not
    running."""
    rnd = _lock_round(db, round_id)
    if rnd is None or rnd.state != "running":
        return False
    rnd.state, rnd.ended_at, rnd.end_reason = state, now, reason[:200]
    open_calls = db.execute(
        select(Call.id, Call.state, Call.step, Call.attempt).where(
            Call.round_id == round_id, Call.state.in_(OPEN_CALL_STATES)
        )
    ).all()
    if open_calls:
        db.execute(
            update(Call)
            .where(Call.id.in_([c.id for c in open_calls]), Call.state.in_(OPEN_CALL_STATES))
            .values(state="stood_down", next_due_at=None)
            .execution_options(synchronize_session=False)
        )
        db.execute(
            insert(CallEvent),
            [
                {
                    "round_id": round_id,
                    "call_id": c.id,
                    "at": now,
                    "action": "stood_down",
                    "from_state": c.state,
                    "to_state": "stood_down",
                    "step": c.step,
                    "attempt": c.attempt,
                    "actor_user_id": actor_user_id,
                    "reason": reason,
                }
                for c in open_calls
            ],
        )
    _round_event(
        db,
        rnd,
        action=state,
        from_state="running",
        to_state=state,
        reason=reason,
        now=now,
        actor_user_id=actor_user_id,
    )
    db.flush()
    _rearm(db, timer_subject(rnd), now=now)
    return True


def close_for_trigger(
    db: Session,
    *,
    trigger_kind: str,
    trigger_id: int,
    reason: str,
    now: dt.datetime,
    actor_user_id: int | None = None,
) -> list[int]:
    """End every running round a warning or an alarm started; returns their plan ids."""
    rounds = list(
        db.scalars(
            select(CallRound).where(
                CallRound.trigger_kind == trigger_kind,
                CallRound.trigger_id == trigger_id,
                CallRound.state == "running",
            )
        )
    )
    for r in rounds:
        end_round(
            db, round_id=r.id, state="closed", reason=reason, now=now, actor_user_id=actor_user_id
        )
    return [r.plan_id for r in rounds]


# -- the timer ------------------------------------------------------------------------------


def _next_due(step_started: dt.datetime, attempt: int, within: int, every: int) -> dt.datetime:
    """When a call notified `attempt` times in its current step needs looking at again:
    the next repeat while it falls before the answer time, else the answer time itself
    (then it escalates)."""
    deadline = step_started + dt.timedelta(minutes=within)
    repeat = step_started + dt.timedelta(minutes=every * attempt)
    return repeat if repeat < deadline else deadline


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def answer_url(token: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/a/{token}"


@dataclass(frozen=True)
class _CallRef:
    """What a notification needs of a call (read as plain rows: a district-wide warning
    touches a thousand calls, and ORM objects for each would cost more than the rest)."""

    id: int
    round_id: int
    person_id: int
    role: str
    name: str
    path: list[dict[str, Any]]


def _notify(
    db: Session,
    rnd: CallRound,
    call: _CallRef | Call,
    *,
    step: int,
    attempt: int,
    now: dt.datetime,
    keys: list[dict[str, Any]],
    events: list[dict[str, Any]],
    notes: list[notify.PersonMessage],
    action: str,
    from_state: str,
) -> None:
    """Queue one notification of `call` to the person at `step` of its path, with a fresh
    answer key; the message, the key and the log row are collected for one bulk insert
    each per tick."""
    who = call.path[step]
    token = secrets.token_urlsafe(18)
    code = f"{secrets.randbelow(1_000_000):06d}"
    chain = rnd.chain
    plan_name = chain["plan"]["name_zh"]
    role_zh = ROLE_ZH.get(call.role, call.role)
    drill = "【演练】" if rnd.exercise else ""
    minutes = rnd.answer_within_min
    if step == 0:
        again = f"（第{attempt}次）" if attempt > 1 else ""
        subject = f"{drill}叫应{again}：{rnd.trigger_label} · {plan_name}"
        body = (
            f"{who['name']}：{rnd.trigger_label}，您是《{plan_name}》{role_zh}。"
            f"请在{minutes}分钟内应答：点击链接，或回复短信 {code}。"
            f"本级措施：{chain['actions_zh'][0]}"
        )
    else:
        subject = f"{drill}叫应升级：{call.name}未应答 · {plan_name}"
        body = (
            f"{who['name']}：《{plan_name}》{role_zh}{call.name}未在{minutes}分钟内应答"
            f"（{rnd.trigger_label}）。请您应答并督促落实：点击链接，或回复短信 {code}。"
        )
    notes.append(notify.PersonMessage(who["person_id"], subject, body, answer_url(token), call.id))
    keys.append(
        {
            "call_id": call.id,
            "step": step,
            "person_id": who["person_id"],
            "token_sha256": _token_hash(token),
            "sms_code": code,
            "created_at": now,
        }
    )
    events.append(
        {
            "round_id": rnd.id,
            "call_id": call.id,
            "at": now,
            "action": action,
            "from_state": from_state,
            "to_state": "calling",
            "step": step,
            "attempt": attempt,
            "person_id": who["person_id"],
            "reason": f"通知{who['name']}（{ROLE_ZH.get(who.get('role', ''), '')}）",
        }
    )


def _changed(db: Session, stmt: Any) -> bool:
    # Conditional updates are judged by the row count: exactly one row means "mine".
    result = db.execute(stmt.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount) == 1


def tick(db: Session, *, subject: str, now: dt.datetime) -> None:
    """What a timer does for its rounds: first notifications, due repeats and escalations,
    calls that ran out of people; then complete the rounds with nothing open and re-arm."""
    rounds = _rounds_of_subject(db, subject, lock=True)
    if not rounds:
        return
    by_id = {r.id: r for r in rounds}
    keys: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    notes: list[notify.PersonMessage] = []

    queued = [
        _CallRef(row.id, row.round_id, row.person_id, row.role, row.name, row.path)
        for row in db.execute(
            select(Call.id, Call.round_id, Call.person_id, Call.role, Call.name, Call.path)
            .where(Call.round_id.in_(list(by_id)), Call.state == "queued")
            .order_by(Call.id)
        )
    ]
    for call in queued:
        _notify(
            db,
            by_id[call.round_id],
            call,
            step=0,
            attempt=1,
            now=now,
            keys=keys,
            events=events,
            notes=notes,
            action="notified",
            from_state="queued",
        )
    # Rounds with the same timing share one UPDATE (a warning's rounds usually do).
    by_timing: dict[dt.datetime, list[int]] = {}
    for rid in {c.round_id for c in queued}:
        r = by_id[rid]
        by_timing.setdefault(_next_due(now, 1, r.answer_within_min, r.repeat_every_min), []).append(
            rid
        )
    for next_due, rids in by_timing.items():
        db.execute(
            update(Call)
            .where(Call.round_id.in_(rids), Call.state == "queued")
            .values(
                state="calling",
                step=0,
                attempt=1,
                step_started_at=now,
                first_notified_at=now,
                next_due_at=next_due,
            )
            .execution_options(synchronize_session=False)
        )

    due = list(
        db.scalars(
            select(Call)
            .where(Call.round_id.in_(list(by_id)), Call.state == "calling", Call.next_due_at <= now)
            .order_by(Call.id)
        )
    )
    for row in due:
        _advance(db, by_id[row.round_id], row, now=now, keys=keys, events=events, notes=notes)

    # Every message of the tick in one go: a district-wide warning's first notifications
    # are a thousand of them (bench/warning_fanout.py).
    notify.enqueue_each(db, notes, topic=TOPIC, subject_type=SUBJECT_CALL, now=now)
    if keys:
        db.execute(insert(CallKey), keys)
    if events:
        db.execute(insert(CallEvent), events)
    open_counts = dict(
        db.execute(
            select(Call.round_id, func.count())
            .where(Call.round_id.in_(list(by_id)), Call.state.in_(OPEN_CALL_STATES))
            .group_by(Call.round_id)
        ).all()
    )
    for rid in by_id:
        if not open_counts.get(rid):
            _complete(db, rid, now=now)
    _rearm(db, subject, now=now)


def tick_round(db: Session, *, round_id: int, now: dt.datetime) -> None:
    """Run the timer of the round's subject (kept for callers holding a round id)."""
    rnd = db.get(CallRound, round_id)
    if rnd is None:
        raise timers.PermanentFailure(f"call round {round_id} is gone")
    tick(db, subject=timer_subject(rnd), now=now)


def _advance(
    db: Session,
    rnd: CallRound,
    call: Call,
    *,
    now: dt.datetime,
    keys: list[dict[str, Any]],
    events: list[dict[str, Any]],
    notes: list[notify.PersonMessage],
) -> None:
    within, every = rnd.answer_within_min, rnd.repeat_every_min
    assert call.step_started_at is not None
    deadline = call.step_started_at + dt.timedelta(minutes=within)
    mine = update(Call).where(
        Call.id == call.id,
        Call.state == "calling",
        Call.step == call.step,
        Call.attempt == call.attempt,
    )
    if now < deadline:
        attempt = call.attempt + 1
        nxt = _next_due(call.step_started_at, attempt, within, every)
        if _changed(db, mine.values(attempt=attempt, next_due_at=nxt)):
            _notify(
                db,
                rnd,
                call,
                step=call.step,
                attempt=attempt,
                now=now,
                keys=keys,
                events=events,
                notes=notes,
                action="repeated",
                from_state="calling",
            )
        return
    if call.step + 1 < len(call.path):
        step = call.step + 1
        values = {
            "step": step,
            "attempt": 1,
            "step_started_at": now,
            "next_due_at": _next_due(now, 1, within, every),
            "late": True,
        }
        if _changed(db, mine.values(**values)):
            _notify(
                db,
                rnd,
                call,
                step=step,
                attempt=1,
                now=now,
                keys=keys,
                events=events,
                notes=notes,
                action="escalated",
                from_state="calling",
            )
        return
    if _changed(db, mine.values(state="unanswered", next_due_at=None, late=True)):
        events.append(
            {
                "round_id": rnd.id,
                "call_id": call.id,
                "at": now,
                "action": "unanswered",
                "from_state": "calling",
                "to_state": "unanswered",
                "step": call.step,
                "attempt": call.attempt,
                "person_id": call.person_id,
                "reason": f"叫应链已到顶仍无人应答（{len(call.path)} 人）",
            }
        )


def _complete(db: Session, round_id: int, *, now: dt.datetime) -> bool:
    done = _changed(
        db,
        update(CallRound)
        .where(CallRound.id == round_id, CallRound.state == "running")
        .values(state="complete", ended_at=now, end_reason="全部叫应已结束"),
    )
    if done:
        db.add(
            CallEvent(
                round_id=round_id,
                call_id=None,
                at=now,
                action="complete",
                from_state="running",
                to_state="complete",
                reason="全部叫应已结束",
            )
        )
        db.flush()
    return done


@timers.register(KIND_TICK)
def _tick_handler(db: Session, item: Any, now: dt.datetime) -> None:
    tick(db, subject=str(item.subject_id), now=now)


# -- answering -------------------------------------------------------------------------------


def _result(rnd: CallRound, call: Call, *, already: bool) -> AnswerResult:
    return AnswerResult(
        call_id=call.id,
        round_id=rnd.id,
        state=call.state,
        answered_at=call.answered_at,
        already=already,
        late=call.late,
        plan_name_zh=rnd.chain["plan"]["name_zh"],
        trigger_label=rnd.trigger_label,
        exercise=rnd.exercise,
    )


def _answer(
    db: Session,
    *,
    call: Call,
    person_id: int,
    via: str,
    actor_user_id: int | None,
    now: dt.datetime,
) -> AnswerResult:
    rnd = db.get(CallRound, call.round_id)
    assert rnd is not None
    if call.state == "answered":
        return _result(rnd, call, already=True)
    if call.state not in ANSWERABLE_STATES:
        raise AppError(
            409,
            "call_closed",
            f"Call {call.id} is {call.state}",
            f"该叫应{CALL_STATE_ZH.get(call.state, call.state)}，无需应答",
        )
    is_self = person_id == call.person_id
    deadline = (call.first_notified_at or now) + dt.timedelta(minutes=rnd.answer_within_min)
    late = (not is_self) or now > deadline
    step = next((i for i, p in enumerate(call.path) if p["person_id"] == person_id), call.step)
    from_state = call.state
    changed = _changed(
        db,
        update(Call)
        .where(Call.id == call.id, Call.state.in_(ANSWERABLE_STATES))
        .values(
            state="answered",
            answered_at=now,
            answered_by_person_id=person_id,
            answered_step=step,
            answered_via=via,
            late=late,
            next_due_at=None,
        ),
    )
    db.refresh(call)
    if not changed:
        if call.state == "answered":
            return _result(rnd, call, already=True)
        raise AppError(409, "call_closed", "Call closed meanwhile", "该叫应已结束，无需应答")
    who = call.path[step]["name"] if step < len(call.path) else ""
    reason = "本人应答" if is_self else f"{who}代为应答（上级）"
    if late and is_self:
        reason += "，已超时"
    db.add(
        CallEvent(
            round_id=rnd.id,
            call_id=call.id,
            at=now,
            action="answered",
            from_state=from_state,
            to_state="answered",
            step=step,
            attempt=call.attempt,
            person_id=person_id,
            actor_user_id=actor_user_id,
            via=via,
            reason=reason,
        )
    )
    db.flush()
    if rnd.state == "running":
        still_open = db.scalar(
            select(func.count()).where(Call.round_id == rnd.id, Call.state.in_(OPEN_CALL_STATES))
        )
        if not still_open and _complete(db, rnd.id, now=now):
            _rearm(db, timer_subject(rnd), now=now)
    return _result(rnd, call, already=False)


def key_for_token(db: Session, *, token: str) -> CallKey:
    key = db.scalar(select(CallKey).where(CallKey.token_sha256 == _token_hash(token.strip())))
    if key is None:
        raise AppError(404, "bad_token", "Unknown or expired answer link", "应答链接无效或已失效")
    return key


def preview_token(db: Session, *, token: str) -> tuple[CallRound, Call, str]:
    """What an answer link is for, without answering (the page shows it and asks for a
    tap: link checkers and chat previews open links, and must not answer for anyone)."""
    key = key_for_token(db, token=token)
    call = db.get(Call, key.call_id)
    assert call is not None
    rnd = db.get(CallRound, call.round_id)
    assert rnd is not None
    who = next((p["name"] for p in call.path if p["person_id"] == key.person_id), call.name)
    return rnd, call, who


def answer_with_token(db: Session, *, token: str, via: str, now: dt.datetime) -> AnswerResult:
    key = key_for_token(db, token=token)
    call = db.get(Call, key.call_id)
    assert call is not None
    return _answer(db, call=call, person_id=key.person_id, via=via, actor_user_id=None, now=now)


def answer_as_person(
    db: Session,
    *,
    call_id: int,
    person_id: int | None,
    actor_user_id: int | None,
    via: str,
    now: dt.datetime,
) -> AnswerResult:
    """A signed-in person answers (staff page, API): the called person, or someone the call
    has already been escalated to."""
    call = db.get(Call, call_id)
    if call is None:
        raise not_found("call", "叫应", call_id)
    reachable = [p["person_id"] for p in call.path[: call.step + 1]]
    if person_id is None or person_id not in reachable:
        raise forbidden()
    return _answer(
        db, call=call, person_id=person_id, via=via, actor_user_id=actor_user_id, now=now
    )


def normalise_mobile(raw: str) -> str:
    digits = re.sub(r"[^\d]", "", raw)
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


def answer_sms(db: Session, *, sender: str, text: str, now: dt.datetime) -> list[AnswerResult]:
    """An SMS reply forwarded by the gateway. The sender's number says who; the six-digit
    code in the text says which call. Without a code the reply answers the sender's only
    open call, and is refused when there are several (the reply asks for the code)."""
    mobile = normalise_mobile(sender)
    people = list(db.scalars(select(Person.id).where(Person.mobile == mobile)))
    if not people:
        raise AppError(
            404, "unknown_sender", "No person with this number", "未找到该号码对应的人员"
        )
    rows = db.execute(
        select(CallKey.call_id, CallKey.person_id, CallKey.sms_code)
        .join(Call, Call.id == CallKey.call_id)
        .where(CallKey.person_id.in_(people), Call.state.in_(ANSWERABLE_STATES))
    ).all()
    codes = set(SMS_CODE_RE.findall(text))
    if codes:
        chosen = {(r.call_id, r.person_id) for r in rows if r.sms_code in codes}
    else:
        chosen = {(r.call_id, r.person_id) for r in rows}
        if len({c for c, _ in chosen}) > 1:
            raise AppError(
                409,
                "ambiguous_reply",
                "Several open calls: reply with the code",
                "您有多项待应答的叫应，请回复短信中的6位应答码",
            )
    if not chosen:
        raise AppError(404, "no_open_call", "No open call matches", "没有与该回复对应的待应答叫应")
    out = []
    for call_id, person_id in sorted(chosen):
        call = db.get(Call, call_id)
        assert call is not None
        out.append(
            _answer(db, call=call, person_id=person_id, via="sms", actor_user_id=None, now=now)
        )
    return out


# -- reading ------------------------------------------------------------------------------------


def get_round_or_404(db: Session, *, round_id: int) -> CallRound:
    rnd = db.get(CallRound, round_id)
    if rnd is None:
        raise not_found("call round", "叫应轮次", round_id)
    return rnd


def _people_names(db: Session, ids: set[int]) -> dict[int, tuple[str, str]]:
    if not ids:
        return {}
    return {p.id: (p.code, p.name) for p in db.scalars(select(Person).where(Person.id.in_(ids)))}


def call_reads(
    db: Session, rnd: CallRound, calls: Sequence[Call], now: dt.datetime
) -> list[CallRead]:
    names = _people_names(
        db,
        {c.person_id for c in calls}
        | {c.answered_by_person_id for c in calls if c.answered_by_person_id},
    )
    out = []
    for c in calls:
        deadline = (
            c.first_notified_at + dt.timedelta(minutes=rnd.answer_within_min)
            if c.first_notified_at
            else None
        )
        overdue = c.state in ("calling", "unanswered") and deadline is not None and now > deadline
        secs = (
            (c.answered_at - c.first_notified_at).total_seconds()
            if c.answered_at and c.first_notified_at
            else None
        )
        step = min(c.step, len(c.path) - 1)
        out.append(
            CallRead(
                id=c.id,
                round_id=c.round_id,
                person_code=names.get(c.person_id, ("", ""))[0],
                name=c.name,
                role=c.role,
                state=c.state,
                step=c.step,
                current_person_name=c.path[step]["name"],
                first_notified_at=c.first_notified_at,
                answered_at=c.answered_at,
                answered_by_name=(
                    names.get(c.answered_by_person_id, ("", ""))[1]
                    if c.answered_by_person_id
                    else None
                ),
                answered_via=c.answered_via,
                seconds_to_answer=secs,
                late=c.late or overdue,
                overdue=overdue,
                exercise=c.exercise,
            )
        )
    return out


def round_reads(
    db: Session, rounds: Sequence[CallRound], *, now: dt.datetime, with_calls: bool = False
) -> list[RoundRead]:
    if not rounds:
        return []
    ids = [r.id for r in rounds]
    calls_by: dict[int, list[Call]] = {i: [] for i in ids}
    for c in db.scalars(select(Call).where(Call.round_id.in_(ids)).order_by(Call.id)):
        calls_by[c.round_id].append(c)
    out = []
    for r in rounds:
        reads = call_reads(db, r, calls_by[r.id], now)
        out.append(
            RoundRead(
                id=r.id,
                plan_code=r.chain["plan"]["code"],
                plan_name_zh=r.chain["plan"]["name_zh"],
                plan_version=r.chain["plan"]["version"],
                trigger_kind=r.trigger_kind,
                trigger_label=r.trigger_label,
                level=r.level,
                exercise=r.exercise,
                state=r.state,
                started_at=r.started_at,
                ended_at=r.ended_at,
                end_reason=r.end_reason,
                answer_within_min=r.answer_within_min,
                total=len(reads),
                answered=sum(1 for c in reads if c.state == "answered"),
                late=sum(1 for c in reads if c.late),
                waiting=sum(1 for c in reads if c.state in OPEN_CALL_STATES),
                escalated=sum(1 for c in reads if c.step > 0),
                calls=reads if with_calls else [],
            )
        )
    return out


def list_rounds(
    db: Session,
    *,
    state: str | None = None,
    running_or_since: dt.datetime | None = None,
    plan_id: int | None = None,
    trigger_kind: str | None = None,
    trigger_id: int | None = None,
    limit: int = 200,
) -> list[CallRound]:
    q = select(CallRound).order_by(CallRound.started_at.desc(), CallRound.id.desc()).limit(limit)
    if state is not None:
        q = q.where(CallRound.state == state)
    if running_or_since is not None:
        q = q.where((CallRound.state == "running") | (CallRound.started_at >= running_or_since))
    if plan_id is not None:
        q = q.where(CallRound.plan_id == plan_id)
    if trigger_kind is not None:
        q = q.where(CallRound.trigger_kind == trigger_kind)
    if trigger_id is not None:
        q = q.where(CallRound.trigger_id == trigger_id)
    return list(db.scalars(q))


def round_events(db: Session, *, round_id: int) -> list[CallEventRead]:
    rows = list(
        db.scalars(
            select(CallEvent)
            .where(CallEvent.round_id == round_id)
            .order_by(CallEvent.at, CallEvent.id)
        )
    )
    names = _people_names(db, {e.person_id for e in rows if e.person_id})
    return [
        CallEventRead(
            at=e.at,
            call_id=e.call_id,
            action=e.action,
            from_state=e.from_state,
            to_state=e.to_state,
            step=e.step,
            attempt=e.attempt,
            person_name=names.get(e.person_id, ("", ""))[1] if e.person_id else None,
            via=e.via,
            reason=e.reason,
        )
        for e in rows
    ]


def open_calls_for(db: Session, *, person_id: int) -> list[tuple[CallRound, Call]]:
    """Calls waiting for this person's answer: their own, and those escalated to them."""
    call_ids = select(CallKey.call_id).where(CallKey.person_id == person_id)
    rows = db.execute(
        select(CallRound, Call)
        .join(Call, Call.round_id == CallRound.id)
        .where(Call.id.in_(call_ids), Call.state.in_(ANSWERABLE_STATES))
        .order_by(Call.first_notified_at.desc(), Call.id.desc())
    ).all()
    return [(r, c) for r, c in rows]


# -- KPIs ---------------------------------------------------------------------------------------


def _kpi(key: str, calls: list[tuple[Call, CallRound]]) -> CallKpi:
    counted = []
    for c, r in calls:
        if c.first_notified_at is None:
            continue
        if c.state == "stood_down":
            # Stood down before the answer time ran out: nobody failed to answer.
            ended = r.ended_at or c.first_notified_at
            if ended <= c.first_notified_at + dt.timedelta(minutes=r.answer_within_min):
                continue
        counted.append(c)
    self_answers = [
        c for c in counted if c.state == "answered" and c.answered_by_person_id == c.person_id
    ]
    on_time = [c for c in self_answers if not c.late]
    by_superior = [
        c for c in counted if c.state == "answered" and c.answered_by_person_id != c.person_id
    ]
    secs = sorted(
        (c.answered_at - c.first_notified_at).total_seconds()  # type: ignore[operator]
        for c in self_answers
    )
    n = len(counted)

    def pct(q: float) -> float | None:
        if not secs:
            return None
        return secs[min(len(secs) - 1, max(0, int(round(q * (len(secs) - 1)))))]

    return CallKpi(
        key=key,
        calls=n,
        answered_self=len(self_answers),
        answered_on_time=len(on_time),
        answered_by_superior=len(by_superior),
        unanswered=n - len(self_answers) - len(by_superior),
        answer_rate=round(len(self_answers) / n, 4) if n else None,
        on_time_rate=round(len(on_time) / n, 4) if n else None,
        mean_seconds_to_answer=round(statistics.fmean(secs), 1) if secs else None,
        median_seconds_to_answer=round(statistics.median(secs), 1) if secs else None,
        p90_seconds_to_answer=pct(0.9),
    )


def kpis(
    db: Session,
    *,
    start: dt.datetime,
    end: dt.datetime,
    exercise: bool = False,
    group_by: str = "plan_kind",
) -> CallKpiReport:
    """Answer rate and time to answer over rounds started in [start, end). Drills are
    measured apart (exercise=True) so a drill season never flatters the real figures."""
    rows = db.execute(
        select(Call, CallRound)
        .join(CallRound, CallRound.id == Call.round_id)
        .where(
            CallRound.started_at >= start,
            CallRound.started_at < end,
            CallRound.exercise.is_(exercise),
        )
    ).all()
    pairs = [(c, r) for c, r in rows]
    groups: dict[str, list[tuple[Call, CallRound]]] = {}
    for c, r in pairs:
        if group_by == "role":
            key = c.role
        elif group_by == "level":
            key = r.level
        elif group_by == "trigger":
            key = r.trigger_kind
        else:
            key = r.chain["plan"]["kind"]
        groups.setdefault(key, []).append((c, r))
    return CallKpiReport(
        start=start,
        end=end,
        exercise=exercise,
        definitions=KPI_DEFINITIONS,
        total=_kpi("total", pairs),
        groups=[_kpi(k, v) for k, v in sorted(groups.items())],
    )


# Every process that runs these rounds must also hear alarms and run the response sweep;
# the worker loads this module by name, so loading it installs the rest (flood/wiring.py).
# Imported last: wiring imports this module, which is complete by now.
from watergrid.flood import wiring as _wiring  # noqa: E402,F401
