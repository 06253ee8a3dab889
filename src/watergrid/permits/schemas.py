"""Shapes of statutory-service requests and answers. Nothing here touches the database."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STATE_LABELS: dict[str, tuple[str, str]] = {
    "submitted": ("已提交，待受理审查", "Submitted"),
    "correction": ("待补正材料（计时暂停）", "Awaiting corrections (clock stopped)"),
    "under_review": ("已受理，审查中", "Accepted, under review"),
    "approved": ("准予许可", "Approved"),
    "refused": ("不予许可", "Refused"),
    "not_accepted": ("不予受理", "Not accepted"),
}
ACTION_LABELS: dict[str, tuple[str, str]] = {
    "submit": ("提交申请", "Submitted"),
    "request_correction": ("一次性告知补正", "Corrections requested"),
    "supplement": ("补正材料已提交", "Corrections supplied"),
    "accept": ("受理", "Accepted"),
    "not_accept": ("不予受理", "Not accepted"),
    "approve": ("准予许可", "Approved"),
    "refuse": ("不予许可", "Refused"),
    "remind": ("办理时限提醒", "Deadline reminder"),
    "overdue": ("超过办理时限", "Deadline missed"),
    "escalate": ("超时升级督办", "Escalated"),
}
StaffAction = Literal["request_correction", "accept", "not_accept", "approve", "refuse"]
KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class ApplicationCreate(BaseModel):
    """What an enterprise submits. Documents travel beside it as multipart files named
    `doc__<document code>`."""

    model_config = ConfigDict(extra="forbid")

    service_code: str = Field(min_length=1, max_length=32)
    client_key: str = Field(pattern=KEY_PATTERN)
    project_name: str = Field(min_length=2, max_length=200)
    project_address: str = Field(min_length=2, max_length=200)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    datum: Literal["wgs84", "gcj02"] = "wgs84"
    applicant_name: str = Field(min_length=2, max_length=200)
    credit_code: str = Field(min_length=18, max_length=18, description="统一社会信用代码")
    contact_name: str = Field(min_length=1, max_length=64)
    contact_phone: str = Field(min_length=5, max_length=20)
    contact_email: str = Field(default="", max_length=120)
    sms_consent: bool = False
    details: dict[str, Any] = {}


class Receipt(BaseModel):
    id: int
    number: str
    service_code: str
    service_name: str
    state: str
    submitted_at: dt.datetime
    due_at: dt.datetime | None
    limit_workdays: float
    # Shown once: the applicant's key for following up and supplying corrections.
    access_token: str | None
    replayed: bool = False
    warnings: list[str] = []


class StaffActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=4000)
    doc_codes: list[str] = Field(default=[], max_length=20)
    reasons: str = Field(default="", max_length=4000)
    conditions: str = Field(default="", max_length=4000)


class DocumentRead(BaseModel):
    id: int
    doc_code: str
    doc_name: str
    round: int
    filename: str
    content_type: str
    size: int
    uploaded_at: dt.datetime
    url: str


class SuspensionRead(BaseModel):
    suspended_at: dt.datetime
    resumed_at: dt.datetime | None
    doc_codes: list[str]
    doc_names: list[str]
    note: str


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


class DocumentStatus(BaseModel):
    code: str
    name: str
    required: bool
    hint: str
    files: int
    requested: bool


class ClockRead(BaseModel):
    limit_workdays: float
    due_at: dt.datetime | None
    paused: bool
    remaining_workdays: float | None
    used_workdays: float
    overdue: bool
    warnings: list[str]


class ApplicationRead(BaseModel):
    """The staff's (and, with the token, the applicant's) view."""

    id: int
    number: str
    service_code: str
    service_name: str
    state: str
    state_label: str
    project_name: str
    project_address: str
    lon: float
    lat: float
    subdistrict: str
    grid: str
    applicant_name: str
    credit_code: str
    contact_name: str
    contact_phone: str
    contact_email: str
    details: dict[str, Any]
    details_text: list[tuple[str, str]]
    department: str
    submitted_at: dt.datetime
    accepted_at: dt.datetime | None
    decided_at: dt.datetime | None
    decision_number: str | None
    decision_reasons: str
    decision_conditions: str
    on_time: bool | None
    clock: ClockRead
    escalated_at: dt.datetime | None
    documents: list[DocumentRead]
    checklist: list[DocumentStatus]
    suspensions: list[SuspensionRead]
    events: list[EventRead]
    actions: list[str] = []


class PublicEvent(BaseModel):
    at: dt.datetime
    action_label: str


class PublicStatus(BaseModel):
    """What anyone with the application number sees: no people, no documents, no notes."""

    number: str
    service_name: str
    project_name: str
    subdistrict: str
    state: str
    state_label: str
    submitted_at: dt.datetime
    accepted_at: dt.datetime | None
    decided_at: dt.datetime | None
    decision_number: str | None
    limit_workdays: float
    due_at: dt.datetime | None
    paused: bool
    remaining_workdays: float | None
    timeline: list[PublicEvent]


class ApplicationSummary(BaseModel):
    id: int
    number: str
    service_code: str
    service_name: str
    state: str
    state_label: str
    project_name: str
    applicant_name: str
    subdistrict: str
    submitted_at: dt.datetime
    due_at: dt.datetime | None
    remaining_workdays: float | None
    overdue: bool
    escalated: bool
    decided_at: dt.datetime | None
    on_time: bool | None


class ServiceOnTime(BaseModel):
    service_code: str
    service_name: str
    decided: int
    on_time: int
    rate: float | None
    open: int
    open_overdue: int


class OnTimeSummary(BaseModel):
    """办结及时率 for the KPIs: applications decided in [since, until), how many by their due
    time; plus what is open now (as of `until`)."""

    since: dt.datetime
    until: dt.datetime
    decided: int
    on_time: int
    rate: float | None
    open: int
    open_overdue: int
    by_service: list[ServiceOnTime]
