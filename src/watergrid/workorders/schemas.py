"""Shapes of work-order requests and answers. The REST API, the Open311 adapter and the pages
all speak these; nothing here touches the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watergrid.geo.schemas import AreaRef, DepartmentRef

Priority = Literal["emergency", "urgent", "normal"]
PRIORITIES: tuple[Priority, ...] = ("emergency", "urgent", "normal")
Unit = Literal["hours", "workdays"]
Source = Literal["public_web", "service_card", "api", "open311", "patrol", "phone"]
SOURCES: tuple[Source, ...] = ("public_web", "service_card", "api", "open311", "patrol", "phone")
# Sources a caller without a staff login may use; patrol and phone entries are staff work.
PUBLIC_SOURCES: frozenset[str] = frozenset({"public_web", "service_card", "api", "open311"})
Datatype = Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
DeadlineKind = Literal["response", "handling"]
AttributeValueIn = str | int | float | list[str]


# -- categories ------------------------------------------------------------------------


class DeadlineSpec(BaseModel):
    """A time limit: clock hours (emergencies) or Chinese working days (ordinary work)."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(gt=0, le=10_000)
    unit: Unit


class PriorityDeadlines(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response: DeadlineSpec
    handling: DeadlineSpec


class AttributeValue(BaseModel):
    """One choice of a list attribute (Open311 `values`: key and name)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    name_en: str = Field("", max_length=100)


class AttributeDef(BaseModel):
    """An extra question asked for a category, shaped like an Open311 service attribute."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    datatype: Datatype
    required: bool = False
    # False: a fixed piece of information shown to the reporter, not a question.
    variable: bool = True
    description: str = Field(min_length=1, max_length=200)
    description_en: str = Field("", max_length=200)
    datatype_description: str = Field("", max_length=200)
    order: int = Field(0, ge=0)
    values: list[AttributeValue] = []

    @model_validator(mode="after")
    def _lists_need_values(self) -> AttributeDef:
        listy = self.datatype in ("singlevaluelist", "multivaluelist")
        if listy and not self.values:
            raise ValueError(f"{self.datatype} attribute {self.code} needs values")
        if not listy and self.values:
            raise ValueError(f"{self.datatype} attribute {self.code} takes no values")
        keys = [v.key for v in self.values]
        if len(keys) != len(set(keys)):
            raise ValueError(f"attribute {self.code} repeats a value key")
        return self


def _check_deadlines(value: dict[str, PriorityDeadlines]) -> dict[str, PriorityDeadlines]:
    missing = [p for p in PRIORITIES if p not in value]
    extra = [p for p in value if p not in PRIORITIES]
    if missing or extra:
        raise ValueError(
            f"deadlines need exactly {list(PRIORITIES)} (missing {missing}, unknown {extra})"
        )
    return value


def _check_attributes(value: list[AttributeDef]) -> list[AttributeDef]:
    codes = [a.code for a in value]
    if len(codes) != len(set(codes)):
        raise ValueError("attribute codes must be unique")
    return value


class CategoryBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    description_zh: str = Field("", max_length=500)
    description_en: str = Field("", max_length=500)
    default_priority: Priority
    deadlines: dict[str, PriorityDeadlines]
    service_code: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.-]+$")
    keywords: list[str] = []
    attributes: list[AttributeDef] = []
    active: bool = True
    position: int = 0

    @field_validator("deadlines")
    @classmethod
    def _deadlines(cls, v: dict[str, PriorityDeadlines]) -> dict[str, PriorityDeadlines]:
        return _check_deadlines(v)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: list[AttributeDef]) -> list[AttributeDef]:
        return _check_attributes(v)


class CategoryCreate(CategoryBase):
    # "<service category>.<sub-category>"; the prefix is one of org.categories'
    # SERVICE_CATEGORIES and is what responsibility rules match on.
    code: str = Field(min_length=3, max_length=64, pattern=r"^[a-z_]+\.[a-z0-9_]+$")


class CategoryUpdate(BaseModel):
    """Fields an administrator may change; the code is the category's identity and stays."""

    model_config = ConfigDict(extra="forbid")

    name_zh: str | None = Field(None, min_length=1, max_length=100)
    name_en: str | None = Field(None, min_length=1, max_length=100)
    description_zh: str | None = Field(None, max_length=500)
    description_en: str | None = Field(None, max_length=500)
    default_priority: Priority | None = None
    deadlines: dict[str, PriorityDeadlines] | None = None
    service_code: str | None = Field(
        None, min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.-]+$"
    )
    keywords: list[str] | None = None
    attributes: list[AttributeDef] | None = None
    active: bool | None = None
    position: int | None = None

    @field_validator("deadlines")
    @classmethod
    def _deadlines(
        cls, v: dict[str, PriorityDeadlines] | None
    ) -> dict[str, PriorityDeadlines] | None:
        return None if v is None else _check_deadlines(v)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: list[AttributeDef] | None) -> list[AttributeDef] | None:
        return None if v is None else _check_attributes(v)


class CategoryRead(CategoryCreate):
    model_config = ConfigDict(extra="ignore")

    id: int
    # The service category (drainage, water_supply, ...) and its names: Open311 `group`.
    group_code: str
    group_name_zh: str
    group_name_en: str


# -- intake -----------------------------------------------------------------------------


class OrderCreate(BaseModel):
    """What a reporter (or a staff member on their behalf) submits. Photos travel beside it
    (service.create_order's `photos`) or as keys of earlier uploads (`attachment_keys`)."""

    model_config = ConfigDict(extra="forbid")

    category_code: str = Field(min_length=1, max_length=64)
    # Length is checked by the service so that the error names the limit in both languages.
    description: str = Field(min_length=1)
    lon: float
    lat: float
    address: str = Field("", max_length=200)
    attributes: dict[str, AttributeValueIn] = {}
    reporter_name: str = Field("", max_length=64)
    reporter_phone: str = ""
    # The reporter agrees that the bureau may store the number and call or text them back.
    phone_consent: bool = False
    # Set by the service-card link /s/<zone-code>: the enterprise's own zone.
    zone_code: str | None = Field(None, max_length=32)
    # Staff only (patrol, phone); public reports take the category's default.
    priority: Priority | None = None
    attachment_keys: list[str] = []
    # Open311 `media_url`: kept as a link, never fetched.
    media_url: str | None = Field(None, max_length=500)
    # Open311 `email`, `device_id`, `account_id` kept verbatim for the adapter.
    reporter_email: str = Field("", max_length=120)
    external_ref: str = Field("", max_length=120)


class DuplicateCandidate(BaseModel):
    """A nearby open order of the same category: no personal data, safe for the reporter."""

    number: str
    category_code: str
    state: str
    distance_m: float
    created_at: datetime


class OrderReceipt(BaseModel):
    """The answer to a create: identical for a replay with the same Idempotency-Key. Holds
    nothing about staff and only the reporter's own (masked) number."""

    id: int
    number: str
    state: str
    source: str
    category_code: str
    category_name_zh: str
    category_name_en: str
    priority: Priority
    created_at: datetime
    response_due_at: datetime | None
    subdistrict: AreaRef
    grid: AreaRef
    zone: AreaRef | None
    department: DepartmentRef | None
    reporter_phone_masked: str
    # Shown once: lets a reporter without a phone number track and rate the order.
    track_token: str
    possible_duplicates: list[DuplicateCandidate]
    # Deadline arithmetic fell back to Monday–Friday for a year without calendar data.
    warnings: list[str] = []


class CreateResult(BaseModel):
    """What create_order returns: the receipt, and whether it was an earlier create replayed
    through its Idempotency-Key (HTTP 200) or a new order (HTTP 201)."""

    receipt: OrderReceipt
    replayed: bool


# -- reading ----------------------------------------------------------------------------


class PersonBrief(BaseModel):
    code: str
    name: str


class ActorRead(BaseModel):
    """Who made a change. Staff views show the name; public views never do."""

    role: str | None
    department: DepartmentRef | None
    name: str | None = None


class AttachmentRead(BaseModel):
    id: int
    key: str
    filename: str
    content_type: str
    size: int
    width: int
    height: int
    created_at: datetime
    event_id: int | None
    # Path of the EXIF-free copy; staff may add ?variant=original.
    url: str


class EventRead(BaseModel):
    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str
    actor: ActorRead
    note: str
    data: dict[str, Any]


class SuspensionRead(BaseModel):
    suspended_at: datetime
    resumed_at: datetime | None
    reason: str


class ExtensionRequest(BaseModel):
    amount: float
    unit: Unit
    reason: str
    requested_at: datetime


class OrderSummary(BaseModel):
    """A row of a list: masked phone, no history."""

    id: int
    number: str
    state: str
    source: str
    category_code: str
    category_name_zh: str
    category_name_en: str
    priority: Priority
    description: str
    address: str
    lon: float
    lat: float
    created_at: datetime
    updated_at: datetime
    subdistrict: AreaRef | None
    grid: AreaRef | None
    zone: AreaRef | None
    party_group_number: int | None
    department: DepartmentRef | None
    response_due_at: datetime | None
    handling_due_at: datetime | None
    responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    # Open and past a deadline right now (a suspended order's clock stands still: never).
    overdue: bool
    # Open and a deadline falls due within settings.near_deadline_hours.
    near_deadline: bool
    reporter_phone_masked: str
    self_discovered: bool
    merged_into_number: str | None = None
    rating: int | None = None


class OrderRead(OrderSummary):
    """One order for staff in scope: history, handlers, followers, photos."""

    attributes: dict[str, Any]
    reporter_name: str
    # The whole number only for callers holding orders.reporter_contact; masked otherwise.
    reporter_phone: str
    phone_consent: bool
    media_url: str | None
    co_departments: list[DepartmentRef]
    followers: list[PersonBrief]
    accepted_at: datetime | None
    dispatched_at: datetime | None
    verified_at: datetime | None
    rejected_reason: str | None
    suspended_from: str | None
    suspensions: list[SuspensionRead]
    extension_pending: ExtensionRequest | None
    response_deadline: DeadlineSpec
    handling_deadline: DeadlineSpec
    deadline_warnings: list[str]
    possible_duplicates: list[str]
    merged_numbers: list[str]
    rating_comment: str | None
    events: list[EventRead]
    attachments: list[AttachmentRead]
    # Actions the caller may take now (lifecycle.allowed_actions): pages draw these buttons.
    allowed_actions: list[str]


class DeadlineStep(BaseModel):
    """One step of a running deadline's chain (reminder, overdue notice, escalation)."""

    deadline: DeadlineKind
    kind: str
    key: str
    at: datetime
    armed: bool  # the step now waiting in the timers


class OrderPage(BaseModel):
    items: list[OrderSummary]
    total: int
    page: int
    page_size: int


class OrderFilter(BaseModel):
    """Filters of list_orders; every one optional."""

    model_config = ConfigDict(extra="forbid")

    state: list[str] | None = None
    category_code: str | None = None  # a code or a service-category prefix ("drainage")
    overdue: bool | None = None
    near_deadline: bool | None = None
    source: str | None = None
    grid_code: str | None = None
    zone_code: str | None = None
    department_code: str | None = None
    number: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    # Only orders the caller's own department leads or co-handles.
    mine: bool = False


# -- actions ----------------------------------------------------------------------------


class ActionRequest(BaseModel):
    """Body of POST /orders/{id}/actions/{action}. Which params an action needs is listed in
    lifecycle.ACTION_PARAMS and docs/state-machine.md."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=4000)
    reason: str | None = Field(None, max_length=64)
    department_code: str | None = Field(None, max_length=32)
    co_department_codes: list[str] | None = None
    mode: Literal["on_site", "contacted"] | None = None
    amount: float | None = Field(None, gt=0, le=10_000)
    unit: Unit | None = None
    into_number: str | None = Field(None, max_length=20)
    priority: Priority | None = None
    attachment_keys: list[str] = []


# -- the reporter's side ------------------------------------------------------------------


class PublicEvent(BaseModel):
    at: datetime
    action: str
    state: str
    label_zh: str
    label_en: str
    # A role and a department, never a person.
    actor_role: str | None
    department: DepartmentRef | None
    # Only notes addressed to the reporter (reject, resolve, merge, ...).
    note: str


class PublicOrder(BaseModel):
    number: str
    state: str
    category_code: str
    category_name_zh: str
    category_name_en: str
    created_at: datetime
    address: str
    subdistrict: AreaRef | None
    grid: AreaRef | None
    department: DepartmentRef | None
    response_due_at: datetime | None
    handling_due_at: datetime | None
    responded_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reporter_phone_masked: str
    merged_into_number: str | None
    can_rate: bool
    rating: int | None
    rating_comment: str | None
    timeline: list[PublicEvent]
    photo_urls: list[str]


class PublicUpdate(BaseModel):
    """One public change of an order (Open311 servicerequestupdates): the same filtering as
    the public timeline."""

    id: int
    order_id: int
    number: str
    action: str
    state: str
    at: datetime
    label_zh: str
    label_en: str
    note: str


class QueueCounts(BaseModel):
    """Badges of a staff inbox: over the orders the caller may read."""

    open: int
    overdue: int
    near_deadline: int
    awaiting_dispatch: int


class TrackQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=20)
    phone_last4: str | None = Field(None, max_length=4)
    token: str | None = Field(None, max_length=64)


class RatingCreate(TrackQuery):
    score: int = Field(ge=1, le=5)
    comment: str = Field("", max_length=1000)


# -- supervision ------------------------------------------------------------------------


class SupervisionRead(BaseModel):
    id: int
    order_id: int
    order_number: str
    deadline: str  # response / handling / manual
    state: str  # open / closed
    opened_at: datetime
    due_at: datetime | None
    reason: str
    opened_by: str | None
    closed_at: datetime | None
    closed_reason: str | None
