"""KPI pages: the dashboard, rankings, the orders behind a figure, the printable monthly
report, field visits and the annual KPI attack map. Thin: gate, scope, service, template."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.errors import AppError, FieldError
from watergrid.geo import service as geo_service
from watergrid.kpi import attack_map, exports, service, visits
from watergrid.kpi import jobs as _jobs  # noqa: F401  (registers the catch-up timer)
from watergrid.kpi.definitions import (
    DIM_LABELS,
    DIMS,
    DOMAINS,
    HEADLINE,
    METRICS,
    RANKABLE,
    TASK_STATUSES,
    rag,
)
from watergrid.kpi.facts import local_day
from watergrid.kpi.schemas import MilestoneDone, VisitCreate, VisitIssueIn
from watergrid.web.render import check_csrf, render
from watergrid.workorders.config import get_wo_settings

router = APIRouter(include_in_schema=False)
Reader = Annotated[Principal, Depends(allow("kpi.read"))]
Exporter = Annotated[Principal, Depends(allow("kpi.export"))]
VisitReader = Annotated[Principal, Depends(allow("visits.read"))]
VisitWriter = Annotated[Principal, Depends(allow("visits.write"))]
TaskReader = Annotated[Principal, Depends(allow("tasks.read"))]
TaskClaimer = Annotated[Principal, Depends(allow("tasks.claim"))]
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to")]
SECONDARY = (
    "rating_mean",
    "response_mean_h",
    "response_p90_h",
    "handling_mean_h",
    "handling_p90_h",
    "response_missed",
    "handling_missed",
    "volume",
)


def _period(
    preset: str | None, start: date | None, end: date | None, today: date
) -> service.Period:
    return service.period_for(preset=preset, start=start, end=end, today=today)


def _scope(p: Principal, dim: str | None, key: str | None) -> tuple[str, str]:
    if not dim:
        return service.default_scope(p)
    service.check_scope(p, dim, key or "")
    return dim, key or ""


def _q(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "—"
    kind = METRICS[metric].kind
    if kind == "rate":
        return f"{v * 100:.2f}%"
    if kind == "hours":
        return f"{v:.1f}"
    if kind == "score":
        return f"{v:.2f}"
    return f"{int(v):,}"


def _pct(v: float | None) -> float | None:
    return round(v * 100, 2) if v is not None else None


def _delta(metric: str, now: float | None, before: float | None) -> tuple[str, str]:
    """(text, direction) of the change from the previous period; direction is good/bad/''."""
    if now is None or before is None:
        return ("", "")
    m = METRICS[metric]
    d = now - before
    if abs(d) < 1e-12:
        return ("持平", "")
    good = (d > 0) == m.higher_is_better
    if m.kind == "rate":
        text = f"{'▲' if d > 0 else '▼'} {abs(d) * 100:.2f} 个百分点"
    elif m.kind == "count":
        text = f"{'▲' if d > 0 else '▼'} {abs(int(d)):,}"
    else:
        text = f"{'▲' if d > 0 else '▼'} {abs(d):.2f}"
    return (text, "good" if good else "bad")


def _preset(period: str | None, start: date | None, end: date | None) -> str:
    """The preset a page shows as chosen: none asked for and no dates means this month."""
    return period or ("" if start or end else "month")


def _common(
    request: Request,
    db: Session,
    principal: Principal,
    dim: str,
    key: str,
    period: service.Period,
    preset: str | None,
) -> dict[str, Any]:
    nm = service.names(db)
    zh, en, code = nm.of(dim, key)
    return {
        "dim": dim,
        "key": key,
        "scope_name": zh,
        "scope_code": code,
        "period": period,
        "preset": preset or "",
        "presets": service.PRESETS,
        "scopes": service.scopes_for(principal, db),
        "fmt": _fmt,
        "metrics": METRICS,
        "dim_labels": DIM_LABELS,
        "q": _q,
        "can_export": principal.can("kpi.export"),
    }


@router.get("/kpi", response_class=HTMLResponse)
def dashboard(
    request: Request,
    db: SessionDep,
    principal: Reader,
    dim: str | None = None,
    key: str | None = None,
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    now = utcnow()
    today = local_day(now)
    d, k = _scope(principal, dim, key)
    p = _period(period, start, end, today)
    f = service.figures(db, dim=d, key=k, start=p.start, end=p.end, now=now)
    whole_month = p.start.day == 1 and p.end == service.month_end(p.start)
    prev_p = service.previous_month(p) if whole_month else _period_before(p)
    prev = service.figures(db, dim=d, key=k, start=prev_p.start, end=prev_p.end, now=now)
    tiles = []
    for m in HEADLINE + SECONDARY:
        v, pv = f.value(m), prev.value(m)
        delta, direction = _delta(m, v, pv)
        tiles.append(
            {
                "metric": m,
                "name": METRICS[m].name_zh,
                "value": _fmt(m, v),
                "raw": v,
                "rag": rag(m, v),
                "delta": delta,
                "direction": direction,
                "target": METRICS[m].green,
                "headline": m in HEADLINE,
            }
        )
    year_start = (p.end.replace(day=1) - timedelta(days=334)).replace(day=1)
    series = service.trend(
        db, dim=d, key=k, start=year_start, end=service.month_end(p.end), now=now
    )
    chart = {
        "months": [s.strftime("%Y-%m") for s, _ in series],
        "rates": {
            m: [_pct(x.value(m)) for _, x in series]
            for m in ("response_rate", "handling_rate", "self_discovery_rate", "satisfaction_rate")
        },
        "names": {m: METRICS[m].name_zh for m in METRICS},
        "volume": [x["created"] for _, x in series],
        "patrol": [x["patrol"] for _, x in series],
        "targets": {m: (METRICS[m].green or 0) * 100 for m in ("response_rate", "handling_rate")},
    }
    overdue = service.overdue_now(db, dim=d, key=k, now=now)
    ctx = _common(request, db, principal, d, k, p, _preset(period, start, end))
    return render(
        request,
        "kpi/dashboard.html",
        figures=f,
        counts=f.as_dict()["counts"],
        tiles=tiles,
        chart=chart,
        overdue=overdue,
        previous=prev_p,
        **ctx,
    )


def _period_before(p: service.Period) -> service.Period:
    """The period of the same length just before `p` (for comparison)."""
    return service.Period(p.start - timedelta(days=p.days), p.start - timedelta(days=1))


@router.get("/kpi/rankings", response_class=HTMLResponse)
def rankings(
    request: Request,
    db: SessionDep,
    principal: Reader,
    by: str = "grid",
    metric: str = "response_rate",
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    if by not in RANKABLE:
        raise AppError(422, "bad_dim", f"Rank by one of {RANKABLE}", "排名维度无效")
    if metric not in METRICS:
        raise AppError(422, "bad_metric", f"Unknown metric {metric}", f"未知的指标：{metric}")
    now = utcnow()
    p = _period(period, start, end, local_day(now))
    rows = service.ranking(
        db, dim=by, metric=metric, start=p.start, end=p.end, now=now, principal=principal
    )
    d, k = service.default_scope(principal)
    ctx = _common(request, db, principal, d, k, p, _preset(period, start, end))
    chart = {
        "names": [r.name_zh for r in rows if r.value is not None][:40],
        "values": [
            round(r.value * 100, 2) if METRICS[metric].kind == "rate" else r.value
            for r in rows
            if r.value is not None
        ][:40],
        "rag": [r.rag for r in rows if r.value is not None][:40],
        "rate": METRICS[metric].kind == "rate",
        "target": (METRICS[metric].green or 0) * 100 if METRICS[metric].kind == "rate" else None,
    }
    return render(
        request,
        "kpi/rankings.html",
        rows=rows,
        by=by,
        metric=metric,
        rankable=RANKABLE,
        chart=chart,
        **ctx,
    )


@router.get("/kpi/orders", response_class=HTMLResponse)
def orders(
    request: Request,
    db: SessionDep,
    principal: Reader,
    metric: str,
    outcome: str = "all",
    dim: str | None = None,
    key: str | None = None,
    period: str | None = None,
    start: From = None,
    end: To = None,
    page: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    now = utcnow()
    d, k = _scope(principal, dim, key)
    p = _period(period, start, end, local_day(now))
    rows, total = service.drill(
        db,
        metric=metric,
        outcome=outcome,
        dim=d,
        key=k,
        start=p.start,
        end=p.end,
        now=now,
        page=page,
        page_size=50,
    )
    ctx = _common(request, db, principal, d, k, p, _preset(period, start, end))
    nm = service.names(db)
    link = _order_link(request)
    return render(
        request,
        "kpi/orders.html",
        rows=rows,
        total=total,
        page=page,
        page_size=50,
        metric=metric,
        outcome=outcome,
        names=nm,
        order_link=link,
        query=_q(metric=metric, outcome=outcome, dim=d, key=k, **{"from": p.start, "to": p.end}),
        **ctx,
    )


def _order_link(request: Request) -> str | None:
    """Where an order's own page lives, when the work-order pages are mounted."""
    for r in request.app.routes:
        path = getattr(r, "path", "")
        if path in ("/orders/{order_id}", "/orders/{number}"):
            return "/orders/{}" if "order_id" in path else "/orders/{number}"
    return None


def _export_scope(principal: Principal, dim: str | None, key: str | None) -> tuple[str, str]:
    return _scope(principal, dim, key)


@router.get("/kpi/orders.xlsx")
def orders_xlsx(
    db: SessionDep,
    principal: Exporter,
    metric: str,
    outcome: str = "all",
    dim: str | None = None,
    key: str | None = None,
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    now = utcnow()
    d, k = _export_scope(principal, dim, key)
    p = _period(period, start, end, local_day(now))
    where = service.drill_where(
        metric=metric, outcome=outcome, dim=d, key=k, start=p.start, end=p.end, now=now
    )
    path = exports.orders_xlsx(db, metric=metric, where=where, now=now)
    return StreamingResponse(
        exports.iter_file(path),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={
            "Content-Disposition": f'attachment; filename="orders-{metric}-{p.start}-{p.end}.xlsx"'
        },
    )


@router.get("/kpi/orders.csv")
def orders_csv(
    db: SessionDep,
    principal: Exporter,
    metric: str,
    outcome: str = "all",
    dim: str | None = None,
    key: str | None = None,
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    now = utcnow()
    d, k = _export_scope(principal, dim, key)
    p = _period(period, start, end, local_day(now))
    where = service.drill_where(
        metric=metric, outcome=outcome, dim=d, key=k, start=p.start, end=p.end, now=now
    )
    return StreamingResponse(
        exports.orders_csv(db, metric=metric, where=where, now=now),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="orders-{metric}-{p.start}-{p.end}.csv"'
        },
    )


@router.get("/kpi/export.xlsx")
def kpi_xlsx(
    db: SessionDep,
    principal: Exporter,
    by: Annotated[list[str] | None, Query()] = None,
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    now = utcnow()
    p = _period(period, start, end, local_day(now))
    dims = [x for x in (by or ["all", "subdistrict", "zone", "grid", "department"]) if x in DIMS]
    if not service.is_global(principal):
        dims = [x for x in dims if x != "all"] or ["grid"]
    path = exports.kpi_xlsx(db, dims=dims, period=p, now=now, principal=principal)
    return StreamingResponse(
        exports.iter_file(path),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="kpi-{p.start}-{p.end}.xlsx"'},
    )


@router.get("/kpi/export.csv")
def kpi_csv(
    db: SessionDep,
    principal: Exporter,
    by: str = "grid",
    period: str | None = None,
    start: From = None,
    end: To = None,
) -> Response:
    if by not in DIMS:
        raise AppError(422, "bad_dim", f"Unknown dimension {by}", f"未知的统计维度：{by}")
    now = utcnow()
    p = _period(period, start, end, local_day(now))
    rows = exports.kpi_rows(db, dim=by, start=p.start, end=p.end, now=now, principal=principal)
    return StreamingResponse(
        exports.kpi_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="kpi-{by}-{p.start}-{p.end}.csv"'},
    )


@router.get("/kpi/report", response_class=HTMLResponse)
def report(
    request: Request,
    db: SessionDep,
    principal: Reader,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
) -> Response:
    """The printable monthly report of the caller's scope (the district for leaders)."""
    now = utcnow()
    today = local_day(now)
    if month:
        y, mo = (int(x) for x in month.split("-"))
        if not 1 <= mo <= 12:
            raise AppError(
                422,
                "bad_month",
                "Month must be 01-12",
                "月份无效",
                [FieldError("month", "01-12", "月份无效")],
            )
        p = service.month_of(date(y, mo, 1))
    else:
        p = (
            service.previous_month(service.month_of(today))
            if today.day < 5
            else service.month_of(today)
        )
    d, k = service.default_scope(principal)
    f = service.figures(db, dim=d, key=k, start=p.start, end=p.end, now=now)
    prev_p = service.previous_month(p)
    prev = service.figures(db, dim=d, key=k, start=prev_p.start, end=prev_p.end, now=now)
    tables = {}
    for by in ("subdistrict", "zone", "department"):
        tables[by] = service.ranking(
            db,
            dim=by,
            metric="handling_rate",
            start=p.start,
            end=p.end,
            now=now,
            principal=principal,
        )
    grids = service.ranking(
        db,
        dim="grid",
        metric="response_rate",
        start=p.start,
        end=p.end,
        now=now,
        principal=principal,
    )
    ranked = [r for r in grids if r.rank]
    # The bottom five are those doing worse than the best; when all tie there is no bottom.
    behind = [r for r in ranked if ranked and r.value != ranked[0].value]
    visit_counts = visits.counts(db, principal=principal, start=p.start, end=p.end, by="zone")
    board = attack_map.board(db, year=p.end.year, today=min(today, p.end))
    all_tasks = [t for _, _, _, ts in board for t in ts]
    ctx = _common(request, db, principal, d, k, p, None)
    rows = []
    for m in HEADLINE + SECONDARY:
        rows.append(
            {
                "name": METRICS[m].name_zh,
                "value": _fmt(m, f.value(m)),
                "previous": _fmt(m, prev.value(m)),
                "delta": _delta(m, f.value(m), prev.value(m))[0],
                "rag": rag(m, f.value(m)),
                "target": METRICS[m].green,
                "kind": METRICS[m].kind,
            }
        )
    return render(
        request,
        "kpi/report.html",
        rows=rows,
        counts=f.as_dict()["counts"],
        tables=tables,
        top=ranked[:5],
        bottom=list(reversed(behind[-5:])),
        visit_counts=visit_counts,
        tasks=attack_map.summary(all_tasks),
        late_tasks=[t for t in all_tasks if t.status in ("late", "at_risk")],
        previous_period=prev_p,
        generated=now,
        month=p.start.strftime("%Y-%m"),
        **ctx,
    )


# -- field visits -----------------------------------------------------------------------------


@router.get("/kpi/visits", response_class=HTMLResponse)
def visit_list(
    request: Request,
    db: SessionDep,
    principal: VisitReader,
    period: str | None = "year",
    start: From = None,
    end: To = None,
    saved: int | None = None,
) -> Response:
    now = utcnow()
    today = local_day(now)
    p = _period(period, start, end, today)
    items, total = visits.list_visits(db, principal=principal, start=p.start, end=p.end, limit=100)
    by_leader = visits.counts(db, principal=principal, start=p.start, end=p.end, by="leader")
    by_zone = visits.counts(db, principal=principal, start=p.start, end=p.end, by="zone")
    by_month = visits.counts(db, principal=principal, start=p.start, end=p.end, by="month")
    grids = [
        g
        for g in geo_service.get_all(db, kind="grid")
        if principal.district
        or principal.roles & {"admin", "bureau_leader", "duty_officer"}
        or g.id in principal.reach_grid_ids
        or g.id in principal.grid_ids
    ]
    zones = geo_service.get_all(db, kind="zone")
    return render(
        request,
        "kpi/visits.html",
        items=items,
        total=total,
        by_leader=by_leader,
        by_zone=by_zone,
        by_month=by_month,
        period=p,
        preset=period,
        grids=grids,
        zones=zones,
        today=today,
        can_write=principal.can("visits.write"),
        saved=saved,
        presets=service.PRESETS,
        q=_q,
        chart={
            "months": [c.key for c in by_month],
            "visits": [c.visits for c in by_month],
            "issues": [c.issues for c in by_month],
        },
    )


@router.post("/kpi/visits")
def visit_create(
    request: Request,
    db: SessionDep,
    principal: VisitWriter,
    visit_date: Annotated[str, Form()],
    grid_code: Annotated[str, Form()],
    zone_code: Annotated[str, Form()] = "",
    findings: Annotated[str, Form(max_length=4000)] = "",
    issues: Annotated[str, Form(max_length=20000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The visit form: one issue per line, optionally starting with an order number
    ("GM-2026-000123 现场协调……")."""
    check_csrf(request, csrf)
    parsed: list[VisitIssueIn] = []
    for line in issues.splitlines():
        line = line.strip()
        if not line:
            continue
        number, _, rest = line.partition(" ")
        if number.upper().startswith(f"{get_wo_settings().number_prefix}-") and rest.strip():
            parsed.append(
                VisitIssueIn(summary=rest.strip()[:300], order_number=number.upper(), link="moved")
            )
        else:
            parsed.append(VisitIssueIn(summary=line[:300], order_number=None, link=None))
    try:
        data = VisitCreate(
            visit_date=date.fromisoformat(visit_date),
            grid_code=grid_code,
            zone_code=zone_code or None,
            leader_code=None,
            findings=findings,
            issues=parsed,
        )
    except (ValueError, ValidationError):
        raise AppError(
            422,
            "invalid",
            "Invalid visit",
            "下沉记录有误：请检查日期和网格",
            [FieldError("visit_date", "invalid", "日期格式应为 2026-06-01")],
        ) from None
    v = visits.record(db, principal=principal, data=data, now=utcnow())
    db.commit()
    return RedirectResponse(f"/kpi/visits?saved={v.id}", status_code=303)


# -- the attack map ---------------------------------------------------------------------------


@router.get("/kpi/attack-map", response_class=HTMLResponse)
def attack_board(
    request: Request, db: SessionDep, principal: TaskReader, year: int | None = None
) -> Response:
    today = local_day(utcnow())
    y = year or today.year
    board = attack_map.board(db, year=y, today=today)
    tasks = [t for _, _, _, ts in board for t in ts]
    return render(
        request,
        "kpi/attack_map.html",
        board=board,
        year=y,
        today=today,
        summary=attack_map.summary(tasks),
        statuses=TASK_STATUSES,
        domains=DOMAINS,
        can_claim=principal.can("tasks.claim") and principal.person_id is not None,
        editable=attack_map.editable_ids(db, principal=principal, task_ids=[t.id for t in tasks]),
    )


@router.post("/kpi/attack-map/tasks/{task_id}/claim")
def attack_claim(
    request: Request,
    db: SessionDep,
    principal: TaskClaimer,
    task_id: int,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    t = attack_map.claim(db, task_id=task_id, principal=principal, now=utcnow())
    db.commit()
    return RedirectResponse(f"/kpi/attack-map?year={t.year}#task-{t.id}", status_code=303)


@router.post("/kpi/attack-map/milestones/{milestone_id}/done")
def attack_done(
    request: Request,
    db: SessionDep,
    principal: TaskClaimer,
    milestone_id: int,
    done_date: Annotated[str, Form()],
    evidence: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    try:
        data = MilestoneDone(done_date=date.fromisoformat(done_date), evidence=evidence)
    except (ValueError, ValidationError):
        raise AppError(
            422,
            "invalid",
            "Give the date and the evidence",
            "请填写完成日期和佐证材料",
            [FieldError("evidence", "required", "请填写佐证材料")],
        ) from None
    t = attack_map.complete_milestone(
        db, milestone_id=milestone_id, principal=principal, data=data, today=local_day(utcnow())
    )
    db.commit()
    return RedirectResponse(f"/kpi/attack-map?year={t.year}#task-{t.id}", status_code=303)
