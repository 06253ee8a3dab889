"""Reading the KPIs: figures for a scope and period, trends, rankings, the orders behind a
figure, and who may see which figures.

Everything reads kpi_daily (a few hundred rows per day at most) plus, when the period takes
in today, the facts of the deadlines falling due today (to split them at `now` into overdue
and not yet due). Work orders are read only to list the orders behind a figure.

Typed keyword-only functions taking a Session; they never write."""

from __future__ import annotations

import calendar as _calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.orm import Session

from watergrid.auth.principal import Principal
from watergrid.errors import AppError, FieldError, forbidden
from watergrid.kpi.definitions import (
    DIM_LABELS,
    DIMS,
    METRICS,
    N_BUCKETS,
    SOURCE_LABELS,
    percentile_from_buckets,
    rag,
)
from watergrid.kpi.facts import local_day
from watergrid.kpi.models import COUNTERS, OrderFact, kpi_daily
from watergrid.settings import get_settings

GLOBAL_ROLES = frozenset({"admin", "bureau_leader", "duty_officer"})
AREA_DIMS = ("subdistrict", "grid", "zone", "department", "person")
MAX_DAYS = 3 * 366


def _tz() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def day_start(day: date) -> datetime:
    """The instant a local day begins."""
    return datetime.combine(day, time(0), tzinfo=_tz())


# =====================================================================================
# periods
# =====================================================================================


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def label(self) -> str:
        if self.start.day == 1 and self.end == month_end(self.start):
            return f"{self.start.year}年{self.start.month}月"
        return f"{self.start.isoformat()} ~ {self.end.isoformat()}"


def month_end(d: date) -> date:
    return d.replace(day=_calendar.monthrange(d.year, d.month)[1])


def month_of(d: date) -> Period:
    return Period(d.replace(day=1), month_end(d))


def previous_month(p: Period) -> Period:
    return month_of(p.start.replace(day=1) - timedelta(days=1))


PRESETS = ("month", "last_month", "quarter", "year", "30d", "12m")


def period_for(
    *, preset: str | None = None, start: date | None = None, end: date | None = None, today: date
) -> Period:
    """A period from a preset or from explicit dates (inclusive). 422 on nonsense."""
    if start is not None or end is not None:
        s, e = start or (end or today).replace(day=1), end or today
        if e < s:
            raise AppError(
                422,
                "bad_period",
                "The period ends before it starts",
                "统计区间的结束日期早于开始日期",
                [FieldError("to", "before from", "结束日期早于开始日期")],
            )
        if (e - s).days > MAX_DAYS:
            raise AppError(
                422,
                "period_too_long",
                "At most three years at a time",
                "统计区间最长三年",
                [FieldError("from", "too long", "区间过长")],
            )
        return Period(s, e)
    p = preset or "month"
    if p == "month":
        return month_of(today)
    if p == "last_month":
        return previous_month(month_of(today))
    if p == "quarter":
        q0 = (today.month - 1) // 3 * 3 + 1
        s = date(today.year, q0, 1)
        return Period(s, month_end(date(today.year, q0 + 2, 1)))
    if p == "year":
        return Period(date(today.year, 1, 1), date(today.year, 12, 31))
    if p == "30d":
        return Period(today - timedelta(days=29), today)
    if p == "12m":
        first = (today.replace(day=1) - timedelta(days=335)).replace(day=1)
        return Period(first, month_end(today))
    raise AppError(
        422,
        "bad_period",
        f"Unknown period {p}",
        f"未知的统计区间：{p}",
        [FieldError("period", f"one of {PRESETS}", "统计区间无效")],
    )


# =====================================================================================
# figures
# =====================================================================================


@dataclass
class Figures:
    """Summed counters of a scope over a period, and the KPIs computed from them."""

    c: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return int(self.c.get(name, 0))

    # -- deadlines due in the period, as of the evaluation time ----------------------------
    @property
    def r_overdue_open(self) -> int:
        return self["r_open_past"] + self["r_open_today_overdue"]

    @property
    def r_pending(self) -> int:
        return self["r_open_today"] - self["r_open_today_overdue"] + self["r_open_future"]

    @property
    def r_due(self) -> int:
        """应响应数: deadlines in the period that were answered or have passed."""
        return self["r_met"] + self["r_missed"] + self.r_overdue_open

    @property
    def h_overdue_open(self) -> int:
        return self["h_open_past"] + self["h_open_today_overdue"]

    @property
    def h_pending(self) -> int:
        return self["h_open_today"] - self["h_open_today_overdue"] + self["h_open_future"]

    @property
    def h_due(self) -> int:
        """应处置数."""
        return self["h_met"] + self["h_missed"] + self.h_overdue_open

    @staticmethod
    def _ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    def value(self, metric: str) -> float | None:
        m = metric
        if m == "response_rate":
            return self._ratio(self["r_met"], self.r_due)
        if m == "handling_rate":
            return self._ratio(self["h_met"], self.h_due)
        if m == "closure_rate":
            return self._ratio(self["h_resolved"], self.h_due)
        if m == "self_discovery_rate":
            return self._ratio(self["patrol"], self["valid"])
        if m == "satisfaction_rate":
            return self._ratio(self["rating_good"], self["rated"])
        if m == "rating_mean":
            r = self._ratio(self["rating_sum"], self["rated"])
            return round(r, 2) if r is not None else None
        if m == "response_missed":
            return float(self["r_missed"] + self.r_overdue_open)
        if m == "handling_missed":
            return float(self["h_missed"] + self.h_overdue_open)
        if m == "overdue_open":
            return float(self.r_overdue_open + self.h_overdue_open)
        if m == "response_mean_h":
            r = self._ratio(self["r_secs"], self["r_timed"] * 3600)
            return round(r, 2) if r is not None else None
        if m == "handling_mean_h":
            r = self._ratio(self["h_secs"], self["h_timed"] * 3600)
            return round(r, 2) if r is not None else None
        if m == "response_p90_h":
            return percentile_from_buckets([self[f"r_b{i:02d}"] for i in range(N_BUCKETS)], 0.9)
        if m == "handling_p90_h":
            return percentile_from_buckets([self[f"h_b{i:02d}"] for i in range(N_BUCKETS)], 0.9)
        if m == "volume":
            return float(self["created"])
        raise KeyError(metric)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: self.value(m) for m in METRICS}
        out["rag"] = {m: rag(m, out[m]) for m in METRICS}
        out["counts"] = {
            "created": self["created"],
            "valid": self["valid"],
            "patrol": self["patrol"],
            "rejected": self["rejected"],
            "merged": self["merged"],
            "response_due": self.r_due,
            "response_met": self["r_met"],
            "response_missed_done": self["r_missed"],
            "response_overdue_open": self.r_overdue_open,
            "response_pending": self.r_pending,
            "handling_due": self.h_due,
            "handling_met": self["h_met"],
            "handling_missed_done": self["h_missed"],
            "handling_overdue_open": self.h_overdue_open,
            "handling_pending": self.h_pending,
            "resolved": self["h_resolved"],
            "reworks": self["reworks"],
            "extensions": self["extensions"],
            "rated": self["rated"],
            "rating_good": self["rating_good"],
        }
        return out


def _sum_columns(today: date) -> list[Any]:
    t = kpi_daily.c
    cols: list[Any] = [func.sum(t[c]).label(c) for c in COUNTERS if c not in ("r_open", "h_open")]
    for p in ("r", "h"):
        col = t[f"{p}_open"]
        cols += [
            func.sum(case((t.day < today, col), else_=0)).label(f"{p}_open_past"),
            func.sum(case((t.day == today, col), else_=0)).label(f"{p}_open_today"),
            func.sum(case((t.day > today, col), else_=0)).label(f"{p}_open_future"),
        ]
    return cols


def _fact_column(dim: str, cohort: str) -> Any:
    f = OrderFact
    if dim == "person":
        return {
            "response": f.responder_person_id,
            "handling": f.resolver_person_id,
            "created": f.creator_person_id,
            "rated": f.resolver_person_id,
        }[cohort]
    return {
        "subdistrict": f.subdistrict_id,
        "grid": f.grid_id,
        "zone": f.zone_id,
        "department": f.department_id,
        "category": f.group_code,
        "subcategory": f.category_code,
        "source": f.source,
    }[dim]


def _fact_key(dim: str, key: str) -> Any:
    return int(key) if dim in AREA_DIMS else key


def _today_overdue(
    db: Session, *, dim: str, keys: Sequence[str] | None, today: date, now: datetime
) -> dict[str, dict[str, int]]:
    """Per key: today's open deadlines already past `now` (response and handling)."""
    out: dict[str, dict[str, int]] = {}
    lo = day_start(today)
    for prefix, outcome_col, due_col, cohort in (
        ("r", OrderFact.resp_outcome, OrderFact.resp_due_at, "response"),
        ("h", OrderFact.hand_outcome, OrderFact.hand_due_at, "handling"),
    ):
        conds: list[ColumnElement[bool]] = [outcome_col == "open", due_col >= lo, due_col < now]
        if dim == "all":
            q = select(func.count()).where(*conds)
            out.setdefault("", {})[f"{prefix}_open_today_overdue"] = int(db.scalar(q) or 0)
            continue
        col = _fact_column(dim, cohort)
        if keys is not None:
            conds.append(col.in_([_fact_key(dim, k) for k in keys]))
        q2 = select(col, func.count()).where(*conds, col.is_not(None)).group_by(col)
        for k, n in db.execute(q2):
            out.setdefault(str(k), {})[f"{prefix}_open_today_overdue"] = int(n)
    return out


def figures_by_key(
    db: Session,
    *,
    dim: str,
    start: date,
    end: date,
    now: datetime,
    keys: Sequence[str] | None = None,
) -> dict[str, Figures]:
    """Figures of every key of a dimension (or of `keys`) over [start, end]."""
    if dim not in DIMS:
        raise AppError(422, "bad_dim", f"Unknown dimension {dim}", f"未知的统计维度：{dim}")
    today = local_day(now)
    t = kpi_daily.c
    conds = [t.dim == dim, t.day >= start, t.day <= end]
    if keys is not None:
        conds.append(t.key.in_(list(keys)))
    q = select(t.key, *_sum_columns(today)).where(*conds).group_by(t.key)
    out: dict[str, Figures] = {}
    for row in db.execute(q):
        m = row._mapping
        out[row.key] = Figures({k: int(v or 0) for k, v in m.items() if k != "key"})
    if start <= today <= end and out:
        for k, extra in _today_overdue(db, dim=dim, keys=list(out), today=today, now=now).items():
            if k in out:
                out[k].c.update(extra)
    return out


def figures(db: Session, *, dim: str, key: str, start: date, end: date, now: datetime) -> Figures:
    """Figures of one scope (dim 'all', key '' for the district) over [start, end]."""
    got = figures_by_key(db, dim=dim, start=start, end=end, now=now, keys=[key])
    return got.get(key, Figures())


def overdue_now(db: Session, *, dim: str, key: str, now: datetime) -> dict[str, int]:
    """Deadlines open and past due at `now`, whatever day they fell due on."""
    f = figures(db, dim=dim, key=key, start=date(2000, 1, 1), end=local_day(now), now=now)
    return {"response": f.r_overdue_open, "handling": f.h_overdue_open}


def trend(
    db: Session, *, dim: str, key: str, start: date, end: date, now: datetime, step: str = "month"
) -> list[tuple[date, Figures]]:
    """Figures per month (or per day) of one scope, oldest first; empty steps included."""
    today = local_day(now)
    t = kpi_daily.c
    q = (
        select(t.day, *_sum_columns(today))
        .where(t.dim == dim, t.key == key, t.day >= start, t.day <= end)
        .group_by(t.day)
    )
    by_day: dict[date, dict[str, int]] = {}
    for row in db.execute(q):
        by_day[row.day] = {k: int(v or 0) for k, v in row._mapping.items() if k != "day"}
    if start <= today <= end and today in by_day:
        extra = _today_overdue(db, dim=dim, keys=[key], today=today, now=now).get(key, {})
        by_day[today].update(extra)
    steps: list[date] = []
    d = start if step == "day" else start.replace(day=1)
    while d <= end:
        steps.append(d)
        d = d + timedelta(days=1) if step == "day" else month_end(d) + timedelta(days=1)
    out: dict[date, Figures] = {s: Figures() for s in steps}
    for day, counters in by_day.items():
        slot = out[day if step == "day" else day.replace(day=1)]
        for k, v in counters.items():
            slot.c[k] = slot.c.get(k, 0) + v
    return list(out.items())


# =====================================================================================
# names and scope
# =====================================================================================


@dataclass(frozen=True)
class Names:
    """Display names of keys, per dimension: (zh, en, code)."""

    by_dim: dict[str, dict[str, tuple[str, str, str]]]

    def of(self, dim: str, key: str) -> tuple[str, str, str]:
        if dim == "all":
            return ("全区", "District", "")
        return self.by_dim.get(dim, {}).get(key, (key, key, key))


def names(db: Session) -> Names:
    from watergrid.geo import locate as geo_locate
    from watergrid.org.categories import SERVICE_CATEGORIES
    from watergrid.org.models import Person
    from watergrid.workorders.models import Category

    v = geo_locate.view(db)
    by: dict[str, dict[str, tuple[str, str, str]]] = {d: {} for d in DIMS}
    for i, a in v.areas.items():
        if a.kind in ("subdistrict", "grid", "zone"):
            by[a.kind][str(i)] = (a.name_zh, a.name_en or a.name_zh, a.code)
    for i, dref in v.departments.items():
        by["department"][str(i)] = (dref.name_zh, dref.name_en or dref.name_zh, dref.code)
    for pid, pname, pcode in db.execute(select(Person.id, Person.name, Person.code)):
        by["person"][str(pid)] = (pname, pname, pcode)
    for code, (zh, en) in SERVICE_CATEGORIES.items():
        by["category"][code] = (zh, en, code)
    for c in db.scalars(select(Category)):
        by["subcategory"][c.code] = (c.name_zh, c.name_en, c.code)
    for code, (zh, en) in SOURCE_LABELS.items():
        by["source"][code] = (zh, en, code)
    return Names(by)


def is_global(p: Principal) -> bool:
    return p.district or bool(p.roles & GLOBAL_ROLES)


def visible_keys(p: Principal, dim: str) -> set[str] | None:
    """Keys of `dim` whose figures the principal may see; None means all of them. A grid
    member sees their grid, a chain leader or liaison their zone and its grids, a
    department its own figures, a subdistrict scope its subdistrict and grids, everyone
    their own person figures; leaders, the duty officer and administrators everything."""
    if is_global(p):
        return None
    keys: set[int] = set()
    if dim == "grid":
        keys = set(p.grid_ids) | set(p.reach_grid_ids)
    elif dim == "zone":
        keys = set(p.zone_ids)
    elif dim == "subdistrict":
        keys = set(p.subdistrict_ids)
    elif dim == "department":
        keys = set(p.department_ids)
    elif dim == "person":
        keys = {p.person_id} if p.person_id is not None else set()
    return {str(k) for k in keys}


def can_see(p: Principal, dim: str, key: str) -> bool:
    allowed = visible_keys(p, dim)
    return allowed is None or key in allowed


def check_scope(p: Principal, dim: str, key: str) -> None:
    if dim not in DIMS:
        raise AppError(422, "bad_dim", f"Unknown dimension {dim}", f"未知的统计维度：{dim}")
    if not can_see(p, dim, key):
        raise forbidden()


def default_scope(p: Principal) -> tuple[str, str]:
    """The scope a principal's dashboard opens on."""
    if is_global(p):
        return ("all", "")
    for dim, ids in (
        ("zone", p.zone_ids),
        ("department", p.department_ids),
        ("grid", p.grid_ids),
        ("subdistrict", p.subdistrict_ids),
    ):
        if ids:
            return (dim, str(min(ids)))
    if p.person_id is not None:
        return ("person", str(p.person_id))
    raise forbidden()


def scopes_for(p: Principal, db: Session) -> list[tuple[str, str, str]]:
    """(dim, key, label) of the scopes a principal may pick on the dashboard."""
    nm = names(db)
    out: list[tuple[str, str, str]] = []
    if is_global(p):
        out.append(("all", "", "全区"))
    for dim in ("subdistrict", "zone", "grid", "department"):
        allowed = visible_keys(p, dim)
        keys = (
            sorted(nm.by_dim[dim], key=lambda k: nm.of(dim, k)[2])
            if allowed is None
            else sorted(allowed, key=lambda k: nm.of(dim, k)[2])
        )
        for k in keys:
            zh, _, code = nm.of(dim, k)
            out.append((dim, k, f"{DIM_LABELS[dim][0]} · {zh}" + (f"（{code}）" if code else "")))
    return out


# =====================================================================================
# rankings
# =====================================================================================


@dataclass(frozen=True)
class RankRow:
    rank: int
    key: str
    name_zh: str
    name_en: str
    code: str
    value: float | None
    denominator: int
    rag: str
    figures: Figures


def ranking(
    db: Session,
    *,
    dim: str,
    metric: str,
    start: date,
    end: date,
    now: datetime,
    principal: Principal,
    min_denominator: int = 1,
) -> list[RankRow]:
    """Keys of `dim` ranked by `metric`, best first (ties by code); keys with fewer than
    `min_denominator` deadlines (or orders) due come last without a rank."""
    if metric not in METRICS:
        raise AppError(422, "bad_metric", f"Unknown metric {metric}", f"未知的指标：{metric}")
    allowed = visible_keys(principal, dim)
    nm = names(db)
    figs = figures_by_key(
        db,
        dim=dim,
        start=start,
        end=end,
        now=now,
        keys=sorted(allowed) if allowed is not None else None,
    )
    if dim in ("grid", "zone", "subdistrict", "department"):
        for k in nm.by_dim[dim]:  # every area or department appears, even without orders
            if (allowed is None or k in allowed) and k not in figs:
                figs[k] = Figures()
    m = METRICS[metric]

    def denom(f: Figures) -> int:
        if m.cohort == "response":
            return f.r_due
        if m.cohort == "handling":
            return f.h_due
        if m.cohort == "rated":
            return f["rated"]
        return f["valid"] if metric == "self_discovery_rate" else f["created"]

    rows = []
    for k, f in figs.items():
        zh, en, code = nm.of(dim, k)
        rows.append((k, zh, en, code, f.value(metric), denom(f), f))
    ranked = [r for r in rows if r[4] is not None and r[5] >= min_denominator]
    unranked = [r for r in rows if not (r[4] is not None and r[5] >= min_denominator)]
    sign = -1 if m.higher_is_better else 1
    ranked.sort(key=lambda r: (sign * (r[4] or 0), r[3]))
    unranked.sort(key=lambda r: r[3])
    out: list[RankRow] = []
    prev: float | None = None
    rank = 0
    for i, r in enumerate(ranked):
        if r[4] != prev:
            rank, prev = i + 1, r[4]
        out.append(RankRow(rank, r[0], r[1], r[2], r[3], r[4], r[5], rag(metric, r[4]), r[6]))
    for r in unranked:
        out.append(RankRow(0, r[0], r[1], r[2], r[3], r[4], r[5], "", r[6]))
    return out


# =====================================================================================
# the orders behind a figure
# =====================================================================================

DRILL_OUTCOMES = (
    "all",
    "met",
    "missed",
    "pending",
    "patrol",
    "reported",
    "rejected",
    "merged",
    "satisfied",
    "unsatisfied",
    "resolved",
    "unresolved",
)


@dataclass(frozen=True)
class DrillRow:
    order_id: int
    number: str
    state: str
    category_code: str
    source: str
    grid_id: int | None
    department_id: int | None
    created_at: datetime
    due_at: datetime | None
    outcome: str
    hours: float | None
    rating: int | None


def _drill_conditions(
    *, metric: str, outcome: str, dim: str, key: str, start: date, end: date, now: datetime
) -> list[ColumnElement[bool]]:
    f = OrderFact
    m = METRICS.get(metric)
    if m is None:
        raise AppError(422, "bad_metric", f"Unknown metric {metric}", f"未知的指标：{metric}")
    if outcome not in DRILL_OUTCOMES + ("missed_done", "overdue_open"):
        raise AppError(422, "bad_outcome", f"Unknown outcome {outcome}", f"未知的筛选：{outcome}")
    conds: list[ColumnElement[bool]] = []
    cohort = m.cohort
    if cohort in ("response", "handling"):
        oc, due, day = (
            (f.resp_outcome, f.resp_due_at, f.resp_due_day)
            if cohort == "response"
            else (f.hand_outcome, f.hand_due_at, f.hand_due_day)
        )
        conds += [day >= start, day <= end, oc.in_(("met", "missed", "open"))]
        passed = and_(oc == "open", due < now)
        if outcome == "met":
            conds.append(oc == "met")
        elif outcome == "missed":
            conds.append((oc == "missed") | passed)
        elif outcome == "missed_done":  # the two halves of "missed", for drill()
            conds.append(oc == "missed")
        elif outcome == "overdue_open":
            conds.append(passed)
        elif outcome == "pending":
            conds.append(and_(oc == "open", due >= now))
        elif outcome in ("resolved", "unresolved"):
            conds.append(f.resolved == (outcome == "resolved"))
        elif outcome == "all":
            conds.append((oc != "open") | (due < now))  # the denominator: due or done
        if metric in ("response_mean_h", "response_p90_h"):
            conds.append(f.resp_seconds.is_not(None))
        if metric in ("handling_mean_h", "handling_p90_h"):
            conds.append(f.hand_seconds.is_not(None))
    elif cohort == "created":
        conds += [f.created_day >= start, f.created_day <= end]
        if metric == "self_discovery_rate":
            conds.append(f.valid == True)  # noqa: E712
        if outcome == "patrol":
            conds.append(f.self_discovered == True)  # noqa: E712
        elif outcome == "reported":
            conds.append(f.self_discovered == False)  # noqa: E712
        elif outcome in ("rejected", "merged"):
            conds.append(f.state == outcome)
    elif cohort == "rated":
        conds += [f.rated_day >= start, f.rated_day <= end, f.rating.is_not(None)]
        if outcome == "satisfied":
            conds.append(f.rating >= 4)
        elif outcome == "unsatisfied":
            conds.append(f.rating < 4)
    elif cohort == "open":
        conds.append(
            ((f.resp_outcome == "open") & (f.resp_due_at < now))
            | ((f.hand_outcome == "open") & (f.hand_due_at < now))
        )
    if dim != "all":
        col = _fact_column(dim, "response" if cohort == "open" else cohort)
        conds.append(col == _fact_key(dim, key))
    return conds


def drill(
    db: Session,
    *,
    metric: str,
    outcome: str,
    dim: str,
    key: str,
    start: date,
    end: date,
    now: datetime,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[DrillRow], int]:
    """The orders behind a figure: those in the metric's cohort for the scope and period,
    narrowed by `outcome`; most recent due (or creation) first. The caller checks scope."""

    page = max(1, page)
    page_size = min(max(1, page_size), 500)
    conds = _drill_conditions(
        metric=metric, outcome=outcome, dim=dim, key=key, start=start, end=end, now=now
    )
    where = and_(true(), *conds)
    # The total is the figure itself, read from the rollups like the figure was: counting
    # a year of facts would cost more than the whole dashboard.
    known = _total_from_rollups(
        figures(db, dim=dim, key=key, start=start, end=end, now=now), metric, outcome
    )
    total = (
        known
        if known is not None
        else int(db.scalar(select(func.count()).select_from(OrderFact).where(where)) or 0)
    )
    offset = (page - 1) * page_size
    parts = {
        "all": ("met", "missed_done", "overdue_open"),
        "missed": ("missed_done", "overdue_open"),
    }
    if outcome in parts and METRICS[metric].cohort in ("response", "handling"):
        # Read the newest rows of each outcome down its (outcome, due) index and merge them,
        # instead of sorting every deadline of the period: late work is a thin slice of a
        # year of mostly punctual deadlines, and an OR across outcomes defeats the index.
        halves: list[DrillRow] = []
        for half in parts[outcome]:
            w = drill_where(
                metric=metric, outcome=half, dim=dim, key=key, start=start, end=end, now=now
            )
            halves += drill_iter(db, metric=metric, where=w, now=now, limit=offset + page_size)
        halves.sort(key=lambda r: (r.due_at is not None, r.due_at, r.order_id), reverse=True)
        return halves[offset : offset + page_size], total
    rows = list(drill_iter(db, metric=metric, where=where, now=now, offset=offset, limit=page_size))
    return rows, total


def _total_from_rollups(f: Figures, metric: str, outcome: str) -> int | None:
    """How many orders a drill-down lists, from the same sums as the figure; None where the
    drill-down's filter is not one of the summed counts."""
    cohort = METRICS[metric].cohort
    timed = metric.endswith(("_mean_h", "_p90_h"))
    if cohort in ("response", "handling"):
        p = "r" if cohort == "response" else "h"
        due = f.r_due if p == "r" else f.h_due
        late = f[f"{p}_missed"] + (f.r_overdue_open if p == "r" else f.h_overdue_open)
        pending = f.r_pending if p == "r" else f.h_pending
        if timed:
            return f[f"{p}_timed"] if outcome == "all" else None
        table = {"all": due, "met": f[f"{p}_met"], "missed": late, "pending": pending}
        if p == "h":
            table["resolved"] = f["h_resolved"]
        return table.get(outcome)
    if cohort == "created":
        if metric == "self_discovery_rate":
            return {
                "all": f["valid"],
                "patrol": f["patrol"],
                "reported": f["valid"] - f["patrol"],
            }.get(outcome)
        return {"all": f["created"], "rejected": f["rejected"], "merged": f["merged"]}.get(outcome)
    if cohort == "rated":
        return {
            "all": f["rated"],
            "satisfied": f["rating_good"],
            "unsatisfied": f["rated"] - f["rating_good"],
        }.get(outcome)
    return None


def drill_where(
    *, metric: str, outcome: str, dim: str, key: str, start: date, end: date, now: datetime
) -> ColumnElement[bool]:
    return and_(
        true(),
        *_drill_conditions(
            metric=metric, outcome=outcome, dim=dim, key=key, start=start, end=end, now=now
        ),
    )


def drill_iter(
    db: Session,
    *,
    metric: str,
    where: ColumnElement[bool],
    now: datetime,
    offset: int = 0,
    limit: int | None = None,
    stream: bool = False,
) -> Any:
    """Rows of a drill-down, as an iterator (streamed from the server when `stream`)."""
    from watergrid.workorders.models import WorkOrder

    f = OrderFact
    cohort = METRICS[metric].cohort
    if cohort == "handling":
        due, outcome, secs = f.hand_due_at, f.hand_outcome, f.hand_seconds
    else:
        due, outcome, secs = f.resp_due_at, f.resp_outcome, f.resp_seconds
    q = (
        select(
            f.order_id,
            WorkOrder.number,
            f.state,
            f.category_code,
            f.source,
            f.grid_id,
            f.department_id,
            WorkOrder.created_at,
            due,
            outcome,
            secs,
            f.rating,
        )
        .join(WorkOrder, WorkOrder.id == f.order_id)
        .where(where)
        .order_by(
            *(
                (due.desc(), f.order_id.desc())
                if cohort in ("response", "handling")
                else (f.order_id.desc(),)
            )
        )
        .offset(offset)
    )
    if limit is not None:
        q = q.limit(limit)
    result = db.execute(q.execution_options(stream_results=True, yield_per=2000) if stream else q)
    for r in result:
        shown = r[9]
        if shown == "open":
            shown = "missed" if r[8] is not None and r[8] < now else "pending"
        yield DrillRow(
            order_id=r[0],
            number=r[1] or "",
            state=r[2],
            category_code=r[3],
            source=r[4],
            grid_id=r[5],
            department_id=r[6],
            created_at=r[7],
            due_at=r[8],
            outcome=shown,
            hours=round(r[10] / 3600, 2) if r[10] is not None else None,
            rating=r[11],
        )
