"""Flood response API: rainstorm warnings and their CAP feed, one-page plans, the
call-and-response, pump-crew dispatch, service cards and the board. Thin routes: fetch, 404,
check scope, call the service.

After a change that arms timers (a warning, a drill) the route asks for a nudge: once the
response is out, the due items are run at once in this process instead of waiting for the
next sweep, so first notifications are queued within moments. Claims keep that safe next to
any number of sweepers."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from watergrid import db as dbmod
from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, forbidden
from watergrid.flood import board as board_service
from watergrid.flood import calls as call_service
from watergrid.flood import cards as card_service
from watergrid.flood import (
    dispatch,
    wiring,  # noqa: F401  (alarm hooks and timer handlers)
)
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.cap import CAP_MIME
from watergrid.flood.response_schemas import (
    AnswerResult,
    CallEventRead,
    CallKpiReport,
    CriterionRead,
    CriterionUpdate,
    DrillStart,
    PlanCreate,
    PlanRead,
    PlanSummary,
    PlanVersionIn,
    PlanVersionRead,
    RoundRead,
    ServiceCardUpdate,
    SmsInbound,
    SuggestionDecision,
    SuggestionRead,
    TaskCreate,
    TaskRead,
    TaskReassign,
    TaskStatus,
    WarningChange,
    WarningIssue,
    WarningLift,
    WarningRead,
)
from watergrid.flood.response_settings import get_response_settings
from watergrid.geo import service as geo_service
from watergrid.geo.pages import map_datum
from watergrid.timers import service as timers

log = logging.getLogger("watergrid.flood.api2")
router = APIRouter(prefix="/api/v1/flood", tags=["flood response"])
Reader: TypeAlias = Annotated[Principal, Depends(allow("flood.read"))]
Warner: TypeAlias = Annotated[Principal, Depends(allow("flood.warn"))]
Planner: TypeAlias = Annotated[Principal, Depends(allow("flood.plans"))]
Answerer: TypeAlias = Annotated[Principal, Depends(allow("flood.calls.answer"))]
Dispatcher: TypeAlias = Annotated[Principal, Depends(allow("flood.dispatch"))]
Anyone: TypeAlias = Annotated[Principal | None, Depends(public)]
LOCAL = ZoneInfo("Asia/Shanghai")
NUDGE_BATCH = 200


def _run_due_now() -> None:
    """Run what is due right now (first notifications of new rounds) in this process."""
    factory = dbmod.session_factory()
    worker = f"nudge:{os.getpid()}"
    try:
        for _ in range(50):
            if (
                timers.run_due(factory, worker_id=worker, now=utcnow(), limit=NUDGE_BATCH)
                < NUDGE_BATCH
            ):
                break
    except Exception:
        # The sweepers will get to it; a nudge is only a head start.
        log.exception("nudge failed")


def get_nudger(background: BackgroundTasks) -> Callable[[], None]:
    """Dependency: call the result to have due items run after the response. Tests
    replace it to drive the timers themselves."""
    return lambda: background.add_task(_run_due_now)


Nudge = Annotated[Callable[[], None], Depends(get_nudger)]


def actor_of(p: Principal) -> warning_service.Actor:
    return warning_service.Actor(user_id=p.user_id, name=p.display_name)


def _check_subdistrict(db: SessionDep, p: Principal, code: str) -> None:
    area = geo_service.get(db, code=code)
    if area is not None and not p.covers_subdistrict(area.id):
        raise forbidden()


def _instant(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=LOCAL) if value.tzinfo is None else value


# -- warnings ----------------------------------------------------------------------------------


@router.get("/warnings", response_model=list[WarningRead])
def list_warnings(
    db: SessionDep,
    _: Reader,
    active: bool = False,
    exercise: bool | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> list[WarningRead]:
    rows = warning_service.list_warnings(db, active_only=active, exercise=exercise, limit=limit)
    return [warning_service.to_read(db, w) for w in rows]


@router.post("/warnings", response_model=WarningRead, status_code=201)
def issue_warning(db: SessionDep, p: Warner, body: WarningIssue, nudge: Nudge) -> WarningRead:
    """Issue a signal for a subdistrict (a drill with exercise=true). Starts the call
    rounds of every plan covering it."""
    _check_subdistrict(db, p, body.subdistrict_code)
    w = warning_service.issue(db, data=body, actor=actor_of(p), now=utcnow())
    nudge()
    return warning_service.to_read(db, w, with_history=True)


@router.get("/warnings/{warning_id}", response_model=WarningRead)
def get_warning(db: SessionDep, _: Reader, warning_id: int) -> WarningRead:
    w = warning_service.get_or_404(db, warning_id=warning_id)
    return warning_service.to_read(db, w, with_history=True)


@router.post("/warnings/{warning_id}/level", response_model=WarningRead)
def change_level(
    db: SessionDep, p: Warner, warning_id: int, body: WarningChange, nudge: Nudge
) -> WarningRead:
    """Upgrade (new call rounds at the new level) or downgrade."""
    w = warning_service.get_or_404(db, warning_id=warning_id)
    if not p.covers_subdistrict(w.subdistrict_id):
        raise forbidden()
    w = warning_service.change_level(
        db,
        warning_id=warning_id,
        level=body.level,
        actor=actor_of(p),
        reason=body.reason,
        now=utcnow(),
    )
    nudge()
    return warning_service.to_read(db, w, with_history=True)


@router.post("/warnings/{warning_id}/lift", response_model=WarningRead)
def lift_warning(db: SessionDep, p: Warner, warning_id: int, body: WarningLift) -> WarningRead:
    w = warning_service.get_or_404(db, warning_id=warning_id)
    if not p.covers_subdistrict(w.subdistrict_id):
        raise forbidden()
    w = warning_service.lift(
        db, warning_id=warning_id, actor=actor_of(p), reason=body.reason, now=utcnow()
    )
    return warning_service.to_read(db, w, with_history=True)


@router.get("/warning-suggestions", response_model=list[SuggestionRead])
def list_suggestions(db: SessionDep, _: Reader, open_only: bool = True) -> list[SuggestionRead]:
    return [
        warning_service.suggestion_read(db, s)
        for s in warning_service.suggestions(db, open_only=open_only)
    ]


@router.post("/warning-suggestions/check", response_model=list[SuggestionRead])
def check_rain(db: SessionDep, _: Warner) -> list[SuggestionRead]:
    """Compare rainfall with the criteria now rather than at the next sweep."""
    return [
        warning_service.suggestion_read(db, s) for s in warning_service.check_rain(db, now=utcnow())
    ]


@router.post("/warning-suggestions/{suggestion_id}/accept", response_model=WarningRead)
def accept_suggestion(
    db: SessionDep, p: Warner, suggestion_id: int, body: SuggestionDecision, nudge: Nudge
) -> WarningRead:
    w = warning_service.accept_suggestion(
        db, suggestion_id=suggestion_id, actor=actor_of(p), reason=body.reason, now=utcnow()
    )
    nudge()
    return warning_service.to_read(db, w, with_history=True)


@router.post("/warning-suggestions/{suggestion_id}/dismiss", response_model=SuggestionRead)
def dismiss_suggestion(
    db: SessionDep, p: Warner, suggestion_id: int, body: SuggestionDecision
) -> SuggestionRead:
    s = warning_service.dismiss_suggestion(
        db, suggestion_id=suggestion_id, actor=actor_of(p), reason=body.reason, now=utcnow()
    )
    return warning_service.suggestion_read(db, s)


@router.get("/warning-criteria", response_model=list[CriterionRead])
def list_criteria(db: SessionDep, _: Reader) -> list[CriterionRead]:
    return [warning_service.criterion_read(c) for c in warning_service.criteria(db)]


@router.patch("/warning-criteria/{criterion_id}", response_model=CriterionRead)
def update_criterion(
    db: SessionDep, p: Warner, criterion_id: int, body: CriterionUpdate
) -> CriterionRead:
    c = warning_service.update_criterion(
        db, criterion_id=criterion_id, data=body, actor=actor_of(p), now=utcnow()
    )
    return warning_service.criterion_read(c)


# -- CAP ---------------------------------------------------------------------------------------


@router.get("/cap/feed.atom", response_class=Response)
def cap_feed(
    request: Request, db: SessionDep, _: Anyone, include_exercise: bool = False
) -> Response:
    """Atom feed of the CAP messages, newest first; drills only when asked for."""
    body = warning_service.cap_feed(
        db, include_exercise=include_exercise, self_url=str(request.url), now=utcnow()
    )
    return Response(body, media_type="application/atom+xml")


@router.get("/cap/{identifier}.xml", response_class=Response)
def cap_document(db: SessionDep, _: Anyone, identifier: str) -> Response:
    """One CAP 1.2 document, exactly as published."""
    row = warning_service.cap_document(db, identifier=identifier)
    return Response(row.cap_xml.encode("utf-8"), media_type=CAP_MIME)


# -- plans -------------------------------------------------------------------------------------


@router.get("/plans", response_model=list[PlanSummary])
def list_plans(
    db: SessionDep,
    _: Reader,
    kind: Literal["reservoir", "river", "waterlogging_point", "subdistrict", "grid"] | None = None,
    subdistrict: str | None = None,
) -> list[PlanSummary]:
    sub_id = (
        geo_service.get_or_404(db, code=subdistrict, kind="subdistrict").id if subdistrict else None
    )
    return plan_service.summaries(db, plan_service.get_all(db, kind=kind, subdistrict_id=sub_id))


@router.post("/plans", response_model=PlanRead, status_code=201)
def create_plan(db: SessionDep, p: Planner, body: PlanCreate) -> PlanRead:
    now = utcnow()
    plan = plan_service.create(
        db, data=body, actor_user_id=p.user_id, actor_name=p.display_name, now=now
    )
    return plan_service.to_read(
        db, plan=plan, full_contacts=p.can("people.contacts"), today=now.astimezone(LOCAL).date()
    )


@router.get("/plans/{code}", response_model=PlanRead)
def get_plan(db: SessionDep, p: Reader, code: str) -> PlanRead:
    plan = plan_service.get_or_404(db, code=code)
    return plan_service.to_read(
        db,
        plan=plan,
        full_contacts=p.can("people.contacts"),
        today=utcnow().astimezone(LOCAL).date(),
    )


@router.get("/plans/{code}/versions/{number}", response_model=PlanVersionRead)
def get_plan_version(db: SessionDep, p: Reader, code: str, number: int) -> PlanVersionRead:
    plan = plan_service.get_or_404(db, code=code)
    row = plan_service.version_row(db, plan=plan, number=number)
    return plan_service.version_read(
        db,
        plan=plan,
        version=row,
        full_contacts=p.can("people.contacts"),
        today=utcnow().astimezone(LOCAL).date(),
    )


@router.post("/plans/{code}/versions", response_model=PlanRead, status_code=201)
def add_plan_version(db: SessionDep, p: Planner, code: str, body: PlanVersionIn) -> PlanRead:
    """A new version, in force at once; running call rounds keep the chain they copied."""
    now = utcnow()
    plan = plan_service.get_or_404(db, code=code)
    plan_service.add_version(
        db, plan=plan, data=body, actor_user_id=p.user_id, actor_name=p.display_name, now=now
    )
    return plan_service.to_read(
        db, plan=plan, full_contacts=p.can("people.contacts"), today=now.astimezone(LOCAL).date()
    )


@router.post("/plans/{code}/drill", response_model=RoundRead, status_code=201)
def start_drill(db: SessionDep, p: Warner, code: str, body: DrillStart, nudge: Nudge) -> RoundRead:
    """Run the plan's call-and-response as a drill (marked exercise throughout)."""
    now = utcnow()
    plan = plan_service.get_or_404(db, code=code)
    label = f"{plan.name_zh}演练" + (f"（{body.reason}）" if body.reason else "")
    rnd = call_service.start_round(
        db,
        plan=plan,
        level=body.level,
        trigger=call_service.Trigger("drill", None, label, True),
        started_by_user_id=p.user_id,
        now=now,
    )
    if rnd is None:
        raise AppError(
            409,
            "no_round",
            "Nothing to call at this level, or a drill at it is running",
            "该级别无需叫应，或同级演练正在进行",
        )
    nudge()
    return call_service.round_reads(db, [rnd], now=now, with_calls=True)[0]


# -- call-and-response -------------------------------------------------------------------------


@router.get("/rounds", response_model=list[RoundRead])
def list_rounds(
    db: SessionDep,
    _: Reader,
    state: Literal["running", "complete", "closed", "superseded"] | None = None,
    plan: str | None = None,
    warning_id: int | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> list[RoundRead]:
    plan_id = plan_service.get_or_404(db, code=plan).id if plan else None
    rounds = call_service.list_rounds(
        db,
        state=state,
        plan_id=plan_id,
        trigger_kind="warning" if warning_id else None,
        trigger_id=warning_id,
        limit=limit,
    )
    return call_service.round_reads(db, rounds, now=utcnow())


@router.get("/rounds/{round_id}", response_model=RoundRead)
def get_round(db: SessionDep, _: Reader, round_id: int) -> RoundRead:
    """The live board of one round: who has answered, when, and who is late."""
    rnd = call_service.get_round_or_404(db, round_id=round_id)
    return call_service.round_reads(db, [rnd], now=utcnow(), with_calls=True)[0]


@router.get("/rounds/{round_id}/events", response_model=list[CallEventRead])
def round_events(db: SessionDep, _: Reader, round_id: int) -> list[CallEventRead]:
    call_service.get_round_or_404(db, round_id=round_id)
    return call_service.round_events(db, round_id=round_id)


@router.post("/rounds/{round_id}/close", response_model=RoundRead)
def close_round(db: SessionDep, p: Warner, round_id: int, body: WarningLift) -> RoundRead:
    """End a round by hand (a drill is over); open calls are stood down."""
    now = utcnow()
    rnd = call_service.get_round_or_404(db, round_id=round_id)
    if not call_service.end_round(
        db,
        round_id=round_id,
        state="closed",
        reason=body.reason or "值班员结束",
        now=now,
        actor_user_id=p.user_id,
    ):
        raise AppError(409, "round_ended", "Round not running", "该轮叫应已结束")
    db.refresh(rnd)
    return call_service.round_reads(db, [rnd], now=now, with_calls=True)[0]


@router.get("/calls/mine", response_model=list[RoundRead])
def my_calls(db: SessionDep, p: Answerer) -> list[RoundRead]:
    """Rounds with a call waiting for the caller's answer (their own or escalated to them)."""
    if p.person_id is None:
        return []
    pairs = call_service.open_calls_for(db, person_id=p.person_id)
    now = utcnow()
    out = []
    for rnd, call in pairs:
        read = call_service.round_reads(db, [rnd], now=now)[0]
        read.calls = call_service.call_reads(db, rnd, [call], now)
        out.append(read)
    return out


@router.post("/calls/{call_id}/answer", response_model=AnswerResult)
def answer_call(db: SessionDep, p: Answerer, call_id: int) -> AnswerResult:
    return call_service.answer_as_person(
        db, call_id=call_id, person_id=p.person_id, actor_user_id=p.user_id, via="api", now=utcnow()
    )


class TokenIn(BaseModel):
    token: str = Field(min_length=8, max_length=100)


@router.post("/calls/answer-token", response_model=AnswerResult)
def answer_token(db: SessionDep, _: Anyone, body: TokenIn) -> AnswerResult:
    """Answer with the token of a message's link (what the answer page posts)."""
    return call_service.answer_with_token(db, token=body.token, via="link", now=utcnow())


@router.post("/calls/sms-inbound", response_model=list[AnswerResult])
def sms_inbound(
    request: Request, db: SessionDep, _: Anyone, body: SmsInbound
) -> list[AnswerResult]:
    """An SMS reply forwarded by the gateway (Authorization: Bearer <sms_inbound_token>)."""
    expected = get_response_settings().sms_inbound_token
    if not expected:
        raise AppError(404, "sms_disabled", "SMS replies are not configured", "未启用短信应答")
    given = request.headers.get("authorization", "")
    if not given.lower().startswith("bearer ") or not hmac.compare_digest(
        given[7:].strip(), expected
    ):
        raise AppError(401, "bad_gateway_token", "Bad gateway token", "短信网关令牌无效")
    return call_service.answer_sms(db, sender=body.sender, text=body.text, now=utcnow())


@router.get("/calls/kpi", response_model=CallKpiReport)
def call_kpis(
    db: SessionDep,
    _: Reader,
    start: datetime | None = None,
    end: datetime | None = None,
    exercise: bool = False,
    group_by: Literal["plan_kind", "role", "level", "trigger"] = "plan_kind",
) -> CallKpiReport:
    """Answer rate and time to answer (definitions in the answer). Default: 30 days."""
    hi = _instant(end, utcnow())
    lo = _instant(start, hi - timedelta(days=30))
    if lo >= hi:
        raise AppError(422, "bad_span", "start must be before end", "开始时间须早于结束时间")
    return call_service.kpis(db, start=lo, end=hi, exercise=exercise, group_by=group_by)


# -- dispatch ----------------------------------------------------------------------------------


@router.get("/tasks", response_model=list[TaskRead])
def list_tasks(db: SessionDep, _: Reader, open_only: bool = True) -> list[TaskRead]:
    return dispatch.to_read(db, dispatch.list_tasks(db, open_only=open_only))


@router.post("/tasks", response_model=TaskRead, status_code=201)
def open_task(db: SessionDep, p: Dispatcher, body: TaskCreate) -> TaskRead:
    """Send the nearest available crew to a waterlogging point by hand."""
    from watergrid.flood import assets as asset_service

    point = asset_service.get_or_404(db, code=body.point_code)
    task = dispatch.open_for_point(
        db,
        point=point,
        source="manual",
        alarm_id=None,
        exercise=False,
        actor_user_id=p.user_id,
        actor_name=p.display_name,
        reason=body.reason or "值班员派车",
        now=utcnow(),
    )
    return dispatch.to_read(db, [task])[0]


@router.post("/tasks/sync", response_model=list[TaskRead])
def sync_tasks(db: SessionDep, _: Dispatcher) -> list[TaskRead]:
    """Pick up new public waterlogging reports now rather than at the next sweep."""
    now = utcnow()
    created = dispatch.sync_work_orders(db, now=now)
    dispatch.assign_waiting(db, now=now)
    return dispatch.to_read(db, created)


@router.post("/tasks/{task_id}/status", response_model=TaskRead)
def task_status(db: SessionDep, p: Dispatcher, task_id: int, body: TaskStatus) -> TaskRead:
    task = dispatch.set_status(
        db,
        task_id=task_id,
        state=body.state,
        actor_user_id=p.user_id,
        actor_name=p.display_name,
        reason=body.reason,
        now=utcnow(),
    )
    return dispatch.to_read(db, [task])[0]


@router.post("/tasks/{task_id}/reassign", response_model=TaskRead)
def task_reassign(db: SessionDep, p: Dispatcher, task_id: int, body: TaskReassign) -> TaskRead:
    task = dispatch.reassign(
        db,
        task_id=task_id,
        crew_code=body.crew_code,
        actor_user_id=p.user_id,
        actor_name=p.display_name,
        reason=body.reason,
        now=utcnow(),
    )
    return dispatch.to_read(db, [task])[0]


# -- service cards and the board ---------------------------------------------------------------


@router.get("/service-cards/{grid_code}")
def get_service_card(db: SessionDep, _: Reader, grid_code: str) -> dict[str, Any]:
    grid = card_service.grid_or_404(db, grid_code)
    c = card_service.card(db, grid=grid, public=False)
    return {
        "grid_code": grid.code,
        "grid_name_zh": grid.name_zh,
        "subdistrict_name_zh": c.subdistrict.name_zh,
        "hotline": c.hotline,
        "office_phone": c.office_phone,
        "contact": {"name": c.contact_name, "title": c.contact_title, "mobile": c.contact_phone},
        "shelters": [s.model_dump() for s in c.shelters],
        "advice": {lvl: lines for lvl, _zh, lines in c.advice},
        "note_zh": c.note,
        "public_url": c.public_url,
    }


@router.put("/service-cards/{grid_code}")
def put_service_card(
    db: SessionDep, p: Planner, grid_code: str, body: ServiceCardUpdate
) -> dict[str, Any]:
    grid = card_service.grid_or_404(db, grid_code)
    card_service.update(db, grid=grid, data=body, actor_name=p.display_name, now=utcnow())
    return get_service_card(db, p, grid_code)


@router.get("/board")
def flood_board(db: SessionDep, _: Reader) -> dict[str, Any]:
    """Everything the command map shows, positions in the basemap's datum; poll it."""
    return board_service.board(db, now=utcnow(), datum=map_datum())
