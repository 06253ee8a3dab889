"""Flood response pages: the command board, warnings, one-page plans (printable), the live
board of a call round, one's own calls, dispatch, the residents' service card (printable)
and the public pages behind its QR code and behind the answer links in messages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from watergrid.auth.deps import allow, public
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, forbidden
from watergrid.flood import calls as call_service
from watergrid.flood import cards as card_service
from watergrid.flood import dispatch
from watergrid.flood import plans as plan_service
from watergrid.flood import warnings as warning_service
from watergrid.flood.flood_api2 import LOCAL, Nudge, actor_of
from watergrid.flood.response_schemas import (
    CALL_STATE_ZH,
    KIND_ZH,
    LEVEL_RANK,
    LEVEL_ZH,
    ROLE_ZH,
    TASK_STATE_ZH,
    WarningIssue,
)
from watergrid.geo import service as geo_service
from watergrid.geo.pages import map_datum, tile_config
from watergrid.org.pages import qr_svg
from watergrid.web.render import check_csrf, render

router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(allow("flood.read"))]
Warner = Annotated[Principal, Depends(allow("flood.warn"))]
Answerer = Annotated[Principal, Depends(allow("flood.calls.answer"))]
Dispatcher = Annotated[Principal, Depends(allow("flood.dispatch"))]
Anyone = Annotated[Principal | None, Depends(public)]

VOCAB = {
    "level_zh": LEVEL_ZH,
    "role_zh": ROLE_ZH,
    "kind_zh": KIND_ZH,
    "task_zh": TASK_STATE_ZH,
    "call_zh": CALL_STATE_ZH,
}


def _page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    return render(request, template, status=status, v=VOCAB, **ctx)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/flood")
def flood_home(_: Reader) -> Response:
    return _see_other("/flood/board")


# -- the board ---------------------------------------------------------------------------------


@router.get("/flood/board", response_class=HTMLResponse)
def board_page(request: Request, _db: SessionDep, principal: Reader) -> HTMLResponse:
    config = {
        "api": "/api/v1/flood/board",
        "tiles": tile_config(),
        "datum": map_datum(),
        "refresh_s": 15,
    }
    return _page(request, "flood/board.html", config=config, can_warn=principal.can("flood.warn"))


# -- warnings ----------------------------------------------------------------------------------


@router.get("/flood/warnings", response_class=HTMLResponse)
def warnings_page(request: Request, db: SessionDep, principal: Reader) -> HTMLResponse:
    recent = warning_service.list_warnings(db, limit=60)
    return _page(
        request,
        "flood/warnings.html",
        active=[warning_service.to_read(db, w) for w in recent if w.state == "active"],
        recent=[warning_service.to_read(db, w) for w in recent if w.state != "active"][:30],
        suggestions=[
            warning_service.suggestion_read(db, s) for s in warning_service.suggestions(db)
        ],
        criteria=[warning_service.criterion_read(c) for c in warning_service.criteria(db)],
        subdistricts=geo_service.get_all(db, kind="subdistrict"),
        can_warn=principal.can("flood.warn"),
    )


@router.post("/flood/warnings")
def issue_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    nudge: Nudge,
    subdistrict_code: Annotated[str, Form()],
    level: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    exercise: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    check_csrf(request, csrf)
    if level not in ("yellow", "orange", "red"):
        raise AppError(422, "bad_level", "Unknown level", "预警级别无效")
    area = geo_service.get(db, code=subdistrict_code)
    if area is not None and not principal.covers_subdistrict(area.id):
        raise forbidden()
    w = warning_service.issue(
        db,
        data=WarningIssue.model_validate(
            {
                "subdistrict_code": subdistrict_code,
                "level": level,
                "exercise": bool(exercise),
                "reason": reason,
            }
        ),
        actor=actor_of(principal),
        now=utcnow(),
    )
    nudge()
    return _see_other(f"/flood/warnings/{w.id}")


@router.get("/flood/warnings/{warning_id}", response_class=HTMLResponse)
def warning_page(
    request: Request, db: SessionDep, principal: Reader, warning_id: int
) -> HTMLResponse:
    w = warning_service.get_or_404(db, warning_id=warning_id)
    rounds = call_service.list_rounds(db, trigger_kind="warning", trigger_id=w.id, limit=500)
    return _page(
        request,
        "flood/warning.html",
        w=warning_service.to_read(db, w, with_history=True),
        rounds=call_service.round_reads(db, rounds, now=utcnow()),
        can_warn=principal.can("flood.warn") and principal.covers_subdistrict(w.subdistrict_id),
    )


@router.post("/flood/warnings/{warning_id}/level")
def level_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    nudge: Nudge,
    warning_id: int,
    level: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    check_csrf(request, csrf)
    w = warning_service.get_or_404(db, warning_id=warning_id)
    if not principal.covers_subdistrict(w.subdistrict_id):
        raise forbidden()
    if level not in ("yellow", "orange", "red"):
        raise AppError(422, "bad_level", "Unknown level", "预警级别无效")
    warning_service.change_level(
        db, warning_id=w.id, level=level, actor=actor_of(principal), reason=reason, now=utcnow()
    )
    nudge()
    return _see_other(f"/flood/warnings/{w.id}")


@router.post("/flood/warnings/{warning_id}/lift")
def lift_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    warning_id: int,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    check_csrf(request, csrf)
    w = warning_service.get_or_404(db, warning_id=warning_id)
    if not principal.covers_subdistrict(w.subdistrict_id):
        raise forbidden()
    warning_service.lift(
        db, warning_id=w.id, actor=actor_of(principal), reason=reason, now=utcnow()
    )
    return _see_other(f"/flood/warnings/{w.id}")


@router.post("/flood/suggestions/{suggestion_id}/{decision}")
def suggestion_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    nudge: Nudge,
    suggestion_id: int,
    decision: str,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    check_csrf(request, csrf)
    now = utcnow()
    if decision == "accept":
        w = warning_service.accept_suggestion(
            db, suggestion_id=suggestion_id, actor=actor_of(principal), reason=reason, now=now
        )
        nudge()
        return _see_other(f"/flood/warnings/{w.id}")
    if decision == "dismiss":
        warning_service.dismiss_suggestion(
            db, suggestion_id=suggestion_id, actor=actor_of(principal), reason=reason, now=now
        )
        return _see_other("/flood/warnings")
    raise AppError(404, "not_found", "Unknown decision", "页面不存在")


@router.get("/f/warnings", response_class=HTMLResponse)
def public_warnings(request: Request, db: SessionDep, _: Anyone) -> HTMLResponse:
    """The signals in force, for the public (drills are not shown)."""
    active = warning_service.list_warnings(db, active_only=True, exercise=False)
    return _page(
        request,
        "flood/public_warnings.html",
        active=[warning_service.to_read(db, w) for w in active],
    )


# -- plans -------------------------------------------------------------------------------------


@router.get("/flood/plans", response_class=HTMLResponse)
def plans_page(
    request: Request,
    db: SessionDep,
    _: Reader,
    kind: str | None = None,
    subdistrict: str | None = None,
) -> HTMLResponse:
    sub_id = None
    if subdistrict:
        sub_id = geo_service.get_or_404(db, code=subdistrict, kind="subdistrict").id
    plans = plan_service.get_all(db, kind=kind if kind in KIND_ZH else None, subdistrict_id=sub_id)
    today = utcnow().astimezone(LOCAL).date()
    return _page(
        request,
        "flood/plans.html",
        plans=plan_service.summaries(db, plans),
        kind=kind,
        subdistrict=subdistrict,
        subdistricts=geo_service.get_all(db, kind="subdistrict"),
        today=today,
    )


@router.get("/flood/plans/{code}", response_class=HTMLResponse)
def plan_page(
    request: Request, db: SessionDep, principal: Reader, code: str, version: int | None = None
) -> HTMLResponse:
    plan = plan_service.get_or_404(db, code=code)
    today = utcnow().astimezone(LOCAL).date()
    row = plan_service.version_row(db, plan=plan, number=version)
    read = plan_service.version_read(
        db, plan=plan, version=row, full_contacts=principal.can("people.contacts"), today=today
    )
    summary = plan_service.summaries(db, [plan])[0]
    rounds = call_service.list_rounds(db, plan_id=plan.id, limit=10)
    levels = sorted(read.body.levels.items(), key=lambda kv: LEVEL_RANK[kv[0]])
    return _page(
        request,
        "flood/plan.html",
        plan=summary,
        ver=read,
        levels=levels,
        current=row.version == plan.current_version,
        versions=list(range(1, plan.current_version + 1)),
        rounds=call_service.round_reads(db, rounds, now=utcnow()),
        can_drill=principal.can("flood.warn"),
        printed_at=utcnow(),
    )


@router.post("/flood/plans/{code}/drill")
def drill_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    nudge: Nudge,
    code: str,
    level: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    plan = plan_service.get_or_404(db, code=code)
    if level not in LEVEL_RANK:
        raise AppError(422, "bad_level", "Unknown level", "级别无效")
    rnd = call_service.start_round(
        db,
        plan=plan,
        level=level,
        trigger=call_service.Trigger("drill", None, f"{plan.name_zh}演练", True),
        started_by_user_id=principal.user_id,
        now=utcnow(),
    )
    if rnd is None:
        raise AppError(409, "no_round", "Nothing to call", "该级别无需叫应，或同级演练正在进行")
    nudge()
    return _see_other(f"/flood/rounds/{rnd.id}")


# -- call rounds and one's own calls -----------------------------------------------------------


@router.get("/flood/rounds/{round_id}", response_class=HTMLResponse)
def round_page(request: Request, db: SessionDep, principal: Reader, round_id: int) -> HTMLResponse:
    rnd = call_service.get_round_or_404(db, round_id=round_id)
    now = utcnow()
    return _page(
        request,
        "flood/round.html",
        r=call_service.round_reads(db, [rnd], now=now, with_calls=True)[0],
        events=call_service.round_events(db, round_id=round_id)[-60:],
        can_warn=principal.can("flood.warn"),
    )


@router.post("/flood/rounds/{round_id}/close")
def close_round_form(
    request: Request,
    db: SessionDep,
    principal: Warner,
    round_id: int,
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_csrf(request, csrf)
    call_service.get_round_or_404(db, round_id=round_id)
    call_service.end_round(
        db,
        round_id=round_id,
        state="closed",
        reason=reason or "值班员结束",
        now=utcnow(),
        actor_user_id=principal.user_id,
    )
    return _see_other(f"/flood/rounds/{round_id}")


@router.get("/flood/calls", response_class=HTMLResponse)
def my_calls_page(request: Request, db: SessionDep, principal: Answerer) -> HTMLResponse:
    pairs = (
        call_service.open_calls_for(db, person_id=principal.person_id)
        if principal.person_id
        else []
    )
    now = utcnow()
    items = [
        (call_service.round_reads(db, [r], now=now)[0], call_service.call_reads(db, r, [c], now)[0])
        for r, c in pairs
    ]
    return _page(
        request, "flood/my_calls.html", items=items, has_person=principal.person_id is not None
    )


@router.post("/flood/calls/{call_id}/answer")
def answer_form(
    request: Request,
    db: SessionDep,
    principal: Answerer,
    call_id: int,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    call_service.answer_as_person(
        db,
        call_id=call_id,
        person_id=principal.person_id,
        actor_user_id=principal.user_id,
        via="page",
        now=utcnow(),
    )
    return _see_other("/flood/calls?answered=1")


@router.get("/a/{token}", response_class=HTMLResponse)
def answer_link(request: Request, db: SessionDep, _: Anyone, token: str) -> HTMLResponse:
    """The link in a call message. Opening it only shows the call: link checkers and chat
    previews open links too, so answering takes a tap (a POST)."""
    rnd, call, who = call_service.preview_token(db, token=token)
    return _page(request, "flood/answer.html", r=rnd, call=call, who=who, token=token, result=None)


@router.post("/a/{token}", response_class=HTMLResponse)
def answer_link_post(request: Request, db: SessionDep, _: Anyone, token: str) -> HTMLResponse:
    # No CSRF token: the link's own token is the secret, and answering twice is harmless.
    result = call_service.answer_with_token(db, token=token, via="link", now=utcnow())
    rnd, call, who = call_service.preview_token(db, token=token)
    return _page(
        request, "flood/answer.html", r=rnd, call=call, who=who, token=token, result=result
    )


# -- dispatch ----------------------------------------------------------------------------------


@router.get("/flood/dispatch", response_class=HTMLResponse)
def dispatch_page(request: Request, db: SessionDep, principal: Reader) -> HTMLResponse:
    now = utcnow()
    tasks = dispatch.to_read(
        db, dispatch.list_tasks(db, open_only=False, since=now.replace(hour=0, minute=0))
    )
    crews = dispatch.available_crews(db)
    return _page(
        request,
        "flood/dispatch.html",
        tasks=tasks,
        free=[(c.code, c.name_zh) for c in crews],
        can_dispatch=principal.can("flood.dispatch"),
    )


@router.post("/flood/tasks/{task_id}/status")
def task_status_form(
    request: Request,
    db: SessionDep,
    principal: Dispatcher,
    task_id: int,
    state: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    check_csrf(request, csrf)
    if state not in ("en_route", "on_site", "pumping", "done", "cancelled"):
        raise AppError(422, "bad_state", "Unknown state", "状态无效")
    dispatch.set_status(
        db,
        task_id=task_id,
        state=state,
        actor_user_id=principal.user_id,
        actor_name=principal.display_name,
        reason=reason,
        now=utcnow(),
    )
    return _see_other(f"/flood/dispatch#task-{task_id}")


@router.post("/flood/tasks/{task_id}/reassign")
def task_reassign_form(
    request: Request,
    db: SessionDep,
    principal: Dispatcher,
    task_id: int,
    csrf: Annotated[str, Form()] = "",
    crew_code: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    check_csrf(request, csrf)
    dispatch.reassign(
        db,
        task_id=task_id,
        crew_code=crew_code or None,
        actor_user_id=principal.user_id,
        actor_name=principal.display_name,
        reason=reason,
        now=utcnow(),
    )
    return _see_other(f"/flood/dispatch#task-{task_id}")


# -- residents' service card -------------------------------------------------------------------


@router.get("/flood/cards/{grid_code}", response_class=HTMLResponse)
def service_card(request: Request, db: SessionDep, _: Reader, grid_code: str) -> HTMLResponse:
    grid = card_service.grid_or_404(db, grid_code)
    c = card_service.card(db, grid=grid, public=False)
    return _page(request, "flood/service_card.html", c=c, qr=qr_svg(c.public_url))


@router.get("/f/{grid_code}", response_class=HTMLResponse)
def service_landing(request: Request, db: SessionDep, _: Anyone, grid_code: str) -> HTMLResponse:
    """Where the card's QR code leads: open to anyone, personal numbers masked."""
    grid = card_service.grid_or_404(db, grid_code)
    c = card_service.card(db, grid=grid, public=True)
    return _page(request, "flood/card_landing.html", c=c)
