"""Inspection tables. A campaign copies its checklist from a template when it is created, so
that editing the template later never changes what a running campaign asks. The history of
findings and rectifications is `insp_event`, append-only (guarded at the bottom)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow

# 64-bit ids on PostgreSQL for the rows that grow with every inspection; SQLite needs INTEGER
# for its rowid alias.
BigId = BigInteger().with_variant(Integer, "sqlite")

FINDING_STATES = ("open", "rectifying", "rectified", "verified", "void")
METHODS = ("on_site", "letter", "guidance")
SEVERITIES = ("minor", "major", "critical")
ANSWERS = ("ok", "fault", "na")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class ChecklistTemplate(Base):
    """A reusable checklist: items, what counts as a fault, severity (schemas.ChecklistItem
    as dicts, in order)."""

    __tablename__ = "insp_template"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(Base):
    __tablename__ = "insp_campaign"
    __table_args__ = (CheckConstraint("state IN ('active', 'closed')", name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Text, default="")
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    lead_department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    template_id: Mapped[int | None] = mapped_column(ForeignKey("insp_template.id"))
    # The template's items as they were when the campaign started.
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    # Working days to rectify, per method: {"on_site": 5, "letter": 15, "guidance": 20}.
    rectify_limits: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Working days after a missed rectification deadline at which it is escalated.
    escalation_workdays: Mapped[float] = mapped_column(Float, default=3.0)
    # 发文字号's agency abbreviation: 光水排查函〔2024〕7号.
    letter_prefix: Mapped[str] = mapped_column(String(32), default="光水排查函")
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Target(Base):
    """Something the campaign must inspect (demo: a residential community), located in a
    grid when it is added so figures group by subdistrict and grid without geometry."""

    __tablename__ = "insp_target"
    __table_args__ = (
        UniqueConstraint("campaign_id", "code"),
        Index("ix_insp_target_campaign_grid", "campaign_id", "grid_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    address: Mapped[str] = mapped_column(String(200), default="")
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("area.id"), index=True)
    # The first key zone the target lies in, for escalation to its chain leader.
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"))
    build_year: Mapped[int | None] = mapped_column(Integer)
    property_company: Mapped[str] = mapped_column(String(120), default="")
    contact_name: Mapped[str] = mapped_column(String(64), default="")
    contact_phone: Mapped[str] = mapped_column(String(20), default="")
    source: Mapped[str] = mapped_column(String(16), default="csv")
    # Set by the first (initial) inspection: what coverage counts.
    inspected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Inspector(Base):
    """A person assigned to inspect a campaign's targets in one grid."""

    __tablename__ = "insp_inspector"
    __table_args__ = (UniqueConstraint("campaign_id", "grid_id", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)


class Inspection(Base):
    """One visit: the checklist answers (initial) or the verdicts on open findings
    (re-inspection), where the phone was, notes. `client_key` comes from the phone's draft, so
    a submit retried after a dropped connection finds this row instead of making another."""

    __tablename__ = "insp_inspection"
    __table_args__ = (
        CheckConstraint("kind IN ('initial', 'reinspection')", name="kind"),
        Index("ix_insp_inspection_target", "target_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("insp_target.id"))
    kind: Mapped[str] = mapped_column(String(16))
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    inspector_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    inspector_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    inspector_name: Mapped[str] = mapped_column(String(64), default="")
    # Server time of the submit: what coverage and deadlines count from.
    inspected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The phone's own clock when the form was filled in (may be off; kept for the record).
    observed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    # From the target's recorded position; a large value is shown as a warning, not refused
    # (a community's gate can lie far from its mapped point).
    distance_m: Mapped[float | None] = mapped_column(Float)
    notes: Mapped[str] = mapped_column(Text, default="")
    # {item_code: {"answer": "ok|fault|na", "note": str}} for initial inspections.
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # {finding_id: {"result": "passed|failed", "note": str}} for re-inspections.
    verdicts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    fault_count: Mapped[int] = mapped_column(Integer, default=0)


class Finding(Base):
    """A fault: one failed checklist item at one target. Its state is the rectification's
    progress; `rectification_id` is the current round."""

    __tablename__ = "insp_finding"
    __table_args__ = (
        CheckConstraint(f"state IN ({_in(FINDING_STATES)})", name="state"),
        Index("ix_insp_finding_campaign_state", "campaign_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("insp_target.id"), index=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("insp_inspection.id"))
    item_code: Mapped[str] = mapped_column(String(32))
    # Snapshot of the checklist item, so a printed letter reads the same later.
    item_text: Mapped[str] = mapped_column(String(300))
    section: Mapped[str] = mapped_column(String(32), default="")
    severity: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    # What the inspector proposed on site when the office still has to act (a letter).
    proposed_method: Mapped[str | None] = mapped_column(String(16))
    # The current round. No foreign key: rounds already point at their finding, and a cycle
    # of keys between the two tables would complicate creating and dropping them.
    rectification_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite")
    )
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    # The due time of the first rectification round: what "on time" is judged against.
    first_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Rectification(Base):
    """One round of putting a finding right: by whom, how, by when. A failed verification
    closes the round and opens the next."""

    __tablename__ = "insp_rectification"
    __table_args__ = (
        CheckConstraint(f"method IN ({_in(METHODS)})", name="method"),
        UniqueConstraint("finding_id", "round"),
        Index("ix_insp_rectification_due", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("insp_finding.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    responsible_party: Mapped[str] = mapped_column(String(120))
    responsible_contact: Mapped[str] = mapped_column(String(64), default="")
    responsible_phone: Mapped[str] = mapped_column(String(20), default="")
    # 技术指导: which department guides, and what was advised.
    guide_department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    guidance: Mapped[str] = mapped_column(Text, default="")
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("insp_letter.id"), index=True)
    limit_workdays: Mapped[float] = mapped_column(Float)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    deadline_warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The responsible party reported the work done (awaiting re-inspection).
    rectified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rectified_note: Mapped[str] = mapped_column(Text, default="")
    # Set at re-inspection: passed or failed; closes the round.
    outcome: Mapped[str | None] = mapped_column(String(16))
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    overdue_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))


class Letter(Base):
    """A reminder letter (整改提醒函) to a target's responsible party, numbered per prefix
    and year. What it says is stored with it: a reprint reads exactly like the original."""

    __tablename__ = "insp_letter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("insp_target.id"), index=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    addressee: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    # [{"item_text", "note", "severity", "finding_id"}], in the order printed.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    issuer: Mapped[str] = mapped_column(String(120))
    contact_name: Mapped[str] = mapped_column(String(64), default="")
    contact_phone: Mapped[str] = mapped_column(String(32), default="")
    copy_to: Mapped[str] = mapped_column(String(300), default="")
    issued_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))


class LetterCounter(Base):
    """The last sequence number handed out per letter prefix and year, taken with one upsert
    so that two offices issuing at once never share a number."""

    __tablename__ = "insp_letter_counter"

    prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Photo(Base):
    """A photo from an inspection, of one checklist item, one finding or the visit as a whole.
    Checked and stripped of EXIF by the work orders' photo helpers."""

    __tablename__ = "insp_photo"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    inspection_id: Mapped[int | None] = mapped_column(ForeignKey("insp_inspection.id"), index=True)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("insp_finding.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("insp_event.id"))
    item_code: Mapped[str] = mapped_column(String(32), default="")
    filename: Mapped[str] = mapped_column(String(200), default="")
    content_type: Mapped[str] = mapped_column(String(32))
    original_content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PhotoBlob(Base):
    """The bytes, apart from the metadata so that listing photos never loads them."""

    __tablename__ = "insp_photo_blob"

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("insp_photo.id", ondelete="CASCADE"), primary_key=True
    )
    # As taken, EXIF included (the inspector's own position and device): staff only.
    original: Mapped[bytes] = mapped_column(LargeBinary)
    public: Mapped[bytes] = mapped_column(LargeBinary)


class InspEvent(Base):
    """One change of a finding or its rectification: who, when, from, to, what and why.
    Never updated or deleted."""

    __tablename__ = "insp_event"
    __table_args__ = (Index("ix_insp_event_finding", "finding_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("insp_campaign.id"))
    target_id: Mapped[int] = mapped_column(ForeignKey("insp_target.id"), index=True)
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("insp_finding.id"))
    rectification_id: Mapped[int | None] = mapped_column(ForeignKey("insp_rectification.id"))
    inspection_id: Mapped[int | None] = mapped_column(ForeignKey("insp_inspection.id"))
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("insp_letter.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    # None for the system (timers).
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    # Snapshot: the history must read the same after someone is renamed.
    actor_name: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


# -- append-only history ----------------------------------------------------------------


class HistoryIsAppendOnly(RuntimeError):
    pass


@event.listens_for(InspEvent, "before_update")
def _refuse_event_update(*_: object) -> None:
    raise HistoryIsAppendOnly("insp_event rows are never updated")


@event.listens_for(InspEvent, "before_delete")
def _refuse_event_delete(*_: object) -> None:
    raise HistoryIsAppendOnly("insp_event rows are never deleted")


@event.listens_for(Session, "do_orm_execute")
def _refuse_history_edits(state: Any) -> None:
    # Bulk update()/delete() statements skip the mapper events above; catch them here.
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ is InspEvent:
        raise HistoryIsAppendOnly("insp_event rows are never updated or deleted")
