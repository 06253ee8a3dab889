"""KPI REST routes under /api/v1/kpi: thin — gate, scope check, call the service."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.db import utcnow
from watergrid.deps import SessionDep
from watergrid.kpi import attack_map, exports, service, visits
from watergrid.kpi import jobs as _jobs  # noqa: F401  (registers the catch-up timer)
from watergrid.kpi.definitions import DIMS, METRICS, RANKABLE
from watergrid.kpi.facts import local_day
from watergrid.kpi.schemas import (
    DrillItem,
    DrillPage,
    FiguresRead,
    MilestoneDone,
    MilestoneIn,
    RankingRow,
    ScopeRef,
    TaskCreate,
    TaskRead,
    TeamSet,
    TrendPoint,
    VisitCount,
    VisitCreate,
    VisitRead,
)

router = APIRouter(prefix="/api/v1/kpi", tags=["kpi"])
Reader = Annotated[Principal, Depends(allow("kpi.read"))]
Exporter = Annotated[Principal, Depends(allow("kpi.export"))]
VisitReader = Annotated[Principal, Depends(allow("visits.read"))]
VisitWriter = Annotated[Principal, Depends(allow("visits.write"))]
TaskReader = Annotated[Principal, Depends(allow("tasks.read"))]
TaskWriter = Annotated[Principal, Depends(allow("tasks.write"))]
TaskClaimer = Annotated[Principal, Depends(allow("tasks.claim"))]
Dim = Annotated[str, Query(pattern="^(" + "|".join(DIMS) + ")$")]


def period_of(preset: str | None, start: date | None, end: date | None) -> service.Period:
    return service.period_for(preset=preset, start=start, end=end, today=local_day(utcnow()))


def _scope(p: Principal, dim: str | None, key: str | None) -> tuple[str, str]:
    if dim is None:
        return service.default_scope(p)
    service.check_scope(p, dim, key or "")
    return dim, key or ""


def _figures_read(
    db: Any,
    dim: str,
    key: str,
    f: service.Figures,
    period: service.Period,
    previous: service.Figures | None = None,
) -> FiguresRead:
    zh, en, code = service.names(db).of(dim, key)
    d = f.as_dict()
    return FiguresRead(
        scope=ScopeRef(dim=dim, key=key, name_zh=zh, name_en=en, code=code),
        start=period.start,
        end=period.end,
        values={m: d[m] for m in METRICS},
        rag=d["rag"],
        counts=d["counts"],
        previous={m: previous.value(m) for m in METRICS} if previous is not None else None,
    )


@router.get("/figures", response_model=FiguresRead)
def get_figures(
    db: SessionDep,
    principal: Reader,
    dim: Dim | None = None,
    key: str | None = None,
    period: str | None = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> FiguresRead:
    """The KPIs of one scope (default: the caller's own) over a period, with the month
    before for comparison when the period is a calendar month."""
    d, k = _scope(principal, dim, key)
    p = period_of(period, start, end)
    now = utcnow()
    f = service.figures(db, dim=d, key=k, start=p.start, end=p.end, now=now)
    prev = None
    if p.start.day == 1 and p.end == service.month_end(p.start):
        q = service.previous_month(p)
        prev = service.figures(db, dim=d, key=k, start=q.start, end=q.end, now=now)
    return _figures_read(db, d, k, f, p, prev)


@router.get("/trend", response_model=list[TrendPoint])
def get_trend(
    db: SessionDep,
    principal: Reader,
    dim: Dim | None = None,
    key: str | None = None,
    step: Annotated[str, Query(pattern="^(month|day)$")] = "month",
    period: str | None = "12m",
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> list[TrendPoint]:
    d, k = _scope(principal, dim, key)
    p = period_of(period, start, end)
    out = []
    for when, f in service.trend(
        db, dim=d, key=k, start=p.start, end=p.end, now=utcnow(), step=step
    ):
        x = f.as_dict()
        out.append(TrendPoint(period=when, values={m: x[m] for m in METRICS}, counts=x["counts"]))
    return out


@router.get("/rankings", response_model=list[RankingRow])
def get_ranking(
    db: SessionDep,
    principal: Reader,
    by: Annotated[str, Query(pattern="^(" + "|".join(RANKABLE) + ")$")] = "grid",
    metric: str = "response_rate",
    period: str | None = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> list[RankingRow]:
    """Grids, zones, departments, subdistricts or people ranked by a metric; only the rows
    the caller may see."""
    p = period_of(period, start, end)
    rows = service.ranking(
        db, dim=by, metric=metric, start=p.start, end=p.end, now=utcnow(), principal=principal
    )
    return [
        RankingRow(
            rank=r.rank or None,
            key=r.key,
            code=r.code,
            name_zh=r.name_zh,
            name_en=r.name_en,
            value=r.value,
            denominator=r.denominator,
            rag=r.rag,
        )
        for r in rows
    ]


@router.get("/orders", response_model=DrillPage)
def get_orders(
    db: SessionDep,
    principal: Reader,
    metric: str,
    outcome: str = "all",
    dim: Dim | None = None,
    key: str | None = None,
    period: str | None = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DrillPage:
    """The orders behind a figure (drill-down)."""
    d, k = _scope(principal, dim, key)
    p = period_of(period, start, end)
    rows, total = service.drill(
        db,
        metric=metric,
        outcome=outcome,
        dim=d,
        key=k,
        start=p.start,
        end=p.end,
        now=utcnow(),
        page=page,
        page_size=page_size,
    )
    return DrillPage(
        items=[
            DrillItem(
                id=r.order_id,
                number=r.number,
                state=r.state,
                category_code=r.category_code,
                source=r.source,
                due_at=r.due_at.isoformat() if r.due_at else None,
                outcome=r.outcome,
                hours=r.hours,
                rating=r.rating,
            )
            for r in rows
        ],
        total=total,
        page=page,
        page_size=page_size,
    )


@router.get("/export.xlsx")
def export_kpi(
    db: SessionDep,
    principal: Exporter,
    by: Annotated[list[str], Query()] = ["all", "subdistrict", "grid", "zone", "department"],  # noqa: B006
    period: str | None = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """The KPI table per dimension as an Excel workbook (one sheet each); rows outside the
    caller's scope are left out."""
    p = period_of(period, start, end)
    dims = [d for d in by if d in DIMS]
    if not service.is_global(principal):
        dims = [d for d in dims if d != "all"]
    path = exports.kpi_xlsx(db, dims=dims or ["grid"], period=p, now=utcnow(), principal=principal)
    name = f"kpi-{p.start.isoformat()}-{p.end.isoformat()}.xlsx"
    return StreamingResponse(
        exports.iter_file(path),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- visits -----------------------------------------------------------------------------------


@router.post("/visits", response_model=VisitRead, status_code=201)
def create_visit(db: SessionDep, principal: VisitWriter, body: VisitCreate) -> VisitRead:
    out = visits.record(db, principal=principal, data=body, now=utcnow())
    db.commit()
    return out


@router.get("/visits", response_model=list[VisitRead])
def list_visits(
    db: SessionDep,
    principal: VisitReader,
    period: str | None = "year",
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> list[VisitRead]:
    p = period_of(period, start, end)
    return visits.list_visits(db, principal=principal, start=p.start, end=p.end)[0]


@router.get("/visits/counts", response_model=list[VisitCount])
def visit_counts(
    db: SessionDep,
    principal: VisitReader,
    by: Annotated[str, Query(pattern="^(leader|zone|grid|month)$")] = "leader",
    period: str | None = "year",
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> list[VisitCount]:
    p = period_of(period, start, end)
    return visits.counts(db, principal=principal, start=p.start, end=p.end, by=by)


# -- the attack map ---------------------------------------------------------------------------


@router.get("/tasks", response_model=list[TaskRead])
def list_tasks(db: SessionDep, _: TaskReader, year: int | None = None) -> list[TaskRead]:
    today = local_day(utcnow())
    out: list[TaskRead] = []
    for _d, _zh, _en, tasks in attack_map.board(db, year=year or today.year, today=today):
        out.extend(tasks)
    return out


@router.post("/tasks", response_model=TaskRead, status_code=201)
def create_task(db: SessionDep, _: TaskWriter, body: TaskCreate) -> TaskRead:
    out = attack_map.create_task(db, data=body, now=utcnow())
    db.commit()
    return out


@router.post("/tasks/{task_id}/milestones", response_model=TaskRead, status_code=201)
def add_milestone(db: SessionDep, _: TaskWriter, task_id: int, body: MilestoneIn) -> TaskRead:
    out = attack_map.add_milestone(db, task_id=task_id, data=body, today=local_day(utcnow()))
    db.commit()
    return out


@router.post("/tasks/{task_id}/claim", response_model=TaskRead)
def claim_task(db: SessionDep, principal: TaskClaimer, task_id: int) -> TaskRead:
    out = attack_map.claim(db, task_id=task_id, principal=principal, now=utcnow())
    db.commit()
    return out


@router.put("/tasks/{task_id}/team", response_model=TaskRead)
def set_team(db: SessionDep, principal: TaskClaimer, task_id: int, body: TeamSet) -> TaskRead:
    out = attack_map.set_team(
        db, task_id=task_id, principal=principal, data=body, today=local_day(utcnow())
    )
    db.commit()
    return out


@router.post("/milestones/{milestone_id}/done", response_model=TaskRead)
def complete_milestone(
    db: SessionDep, principal: TaskClaimer, milestone_id: int, body: MilestoneDone
) -> TaskRead:
    out = attack_map.complete_milestone(
        db, milestone_id=milestone_id, principal=principal, data=body, today=local_day(utcnow())
    )
    db.commit()
    return out
