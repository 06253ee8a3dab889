"""Request and response shapes of the KPI API."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field


class ScopeRef(BaseModel):
    dim: str
    key: str
    name_zh: str
    name_en: str
    code: str


class FiguresRead(BaseModel):
    scope: ScopeRef
    start: date
    end: date
    values: dict[str, float | None]
    rag: dict[str, str]
    counts: dict[str, int]
    previous: dict[str, float | None] | None = None


class TrendPoint(BaseModel):
    period: date
    values: dict[str, float | None]
    counts: dict[str, int]


class RankingRow(BaseModel):
    rank: int | None
    key: str
    code: str
    name_zh: str
    name_en: str
    value: float | None
    denominator: int
    rag: str


class DrillItem(BaseModel):
    id: int
    number: str
    state: str
    category_code: str
    source: str
    due_at: str | None
    outcome: str
    hours: float | None
    rating: int | None


class DrillPage(BaseModel):
    items: list[DrillItem]
    total: int
    page: int
    page_size: int


# -- visits -----------------------------------------------------------------------------------


class VisitIssueIn(BaseModel):
    summary: str = Field(min_length=1, max_length=300)
    order_number: str | None = Field(None, max_length=20)
    link: Literal["created", "moved"] | None = None


class VisitCreate(BaseModel):
    visit_date: date
    grid_code: str = Field(min_length=1, max_length=32)
    zone_code: str | None = Field(None, max_length=32)
    # Person code of the leader who led the visit; default: the signed-in user's person.
    leader_code: str | None = Field(None, max_length=32)
    member_codes: list[str] = Field(default_factory=list, max_length=50)
    findings: str = Field("", max_length=4000)
    issues: list[VisitIssueIn] = Field(default_factory=list, max_length=100)


class VisitIssueRead(BaseModel):
    summary: str
    order_id: int | None
    order_number: str | None
    link: str | None


class VisitRead(BaseModel):
    id: int
    visit_date: date
    grid_code: str
    grid_name: str
    zone_code: str | None
    zone_name: str | None
    leader_code: str
    leader_name: str
    members: list[str]
    findings: str
    issues: list[VisitIssueRead]


class VisitCount(BaseModel):
    key: str
    name: str
    visits: int
    issues: int
    orders: int


# -- the attack map ----------------------------------------------------------------------------


class MilestoneIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    due_date: date
    weight: float = Field(1.0, gt=0, le=100)


class TaskCreate(BaseModel):
    year: int = Field(ge=2000, le=2100)
    domain: str = Field(min_length=1, max_length=32)
    title: str = Field(min_length=1, max_length=200)
    target: str = Field("", max_length=2000)
    milestones: list[MilestoneIn] = Field(default_factory=list, max_length=50)


class MilestoneDone(BaseModel):
    done_date: date
    evidence: str = Field(min_length=1, max_length=2000)


class TeamSet(BaseModel):
    member_codes: list[str] = Field(default_factory=list, max_length=30)


class MilestoneRead(BaseModel):
    id: int
    title: str
    due_date: date
    weight: float
    done_date: date | None
    evidence: str
    status: str


class TaskRead(BaseModel):
    id: int
    year: int
    domain: str
    domain_name_zh: str
    domain_name_en: str
    title: str
    target: str
    owner_code: str | None
    owner_name: str | None
    team: list[str]
    progress: float
    status: str
    milestones: list[MilestoneRead]
