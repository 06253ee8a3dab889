"""Statutory service tables. The application row holds the current state and the stored due
time; correction requests are `permit_suspension` rows (the clock stands still while one is
open); the history is `permit_event`, append-only (guarded at the bottom)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    event,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")

STATES = ("submitted", "correction", "under_review", "approved", "refused", "not_accepted")
FINAL_STATES = ("approved", "refused", "not_accepted")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class PermitCounter(Base):
    """Last number handed out per prefix and year (application and decision numbers), taken
    with one upsert so that concurrent submissions never share a number."""

    __tablename__ = "permit_counter"

    prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Application(Base):
    __tablename__ = "permit_application"
    __table_args__ = (
        CheckConstraint(f"state IN ({_in(STATES)})", name="state"),
        Index("ix_permit_application_state_due", "state", "due_at"),
        Index("ix_permit_application_decided", "decided_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    service_code: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16))
    # The form's own key: a submit retried after a dropped connection returns this row.
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    # Only a hash: the token is the applicant's secret for following up and correcting.
    access_token_sha256: Mapped[str] = mapped_column(String(64))

    project_name: Mapped[str] = mapped_column(String(200))
    project_address: Mapped[str] = mapped_column(String(200))
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    grid_id: Mapped[int] = mapped_column(ForeignKey("area.id"))
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("area.id"))
    applicant_name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18))
    contact_name: Mapped[str] = mapped_column(String(64))
    contact_phone: Mapped[str] = mapped_column(String(20))
    contact_email: Mapped[str] = mapped_column(String(120), default="")
    sms_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Service-specific project data (catalog.DrainageDetails / SwcDetails as a dict).
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    # The service's limit when the application arrived; later catalog edits do not move it.
    limit_workdays: Mapped[float] = mapped_column(Float)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # None while a correction request has the clock stopped.
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deadline_warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Where the application returns when the corrections arrive.
    correction_from: Mapped[str | None] = mapped_column(String(16))
    overdue_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision_number: Mapped[str | None] = mapped_column(String(64), unique=True)
    decision_reasons: Mapped[str] = mapped_column(Text, default="")
    decision_conditions: Mapped[str] = mapped_column(Text, default="")
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    decider_name: Mapped[str] = mapped_column(String(64), default="")
    # Decided by the due time: what the KPIs count.
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    # Working days the decision took, correction periods left out.
    used_workdays: Mapped[float | None] = mapped_column(Float)

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Suspension(Base):
    """A correction request (补正): the documents asked for, and the period during which the
    statutory clock stood still."""

    __tablename__ = "permit_suspension"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("permit_application.id"), index=True)
    suspended_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resumed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    doc_codes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    note: Mapped[str] = mapped_column(Text, default="")


class Document(Base):
    """One uploaded file for one checklist entry. `round` 0 came with the application, n with
    the nth correction; nothing is overwritten, the latest round is the current one."""

    __tablename__ = "permit_document"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("permit_application.id"), index=True)
    doc_code: Mapped[str] = mapped_column(String(32))
    round: Mapped[int] = mapped_column(Integer, default=0)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DocumentBlob(Base):
    __tablename__ = "permit_document_blob"

    document_id: Mapped[int] = mapped_column(
        ForeignKey("permit_document.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PermitEvent(Base):
    """One change of an application: who, when, from, to, what and why. Never updated or
    deleted."""

    __tablename__ = "permit_event"
    __table_args__ = (Index("ix_permit_event_application", "application_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("permit_application.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    # None for the applicant and for the system (timers).
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class HistoryIsAppendOnly(RuntimeError):
    pass


@event.listens_for(PermitEvent, "before_update")
def _refuse_event_update(*_: object) -> None:
    raise HistoryIsAppendOnly("permit_event rows are never updated")


@event.listens_for(PermitEvent, "before_delete")
def _refuse_event_delete(*_: object) -> None:
    raise HistoryIsAppendOnly("permit_event rows are never deleted")


@event.listens_for(Session, "do_orm_execute")
def _refuse_history_edits(state: Any) -> None:
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ is PermitEvent:
        raise HistoryIsAppendOnly("permit_event rows are never updated or deleted")
