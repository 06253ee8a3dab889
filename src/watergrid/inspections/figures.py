"""Campaign figures and their Excel export. Definitions (docs/inspections.md has them too):

  targets              targets of the campaign (in the row's group)
  inspected            targets with an initial inspection
  coverage             inspected / targets
  faulty targets       inspected targets with at least one finding not withdrawn
  fault rate           faulty targets / inspected
  findings             findings not withdrawn
  verified             findings that passed re-inspection
  rectification rate   verified / findings
  due or done          findings verified, or whose first rectification deadline has passed
                       by `as_of` (findings still waiting for their first round, e.g. a letter
                       not yet issued, have no deadline and are not yet due)
  on time              verified findings whose passing fix was reported (or seen, at the
                       re-inspection) no later than the deadline of their first round
  on-time rate         on time / due or done
  open overdue         findings being rectified whose current round is past due and not
                       reported done

Rates are None when their denominator is 0. Withdrawn findings count nowhere."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import select
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.geo import service as geo_service
from watergrid.inspections import service
from watergrid.inspections.flows import local_time
from watergrid.inspections.models import Campaign, Finding, Rectification, Target
from watergrid.inspections.schemas import (
    METHOD_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
    FigureRow,
    Figures,
)
from watergrid.org.service import mask_mobile

NO_COMPANY = "（未登记物业公司）"


@dataclass(frozen=True)
class _T:
    id: int
    code: str
    name: str
    grid_id: int
    subdistrict_id: int
    company: str
    inspected: bool


@dataclass(frozen=True)
class _F:
    target_id: int
    state: str
    first_due_at: datetime | None
    on_time: bool | None
    method: str | None
    current_due: datetime | None
    current_open: bool


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _row(key: str, label: str, targets: list[_T], findings: list[_F], as_of: datetime) -> FigureRow:
    inspected = [t for t in targets if t.inspected]
    ids = {t.id for t in targets}
    live = [f for f in findings if f.target_id in ids]
    faulty = {f.target_id for f in live}
    verified = [f for f in live if f.state == "verified"]
    due_or_done = [
        f
        for f in live
        if f.state == "verified" or (f.first_due_at is not None and f.first_due_at <= as_of)
    ]
    on_time = [f for f in verified if f.on_time]
    overdue = [
        f
        for f in live
        if f.state == "rectifying"
        and f.current_open
        and f.current_due is not None
        and f.current_due < as_of
    ]
    return FigureRow(
        key=key,
        label=label,
        targets=len(targets),
        inspected=len(inspected),
        coverage=_rate(len(inspected), len(targets)),
        faulty_targets=len(faulty),
        fault_rate=_rate(len(faulty), len(inspected)),
        findings=len(live),
        verified=len(verified),
        rectification_rate=_rate(len(verified), len(live)),
        due_or_done=len(due_or_done),
        on_time=len(on_time),
        on_time_rate=_rate(len(on_time), len(due_or_done)),
        open_overdue=len(overdue),
    )


def _grouped(
    targets: list[_T],
    findings: list[_F],
    as_of: datetime,
    key: Callable[[_T], str],
    label: Callable[[str], str],
) -> list[FigureRow]:
    groups: dict[str, list[_T]] = defaultdict(list)
    for t in targets:
        groups[key(t)].append(t)
    return [_row(k, label(k), groups[k], findings, as_of) for k in sorted(groups)]


def _load(db: Session, campaign: Campaign, actor: Principal | None) -> tuple[list[_T], list[_F]]:
    q = select(Target).where(Target.campaign_id == campaign.id)
    if actor is not None:
        grids = service.visible_grid_ids(db, actor=actor, campaign=campaign)
        if grids is not None:
            q = q.where(Target.grid_id.in_(grids))
    targets = [
        _T(
            t.id,
            t.code,
            t.name,
            t.grid_id,
            t.subdistrict_id,
            t.property_company.strip() or NO_COMPANY,
            t.inspected_at is not None,
        )
        for t in db.scalars(q)
    ]
    ids = {t.id for t in targets}
    rows = db.execute(
        select(Finding, Rectification)
        .outerjoin(Rectification, Rectification.id == Finding.rectification_id)
        .where(Finding.campaign_id == campaign.id, Finding.state != "void")
    ).all()
    findings = [
        _F(
            f.target_id,
            f.state,
            f.first_due_at,
            f.on_time,
            r.method if r is not None else f.proposed_method,
            r.due_at if r is not None else None,
            r is not None and r.closed_at is None and r.rectified_at is None,
        )
        for f, r in rows
        if f.target_id in ids
    ]
    return targets, findings


def campaign_figures(
    db: Session, *, campaign_id: int, actor: Principal | None, as_of: datetime
) -> Figures:
    """The figures over the targets `actor` may see (all of them for None, the system)."""
    campaign = service.get_campaign(db, campaign_id=campaign_id)
    targets, findings = _load(db, campaign, actor)
    names = geo_service.area_links(db).by_id
    by_method = Counter(f.method or "unassigned" for f in findings)
    return Figures(
        campaign_id=campaign.id,
        campaign_name=campaign.name,
        as_of=as_of,
        total=_row(campaign.code, campaign.name, targets, findings, as_of),
        by_subdistrict=_grouped(
            targets,
            findings,
            as_of,
            key=lambda t: names[t.subdistrict_id][1],
            label=lambda k: next(v[2] for v in names.values() if v[1] == k),
        ),
        by_grid=_grouped(
            targets,
            findings,
            as_of,
            key=lambda t: names[t.grid_id][1],
            label=lambda k: f"{k} " + next(v[2] for v in names.values() if v[1] == k),
        ),
        by_company=_grouped(targets, findings, as_of, key=lambda t: t.company, label=lambda k: k),
        by_method={m: by_method.get(m, 0) for m in (*METHOD_LABELS, "unassigned")},
    )


# -- Excel ------------------------------------------------------------------------------

HEADERS = (
    ("label", "分组", 26),
    ("targets", "排查对象数", 11),
    ("inspected", "已排查数", 10),
    ("coverage", "覆盖率", 9),
    ("faulty_targets", "问题对象数", 11),
    ("fault_rate", "问题率", 9),
    ("findings", "问题数", 8),
    ("verified", "已整改销号", 11),
    ("rectification_rate", "整改率", 9),
    ("due_or_done", "应完成整改数", 12),
    ("on_time", "按时整改数", 11),
    ("on_time_rate", "按时整改率", 11),
    ("open_overdue", "超期未整改", 11),
)
PERCENT = {"coverage", "fault_rate", "rectification_rate", "on_time_rate"}
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="FDE7EA")


def _sheet(wb: Workbook, title: str, rows: Iterable[FigureRow], first: bool = False) -> None:
    ws = wb.active if first else wb.create_sheet()
    assert ws is not None
    ws.title = title
    for col, (_, head, width) in enumerate(HEADERS, start=1):
        c = ws.cell(row=1, column=col, value=head)
        c.font, c.fill = _BOLD, _HEAD_FILL
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        ws.column_dimensions[get_column_letter(col)].width = width
    for r, row in enumerate(rows, start=2):
        data = row.model_dump()
        for col, (key, _, _) in enumerate(HEADERS, start=1):
            c = ws.cell(row=r, column=col, value=data[key])
            if key in PERCENT:
                c.number_format = "0.0%"
    ws.freeze_panes = "B2"


def workbook(db: Session, *, figures: Figures, actor: Principal | None) -> bytes:
    """汇总 / 按街道 / 按网格 / 按物业公司 / 问题清单, one sheet each."""
    campaign = service.get_campaign(db, campaign_id=figures.campaign_id)
    wb = Workbook()
    _sheet(wb, "汇总", [figures.total], first=True)
    summary = wb["汇总"]
    summary.cell(row=4, column=1, value="统计截至").font = _BOLD
    summary.cell(row=4, column=2, value=local_time(figures.as_of))
    summary.cell(row=6, column=1, value="整改方式").font = _BOLD
    summary.cell(row=6, column=2, value="问题数").font = _BOLD
    for i, (method, n) in enumerate(figures.by_method.items(), start=7):
        summary.cell(row=i, column=1, value=METHOD_LABELS.get(method, ("未定", ""))[0])
        summary.cell(row=i, column=2, value=n)
    _sheet(wb, "按街道", figures.by_subdistrict)
    _sheet(wb, "按网格", figures.by_grid)
    _sheet(wb, "按物业公司", figures.by_company)
    _findings_sheet(db, wb, campaign, actor)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _findings_sheet(db: Session, wb: Workbook, campaign: Campaign, actor: Principal | None) -> None:
    ws = wb.create_sheet("问题清单")
    heads = [
        ("小区编号", 10),
        ("小区名称", 18),
        ("街道", 10),
        ("网格", 16),
        ("物业公司", 26),
        ("检查项", 40),
        ("严重程度", 9),
        ("问题描述", 36),
        ("整改方式", 10),
        ("责任单位", 26),
        ("联系电话", 14),
        ("整改期限", 17),
        ("状态", 12),
        ("复查时间", 17),
        ("按时整改", 9),
    ]
    for col, (h, w) in enumerate(heads, start=1):
        c = ws.cell(row=1, column=col, value=h)
        c.font, c.fill = _BOLD, _HEAD_FILL
        ws.column_dimensions[get_column_letter(col)].width = w
    names = geo_service.area_links(db).by_id
    q = (
        select(Finding, Target, Rectification)
        .join(Target, Target.id == Finding.target_id)
        .outerjoin(Rectification, Rectification.id == Finding.rectification_id)
        .where(Finding.campaign_id == campaign.id)
        .order_by(Target.code, Finding.id)
    )
    if actor is not None:
        grids = service.visible_grid_ids(db, actor=actor, campaign=campaign)
        if grids is not None:
            q = q.where(Target.grid_id.in_(grids))
    for r, (f, t, rect) in enumerate(db.execute(q).all(), start=2):
        values = [
            t.code,
            t.name,
            names[t.subdistrict_id][2],
            f"{names[t.grid_id][1]} {names[t.grid_id][2]}",
            t.property_company,
            f.item_text,
            SEVERITY_LABELS[f.severity][0],
            f.note,
            METHOD_LABELS[rect.method][0] if rect else "",
            rect.responsible_party if rect else "",
            mask_mobile(rect.responsible_phone) if rect and rect.responsible_phone else "",
            local_time(rect.due_at) if rect else "",
            STATE_LABELS[f.state][0],
            local_time(f.verified_at) if f.verified_at else "",
            {True: "是", False: "否", None: ""}[f.on_time],
        ]
        for col, v in enumerate(values, start=1):
            ws.cell(row=r, column=col, value=v)
    ws.freeze_panes = "C2"
