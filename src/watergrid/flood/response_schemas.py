"""Shapes of the flood response API: warnings, plans, calls, dispatch and service cards.

The limits on plan content (people per role, actions per level, lengths) are what lets any
valid plan print on one A4 page: tests/flood_response print a plan filled to every limit."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SignalLevel = Literal["yellow", "orange", "red"]
PlanLevel = Literal["blue", "yellow", "orange", "red"]
PlanKind = Literal["reservoir", "river", "waterlogging_point", "subdistrict", "grid"]
CalledRole = Literal["administrative", "technical", "patrol", "transfer"]
Role = Literal["administrative", "technical", "patrol", "transfer", "escalation"]
TaskState = Literal["waiting", "assigned", "en_route", "on_site", "pumping", "done", "cancelled"]

CALLED_ROLES: tuple[CalledRole, ...] = ("administrative", "technical", "patrol", "transfer")
MAX_PEOPLE_PER_ROLE = 3
MAX_ESCALATION = 3
MAX_ACTIONS = 5
MAX_ACTION_CHARS = 48
MAX_TRIGGER_CHARS = 60
MAX_CONTACTS = 6
MAX_ROUTES = 3
MAX_SHELTERS = 3
MAX_SUMMARY_CHARS = 120


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- warnings --------------------------------------------------------------------------------


class WarningIssue(_Strict):
    subdistrict_code: str = Field(description="9-digit code of the subdistrict (街道)")
    level: SignalLevel
    exercise: bool = Field(
        default=False, description="A drill: CAP status Exercise, calls marked as such"
    )
    reason: str = Field(default="", max_length=500, description="Why (shown in the history)")
    description_zh: str = Field(default="", max_length=500, description="Empty: the standard text")
    expires_at: dt.datetime | None = None
    suggestion_id: int | None = Field(default=None, description="The suggestion this issue accepts")


class WarningChange(_Strict):
    level: SignalLevel
    reason: str = Field(default="", max_length=500)


class WarningLift(_Strict):
    reason: str = Field(default="", max_length=500)


class WarningEventRead(BaseModel):
    seq: int
    at: dt.datetime
    action: str
    from_state: str | None
    to_state: str
    from_level: str | None
    to_level: str
    actor_name: str
    reason: str
    cap_identifier: str
    cap_msg_type: str


class WarningRead(BaseModel):
    id: int
    number: str
    subdistrict_code: str
    subdistrict_name_zh: str
    level: SignalLevel
    level_zh: str
    state: str
    exercise: bool
    issued_at: dt.datetime
    updated_at: dt.datetime
    lifted_at: dt.datetime | None
    expires_at: dt.datetime | None
    description_zh: str
    cap_url: str
    rounds_started: int = 0
    history: list[WarningEventRead] = []


class SuggestionRead(BaseModel):
    id: int
    subdistrict_code: str
    subdistrict_name_zh: str
    level: str
    level_zh: str
    window_h: int
    threshold_mm: float
    basis: str
    observed_mm: float
    raised_at: dt.datetime
    last_checked_at: dt.datetime
    state: str


class SuggestionDecision(_Strict):
    reason: str = Field(default="", max_length=500)


class CriterionRead(BaseModel):
    id: int
    scheme: str
    level: str
    window_h: int
    threshold_mm: float | None
    basis: str
    active: bool
    criterion_text: str
    note: str
    source: str


class CriterionUpdate(_Strict):
    threshold_mm: float | None = Field(default=None, gt=0, le=1000)
    window_h: int | None = None
    basis: Literal["mean", "max"] | None = None
    active: bool | None = None


# -- plans -------------------------------------------------------------------------------------


class LevelBlock(_Strict):
    """What a level means for this plan: its trigger, the action checklist, who is called
    and how fast they must answer."""

    trigger_zh: str = Field(min_length=1, max_length=MAX_TRIGGER_CHARS)
    actions_zh: list[str] = Field(min_length=1, max_length=MAX_ACTIONS)
    call_roles: list[CalledRole] = Field(default_factory=lambda: list(CALLED_ROLES), min_length=1)
    answer_within_min: int = Field(ge=1, le=240, description="Minutes to answer; then escalate")
    repeat_every_min: int = Field(ge=1, le=120, description="Repeat the call this often meanwhile")

    @field_validator("actions_zh")
    @classmethod
    def _short_actions(cls, v: list[str]) -> list[str]:
        for a in v:
            if not a.strip() or len(a) > MAX_ACTION_CHARS:
                raise ValueError(f"each action 1–{MAX_ACTION_CHARS} characters")
        return [a.strip() for a in v]

    @model_validator(mode="after")
    def _repeat_fits(self) -> LevelBlock:
        if self.repeat_every_min > self.answer_within_min:
            raise ValueError("repeat_every_min must not exceed answer_within_min")
        return self


class ContactLine(_Strict):
    label: str = Field(min_length=1, max_length=16)
    phone: str = Field(min_length=3, max_length=20)


class TransferRoute(_Strict):
    from_zh: str = Field(min_length=1, max_length=24, description="who or where moves")
    via_zh: str = Field(min_length=1, max_length=48, description="the way")
    shelter_code: str = Field(min_length=1, max_length=40)


class PlanBody(_Strict):
    summary_zh: str = Field(default="", max_length=MAX_SUMMARY_CHARS)
    levels: dict[PlanLevel, LevelBlock] = Field(min_length=1)
    contacts: list[ContactLine] = Field(default_factory=list, max_length=MAX_CONTACTS)
    routes: list[TransferRoute] = Field(default_factory=list, max_length=MAX_ROUTES)
    shelters: list[str] = Field(default_factory=list, max_length=MAX_SHELTERS)


class RoleHolder(_Strict):
    role: Role
    person_code: str
    duty: str = Field(default="", max_length=24)


class PlanVersionIn(_Strict):
    body: PlanBody
    roles: list[RoleHolder]
    review_by: dt.date
    change_note: str = Field(default="", max_length=300)

    @model_validator(mode="after")
    def _roles_complete(self) -> PlanVersionIn:
        counts: dict[str, int] = {}
        seen: set[tuple[str, str]] = set()
        for h in self.roles:
            if (h.role, h.person_code) in seen:
                raise ValueError(f"{h.person_code} twice in role {h.role}")
            seen.add((h.role, h.person_code))
            counts[h.role] = counts.get(h.role, 0) + 1
        for role in CALLED_ROLES:
            if not counts.get(role):
                raise ValueError(f"role {role} needs at least one person")
            if counts[role] > MAX_PEOPLE_PER_ROLE:
                raise ValueError(f"at most {MAX_PEOPLE_PER_ROLE} people in role {role}")
        if counts.get("escalation", 0) > MAX_ESCALATION:
            raise ValueError(f"at most {MAX_ESCALATION} escalation contacts")
        return self


class PlanCreate(PlanVersionIn):
    code: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,48}$")
    kind: PlanKind
    target_code: str = Field(description="asset code (reservoir, river, point) or area code")
    name_zh: str = Field(min_length=1, max_length=60)
    name_en: str = Field(default="", max_length=120)
    coverage: list[str] | None = Field(
        default=None, description="Subdistrict codes whose warnings start this plan; empty: derived"
    )


class PersonLine(BaseModel):
    code: str
    name: str
    title: str
    mobile: str
    duty: str = ""


class ShelterLine(BaseModel):
    code: str
    name_zh: str
    capacity: float | None
    distance_m: float | None = None


class PlanVersionRead(BaseModel):
    version: int
    review_by: dt.date
    created_at: dt.datetime
    created_by_name: str
    change_note: str
    body: PlanBody
    roles: dict[str, list[PersonLine]]
    shelters: list[ShelterLine]
    overdue_review: bool


class PlanSummary(BaseModel):
    code: str
    kind: PlanKind
    name_zh: str
    name_en: str
    target_code: str
    subdistrict_codes: list[str]
    current_version: int
    review_by: dt.date
    active: bool


class PlanRead(PlanSummary):
    current: PlanVersionRead
    versions: list[int]


class DrillStart(_Strict):
    level: PlanLevel
    reason: str = Field(default="", max_length=300)


# -- calls ------------------------------------------------------------------------------------


class CallRead(BaseModel):
    id: int
    round_id: int
    person_code: str
    name: str
    role: str
    state: str
    step: int
    current_person_name: str
    first_notified_at: dt.datetime | None
    answered_at: dt.datetime | None
    answered_by_name: str | None
    answered_via: str | None
    seconds_to_answer: float | None
    late: bool
    overdue: bool
    exercise: bool


class RoundRead(BaseModel):
    id: int
    plan_code: str
    plan_name_zh: str
    plan_version: int
    trigger_kind: str
    trigger_label: str
    level: str
    exercise: bool
    state: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: str
    answer_within_min: int
    total: int
    answered: int
    late: int
    waiting: int
    escalated: int
    calls: list[CallRead] = []


class CallEventRead(BaseModel):
    at: dt.datetime
    call_id: int | None
    action: str
    from_state: str | None
    to_state: str
    step: int | None
    attempt: int | None
    person_name: str | None
    via: str | None
    reason: str


class AnswerResult(BaseModel):
    call_id: int
    round_id: int
    state: str
    answered_at: dt.datetime | None
    already: bool
    late: bool
    plan_name_zh: str
    trigger_label: str
    exercise: bool


class SmsInbound(_Strict):
    sender: str = Field(min_length=5, max_length=20, alias="from")
    text: str = Field(max_length=500)
    message_id: str | None = Field(default=None, max_length=100)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CallKpi(BaseModel):
    key: str
    calls: int
    answered_self: int
    answered_on_time: int
    answered_by_superior: int
    unanswered: int
    answer_rate: float | None
    on_time_rate: float | None
    mean_seconds_to_answer: float | None
    median_seconds_to_answer: float | None
    p90_seconds_to_answer: float | None


class CallKpiReport(BaseModel):
    start: dt.datetime
    end: dt.datetime
    exercise: bool
    definitions: dict[str, str]
    total: CallKpi
    groups: list[CallKpi]


# -- dispatch ---------------------------------------------------------------------------------


class TaskRead(BaseModel):
    id: int
    source: str
    label_zh: str
    point_code: str | None
    work_order_number: str
    lon: float
    lat: float
    subdistrict_code: str | None
    crew_code: str | None
    crew_name_zh: str | None
    crew_kind: str | None
    crew_lon: float | None
    crew_lat: float | None
    distance_m: float | None
    state: TaskState
    exercise: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class TaskCreate(_Strict):
    point_code: str
    reason: str = Field(default="", max_length=300)


class TaskStatus(_Strict):
    state: Literal["en_route", "on_site", "pumping", "done", "cancelled"]
    reason: str = Field(default="", max_length=300)


class TaskReassign(_Strict):
    crew_code: str | None = Field(
        default=None, description="Empty: the nearest other available crew"
    )
    reason: str = Field(default="", max_length=300)


# -- service cards ----------------------------------------------------------------------------


class ServiceCardUpdate(_Strict):
    hotline: str | None = Field(default=None, max_length=32)
    contact_person_code: str | None = None
    shelter_codes: list[str] | None = Field(default=None, max_length=MAX_SHELTERS)
    note_zh: str | None = Field(default=None, max_length=80)


# -- vocabulary shown to people ---------------------------------------------------------------

LEVEL_ZH: dict[str, str] = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
LEVEL_EN: dict[str, str] = {"blue": "Blue", "yellow": "Yellow", "orange": "Orange", "red": "Red"}
# Alarm levels 1..4 (flood.kinds.LEVELS) and plan levels are the same ladder.
LEVEL_RANK: dict[str, int] = {"blue": 1, "yellow": 2, "orange": 3, "red": 4}
ROLE_ZH: dict[str, str] = {
    "administrative": "行政责任人",
    "technical": "技术责任人",
    "patrol": "巡查责任人",
    "transfer": "转移责任人",
    "escalation": "上级叫应人",
}
KIND_ZH: dict[str, str] = {
    "reservoir": "水库",
    "river": "河道",
    "waterlogging_point": "内涝积水点",
    "subdistrict": "街道",
    "grid": "社区",
}
TASK_STATE_ZH: dict[str, str] = {
    "waiting": "待派车",
    "assigned": "已派单",
    "en_route": "赶赴途中",
    "on_site": "已到场",
    "pumping": "抽排中",
    "done": "已完成",
    "cancelled": "已取消",
}
CALL_STATE_ZH: dict[str, str] = {
    "queued": "待发出",
    "calling": "叫应中",
    "answered": "已应答",
    "unanswered": "未应答",
    "stood_down": "已撤回",
}
