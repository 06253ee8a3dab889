"""Shapes of inspection requests and answers, shared by the API, the pages and the figures.
Nothing here touches the database."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Method = Literal["on_site", "letter", "guidance"]
METHOD_LABELS: dict[str, tuple[str, str]] = {
    "on_site": ("现场交办", "On-site assignment"),
    "letter": ("发函提醒", "Reminder letter"),
    "guidance": ("技术指导", "Technical guidance"),
}
Severity = Literal["minor", "major", "critical"]
SEVERITY_LABELS: dict[str, tuple[str, str]] = {
    "minor": ("一般", "Minor"),
    "major": ("较重", "Major"),
    "critical": ("严重", "Critical"),
}
Answer = Literal["ok", "fault", "na"]
ANSWER_LABELS: dict[str, tuple[str, str]] = {
    "ok": ("符合", "OK"),
    "fault": ("存在问题", "Fault"),
    "na": ("不适用", "N/A"),
}
FindingState = Literal["open", "rectifying", "rectified", "verified", "void"]
STATE_LABELS: dict[str, tuple[str, str]] = {
    "open": ("待处置", "Awaiting action"),
    "rectifying": ("整改中", "Being rectified"),
    "rectified": ("已整改待复查", "Rectified, awaiting re-inspection"),
    "verified": ("复查合格", "Verified"),
    "void": ("已撤销", "Withdrawn"),
}
Datum = Literal["wgs84", "gcj02"]

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class ChecklistItem(BaseModel):
    """One question of a checklist: what to look at, what counts as a fault, how serious."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    section: str = Field(default="", max_length=32, description="e.g. 供水 / 排水")
    text: str = Field(min_length=1, max_length=300)
    fault_rule: str = Field(min_length=1, max_length=300, description="What counts as a fault")
    severity: Severity = "minor"


def _unique_codes(items: list[ChecklistItem]) -> list[ChecklistItem]:
    codes = [i.code for i in items]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise ValueError(f"item codes repeat: {dupes}")
    return items


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    items: list[ChecklistItem] = Field(min_length=1, max_length=200)

    _check = field_validator("items")(_unique_codes)


class TemplateRead(TemplateCreate):
    id: int


class RectifyLimits(BaseModel):
    """Working days a responsible party gets to rectify, by method."""

    model_config = ConfigDict(extra="forbid")

    on_site: float = Field(default=5, gt=0, le=365)
    letter: float = Field(default=15, gt=0, le=365)
    guidance: float = Field(default=20, gt=0, le=365)


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    scope: str = Field(default="", max_length=2000)
    period_start: dt.date
    period_end: dt.date
    lead_department_code: str = Field(min_length=1, max_length=32)
    template_code: str = Field(min_length=1, max_length=32)
    rectify_limits: RectifyLimits = RectifyLimits()
    escalation_workdays: float = Field(default=3, gt=0, le=60)
    letter_prefix: str = Field(default="光水排查函", min_length=1, max_length=32)

    @model_validator(mode="after")
    def _period(self) -> CampaignCreate:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class DepartmentBrief(BaseModel):
    code: str
    name_zh: str


class AreaBrief(BaseModel):
    id: int
    code: str
    name_zh: str


class CampaignRead(BaseModel):
    id: int
    code: str
    name: str
    scope: str
    period_start: dt.date
    period_end: dt.date
    state: str
    lead_department: DepartmentBrief
    checklist: list[ChecklistItem]
    rectify_limits: RectifyLimits
    escalation_workdays: float
    letter_prefix: str
    created_at: dt.datetime
    targets: int
    inspected: int


class TargetIn(BaseModel):
    """A target from a CSV row or a point picked on the map."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=120)
    address: str = Field(default="", max_length=200)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    datum: Datum = Field(default="wgs84", description="Datum of lon/lat; stored as WGS84")
    build_year: int | None = Field(default=None, ge=1949, le=2100)
    property_company: str = Field(default="", max_length=120)
    contact_name: str = Field(default="", max_length=64)
    contact_phone: str = Field(default="", max_length=20)


class TargetRead(BaseModel):
    id: int
    campaign_id: int
    code: str
    name: str
    address: str
    lon: float
    lat: float
    grid: AreaBrief
    subdistrict: AreaBrief
    build_year: int | None
    property_company: str
    contact_name: str
    contact_phone: str
    inspected_at: dt.datetime | None
    open_findings: int
    findings: int


class ImportReport(BaseModel):
    created: int
    updated: int
    codes: list[str]


class InspectorAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grid_code: str = Field(min_length=1, max_length=32)
    person_code: str = Field(min_length=1, max_length=32)


class InspectorRead(BaseModel):
    grid: AreaBrief
    person_code: str
    name: str


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: Answer
    note: str = Field(default="", max_length=1000)
    # For a fault: how it is to be put right. None leaves it to the office.
    method: Method | None = None


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: Literal["passed", "failed"]
    note: str = Field(default="", max_length=1000)
    # For a failed verification: the method of the next round (default: the same).
    method: Method | None = None


class InspectionSubmit(BaseModel):
    """What the phone form sends. Photos travel beside it as multipart files, each tagged in
    `photo_tags` (same order): "" for the visit, an item code, or "f<finding id>"."""

    model_config = ConfigDict(extra="forbid")

    client_key: str = Field(pattern=KEY_PATTERN)
    kind: Literal["initial", "reinspection"] = "initial"
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000)
    observed_at: dt.datetime | None = None
    notes: str = Field(default="", max_length=4000)
    answers: dict[str, AnswerIn] = {}
    verdicts: dict[int, VerdictIn] = {}
    responsible_party: str = Field(default="", max_length=120)
    responsible_contact: str = Field(default="", max_length=64)
    responsible_phone: str = Field(default="", max_length=20)
    photo_tags: list[str] = Field(default=[], max_length=30)

    @model_validator(mode="after")
    def _position_pairs(self) -> InspectionSubmit:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("lon and lat go together")
        return self


class InspectionRead(BaseModel):
    id: int
    target_id: int
    kind: str
    inspected_at: dt.datetime
    inspector_name: str
    lon: float | None
    lat: float | None
    accuracy_m: float | None
    distance_m: float | None
    notes: str
    answers: dict[str, Any]
    verdicts: dict[str, Any]
    fault_count: int
    findings: list[int]
    replayed: bool = False
    warnings: list[str] = []


class RectifyAssign(BaseModel):
    """Put open findings of one target under rectification by one method. With method
    "letter" one numbered letter covering them all is issued."""

    model_config = ConfigDict(extra="forbid")

    finding_ids: list[int] = Field(min_length=1, max_length=100)
    method: Method
    responsible_party: str = Field(default="", max_length=120)
    responsible_contact: str = Field(default="", max_length=64)
    responsible_phone: str = Field(default="", max_length=20)
    limit_workdays: float | None = Field(default=None, gt=0, le=365)
    guide_department_code: str | None = Field(default=None, max_length=32)
    guidance: str = Field(default="", max_length=2000)
    note: str = Field(default="", max_length=2000)
    # Letters: the bureau's contact printed on the letter, and who receives copies.
    contact_name: str = Field(default="", max_length=64)
    contact_phone: str = Field(default="", max_length=32)
    copy_to: str = Field(default="", max_length=300)


class FindingNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class RectificationRead(BaseModel):
    id: int
    round: int
    method: str
    method_label: str
    responsible_party: str
    responsible_contact: str
    responsible_phone_masked: str
    guide_department: DepartmentBrief | None
    guidance: str
    letter_id: int | None
    letter_number: str | None
    limit_workdays: float
    started_at: dt.datetime
    due_at: dt.datetime
    rectified_at: dt.datetime | None
    outcome: str | None
    closed_at: dt.datetime | None
    overdue: bool
    escalated_at: dt.datetime | None
    warnings: list[str]


class PhotoRead(BaseModel):
    key: str
    item_code: str
    finding_id: int | None
    width: int
    height: int
    url: str


class EventRead(BaseModel):
    id: int
    at: dt.datetime
    action: str
    action_label: str
    from_state: str | None
    to_state: str
    actor_name: str | None
    actor_role: str | None
    note: str
    data: dict[str, Any]


class FindingRead(BaseModel):
    id: int
    target_id: int
    target_name: str
    item_code: str
    item_text: str
    section: str
    severity: str
    note: str
    state: str
    state_label: str
    proposed_method: str | None
    rounds: int
    first_due_at: dt.datetime | None
    verified_at: dt.datetime | None
    on_time: bool | None
    created_at: dt.datetime
    rectification: RectificationRead | None
    actions: list[str] = []


class LetterRead(BaseModel):
    id: int
    number: str
    title: str
    addressee: str
    target_id: int
    target_name: str
    issued_at: dt.datetime
    due_at: dt.datetime
    items: list[dict[str, Any]]
    issuer: str
    contact_name: str
    contact_phone: str
    copy_to: str


class FigureRow(BaseModel):
    """One line of the figures. Rates are None where their denominator is zero."""

    key: str
    label: str
    targets: int
    inspected: int
    coverage: float | None
    faulty_targets: int
    fault_rate: float | None
    findings: int
    verified: int
    rectification_rate: float | None
    due_or_done: int
    on_time: int
    on_time_rate: float | None
    open_overdue: int


class Figures(BaseModel):
    campaign_id: int
    campaign_name: str
    as_of: dt.datetime
    total: FigureRow
    by_subdistrict: list[FigureRow]
    by_grid: list[FigureRow]
    by_company: list[FigureRow]
    by_method: dict[str, int]
