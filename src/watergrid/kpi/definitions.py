"""The KPI vocabulary: metrics, dimensions, outcomes, targets, histogram buckets and water
domains. docs/kpi.md states the rules in words; this module is their single source in code
(tests/kpi/test_docs.py keeps the two in step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# -- outcomes of one deadline of one order (docs/kpi.md, "Outcome of a deadline") ---------

Outcome = Literal["met", "missed", "open", "paused", "none"]
MET: Outcome = "met"
MISSED: Outcome = "missed"
OPEN: Outcome = "open"  # not yet done, clock running: missed once the due time passes
PAUSED: Outcome = "paused"  # suspended before its due time: no due time until resumed
NONE: Outcome = "none"  # not counted (never dispatched, or left the flow in time)
COUNTED: frozenset[str] = frozenset({MET, MISSED, OPEN})

# -- dimensions a figure can be broken down by ---------------------------------------------

Dim = Literal[
    "all",
    "subdistrict",
    "grid",
    "zone",
    "department",
    "person",
    "category",
    "subcategory",
    "source",
]
DIMS: tuple[Dim, ...] = (
    "all",
    "subdistrict",
    "grid",
    "zone",
    "department",
    "person",
    "category",
    "subcategory",
    "source",
)
DIM_LABELS: dict[str, tuple[str, str]] = {
    "all": ("全区", "District"),
    "subdistrict": ("街道", "Subdistrict"),
    "grid": ("社区水务网格", "Grid"),
    "zone": ("重点片区", "Key zone"),
    "department": ("部门", "Department"),
    "person": ("人员", "Person"),
    "category": ("服务类别", "Service category"),
    "subcategory": ("诉求子类", "Sub-category"),
    "source": ("来源", "Source"),
}
RANKABLE: tuple[Dim, ...] = ("grid", "zone", "department", "subdistrict", "person")

SOURCE_LABELS: dict[str, tuple[str, str]] = {
    "public_web": ("网页", "Web form"),
    "service_card": ("助企服务卡", "Service card"),
    "api": ("接口", "API"),
    "open311": ("Open311", "Open311"),
    "patrol": ("巡查自查", "Patrol (self-discovered)"),
    "phone": ("电话", "Phone"),
}
SELF_DISCOVERED_SOURCES: frozenset[str] = frozenset({"patrol"})

# -- metrics ---------------------------------------------------------------------------------

Metric = Literal[
    "response_rate",
    "handling_rate",
    "self_discovery_rate",
    "satisfaction_rate",
    "closure_rate",
    "rating_mean",
    "response_missed",
    "handling_missed",
    "overdue_open",
    "response_mean_h",
    "response_p90_h",
    "handling_mean_h",
    "handling_p90_h",
    "volume",
]


@dataclass(frozen=True)
class MetricDef:
    code: str
    name_zh: str
    name_en: str
    kind: Literal["rate", "count", "hours", "score"]
    # Higher is better (rankings sort best first; RAG compares against the target).
    higher_is_better: bool = True
    # Red/amber/green: green at or beyond `green`, amber at or beyond `amber`, else red.
    # Rates are fractions (0.99 = 99 %). None: no target.
    green: float | None = None
    amber: float | None = None
    # Which deadline or cohort a drill-down of this metric lists.
    cohort: Literal["response", "handling", "created", "rated", "open"] = "created"


METRICS: dict[str, MetricDef] = {
    m.code: m
    for m in (
        MetricDef(
            "response_rate",
            "响应及时率",
            "Response timeliness",
            "rate",
            green=0.99,
            amber=0.95,
            cohort="response",
        ),
        MetricDef(
            "handling_rate",
            "处置及时率",
            "Handling timeliness",
            "rate",
            green=0.99,
            amber=0.95,
            cohort="handling",
        ),
        MetricDef(
            "self_discovery_rate",
            "问题自查率",
            "Self-discovery rate",
            "rate",
            green=0.90,
            amber=0.80,
            cohort="created",
        ),
        MetricDef(
            "satisfaction_rate",
            "满意率",
            "Satisfaction rate",
            "rate",
            green=0.95,
            amber=0.90,
            cohort="rated",
        ),
        MetricDef(
            "closure_rate",
            "办结率",
            "Closure rate",
            "rate",
            green=0.98,
            amber=0.95,
            cohort="handling",
        ),
        MetricDef(
            "rating_mean", "平均评分", "Mean rating", "score", green=4.5, amber=4.0, cohort="rated"
        ),
        MetricDef(
            "response_missed",
            "超时响应数",
            "Responses late",
            "count",
            higher_is_better=False,
            cohort="response",
        ),
        MetricDef(
            "handling_missed",
            "超期处置数",
            "Handling late",
            "count",
            higher_is_better=False,
            cohort="handling",
        ),
        MetricDef(
            "overdue_open",
            "在办超期数",
            "Open and overdue now",
            "count",
            higher_is_better=False,
            cohort="open",
        ),
        MetricDef(
            "response_mean_h",
            "平均响应用时",
            "Mean time to respond",
            "hours",
            higher_is_better=False,
            cohort="response",
        ),
        MetricDef(
            "response_p90_h",
            "响应用时P90",
            "P90 time to respond",
            "hours",
            higher_is_better=False,
            cohort="response",
        ),
        MetricDef(
            "handling_mean_h",
            "平均处置用时",
            "Mean time to handle",
            "hours",
            higher_is_better=False,
            cohort="handling",
        ),
        MetricDef(
            "handling_p90_h",
            "处置用时P90",
            "P90 time to handle",
            "hours",
            higher_is_better=False,
            cohort="handling",
        ),
        MetricDef("volume", "受理量", "Orders received", "count", cohort="created"),
    )
}
HEADLINE: tuple[str, ...] = (
    "response_rate",
    "handling_rate",
    "self_discovery_rate",
    "satisfaction_rate",
    "closure_rate",
)


def rag(metric: str, value: float | None) -> str:
    """'green', 'amber', 'red' against the metric's target, or '' when it has none."""
    m = METRICS[metric]
    if value is None or m.green is None or m.amber is None:
        return ""
    if m.higher_is_better:
        return "green" if value >= m.green else "amber" if value >= m.amber else "red"
    return "green" if value <= m.green else "amber" if value <= m.amber else "red"


# -- satisfaction ----------------------------------------------------------------------------

# A rating of 4 or 5 (out of 5) counts as satisfied (满意 / 基本满意).
SATISFIED_MIN_SCORE = 4

# -- time histogram (for p90 without keeping every duration in the rollups) -----------------

# Upper edges in hours of buckets 0..N-2; bucket N-1 is everything above the last edge.
BUCKET_EDGES_H: tuple[float, ...] = (
    0.25,
    0.5,
    1,
    2,
    3,
    4,
    6,
    8,
    12,
    16,
    24,
    36,
    48,
    72,
    96,
    120,
    168,
    240,
    360,
)
N_BUCKETS = len(BUCKET_EDGES_H) + 1


def bucket_of(seconds: int) -> int:
    """The histogram bucket of a duration: the first whose upper edge it does not exceed."""
    hours = seconds / 3600
    for i, edge in enumerate(BUCKET_EDGES_H):
        if hours <= edge:
            return i
    return N_BUCKETS - 1


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) in hours read from bucket counts: find the bucket holding
    the ceil(q·n)-th smallest duration and interpolate linearly inside it. In the open last
    bucket the answer is its lower edge (reported as "more than")."""
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            lo = 0.0 if i == 0 else BUCKET_EDGES_H[i - 1]
            if i == N_BUCKETS - 1:
                return lo
            hi = BUCKET_EDGES_H[i]
            return round(lo + (hi - lo) * (rank - seen) / c, 2)
        seen += c
    return BUCKET_EDGES_H[-1]  # pragma: no cover - rank <= n always lands in a bucket


# -- the annual KPI attack map (KPI攻坚图) ---------------------------------------------------

# Water domains of the bureau's key tasks, after the areas the seed names (再生水利用, 海绵城市,
# 洪涝安全韧性, 水土保持, 节水, 供排水, 河湖).
DOMAINS: dict[str, tuple[str, str]] = {
    "reclaimed": ("再生水利用", "Reclaimed water"),
    "sponge": ("海绵城市", "Sponge city"),
    "flood": ("洪涝安全韧性", "Flood resilience"),
    "conservation": ("水土保持", "Soil and water conservation"),
    "saving": ("节约用水", "Water saving"),
    "supply_drainage": ("供水排水", "Water supply and drainage"),
    "rivers": ("河湖治理", "Rivers and lakes"),
}
TASK_STATUSES: dict[str, tuple[str, str]] = {
    "done": ("已完成", "Done"),
    "on_track": ("正常推进", "On track"),
    "at_risk": ("有风险", "At risk"),
    "late": ("已逾期", "Late"),
}
# An open milestone due within this many days puts its task at risk (so does a milestone
# finished after its date): a week is the time a leader still has to step in.
RISK_WINDOW_DAYS = 7
