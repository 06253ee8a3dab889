"""Work-order tables. The order row holds the current state and the stored deadlines; the
history is `order_event`, which is append-only (guarded below, see _refuse_history_edits)."""

from __future__ import annotations

from datetime import datetime
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
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow

# 64-bit ids on PostgreSQL (orders and events grow without bound); SQLite needs INTEGER for
# its rowid alias.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Category(Base):
    """A sub-category a reporter can choose (an Open311 service). Its code starts with one of
    the six service categories, which is what responsibility rules match on."""

    __tablename__ = "order_category"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    group_code: Mapped[str] = mapped_column(String(32), index=True)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    description_zh: Mapped[str] = mapped_column(String(500), default="")
    description_en: Mapped[str] = mapped_column(String(500), default="")
    default_priority: Mapped[str] = mapped_column(String(16))
    # {"emergency": {"response": {"amount", "unit"}, "handling": {...}}, "urgent": ..., ...}
    deadlines: Mapped[dict[str, Any]] = mapped_column(JSONType)
    service_code: Mapped[str] = mapped_column(String(16), unique=True)
    keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Open311 attribute definitions (schemas.AttributeDef as dicts).
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OrderCounter(Base):
    """The last human number handed out per year (GM-YYYY-NNNNNN). Incremented with one
    upsert statement, so concurrent writers on PostgreSQL queue on the row instead of
    reading the same value."""

    __tablename__ = "order_counter"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class WorkOrder(Base):
    __tablename__ = "work_order"
    __table_args__ = (
        # Lists: by state and area, newest first; duplicates: by category near a point.
        Index("ix_work_order_state_created", "state", "created_at"),
        Index("ix_work_order_category_lat_lon", "category_code", "lat", "lon"),
        Index("ix_work_order_response_due", "response_due_at"),
        Index("ix_work_order_handling_due", "handling_due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # GM-YYYY-NNNNNN (intake.next_number).
    number: Mapped[str] = mapped_column(String(20), unique=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("order_category.id"))
    category_code: Mapped[str] = mapped_column(String(64))
    group_code: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(200), default="")
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    media_url: Mapped[str | None] = mapped_column(String(500))
    external_ref: Mapped[str] = mapped_column(String(120), default="")

    reporter_name: Mapped[str] = mapped_column(String(64), default="")
    reporter_phone: Mapped[str] = mapped_column(String(20), default="")
    reporter_email: Mapped[str] = mapped_column(String(120), default="")
    phone_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only a hash: the token is a bearer secret the reporter holds.
    track_token_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))

    # Routing, fixed at intake (department moves on dispatch and return).
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    subdistrict_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    party_group_number: Mapped[int | None] = mapped_column(Integer)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"), index=True)

    # Deadlines: the limits are copied from the category at intake so that later edits of
    # the category do not move running clocks; the due times are computed once and moved
    # only by suspension/resumption, extension and reopening.
    response_limit: Mapped[dict[str, Any]] = mapped_column(JSONType)
    handling_limit: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handling_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handling_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    extension_pending: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_reason: Mapped[str | None] = mapped_column(String(32))
    # Where a suspended order returns to on resume.
    suspended_from: Mapped[str | None] = mapped_column(String(16))

    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"), index=True)
    # Ids of the nearby open orders offered as duplicates at intake.
    duplicate_candidate_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)

    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderEvent(Base):
    """One change of an order: who, when, from, to, what and why. Never updated or deleted."""

    __tablename__ = "order_event"
    __table_args__ = (Index("ix_order_event_order_at", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    # None for the reporter and for the system (timers).
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    # The role the change was allowed under ("reporter", "system" when no user).
    actor_role: Mapped[str | None] = mapped_column(String(32))
    actor_department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    # Snapshot of the display name: history must read the same after a user is renamed.
    actor_name: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class OrderCoHandler(Base):
    """Joint handling: departments working with the lead department (order.department_id)."""

    __tablename__ = "order_co_handler"
    __table_args__ = (UniqueConstraint("order_id", "department_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OrderFollower(Base):
    """People kept informed of an order: the zone's chain leader, the grid's party group
    leader (at intake), anyone a staff member adds later."""

    __tablename__ = "order_follower"
    __table_args__ = (UniqueConstraint("order_id", "person_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No index of its own: the unique (order_id, person_id) index serves look-ups by order.
    order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    # chain_leader / party_group_leader
    reason: Mapped[str] = mapped_column(String(32))


class OrderSuspension(Base):
    """A period during which the order's clocks stood still (挂起)."""

    __tablename__ = "order_suspension"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id"), index=True)
    suspended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(64), default="")


class IdempotencyRecord(Base):
    """A create's Idempotency-Key: the hash of the request it came with and the receipt it
    got, so a retry is answered with the same body and never makes a second order."""

    __tablename__ = "idempotency_key"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    # Both set before the transaction that inserted the row commits; NULL is only ever seen
    # by that transaction itself (the row is written first so that a concurrent request
    # with the same key waits on it).
    # Not indexed: nothing looks keys up by order, and orders are never deleted (an index
    # would be one more entry written by every create).
    order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"))
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Attachment(Base):
    """A photo. Uploaded before an order exists (order_id NULL, referenced later by key) or
    attached to an order and, optionally, to the event it documents."""

    __tablename__ = "order_attachment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("order_event.id"))
    filename: Mapped[str] = mapped_column(String(200), default="")
    # Of the public copy (the original keeps its own type).
    content_type: Mapped[str] = mapped_column(String(32))
    original_content_type: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    original_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AttachmentBlob(Base):
    """The bytes, apart from the metadata so that listing photos never loads them. Kept in
    the database so that an order and its photos commit together and every app process
    sees them without shared storage."""

    __tablename__ = "order_attachment_blob"

    attachment_id: Mapped[int] = mapped_column(
        ForeignKey("order_attachment.id", ondelete="CASCADE"), primary_key=True
    )
    # As uploaded, EXIF included: staff only (it may carry the reporter's device data).
    original: Mapped[bytes] = mapped_column(LargeBinary)
    # Re-encoded, EXIF stripped, orientation applied: what the public sees.
    public: Mapped[bytes] = mapped_column(LargeBinary)


class Supervision(Base):
    """A supervision record (督办): a missed deadline escalated to the bureau, or a leader's
    own call. Closed when the deadline's work is done."""

    __tablename__ = "supervision"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'closed')", name="state"),
        Index("ix_supervision_state_opened", "state", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_order.id"), index=True)
    # response / handling (escalation) or manual (a leader's own 督办)
    deadline: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    opened_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_reason: Mapped[str | None] = mapped_column(String(64))


# -- append-only history ----------------------------------------------------------------------


class HistoryIsAppendOnly(RuntimeError):
    pass


@event.listens_for(OrderEvent, "before_update")
def _refuse_event_update(*_: object) -> None:
    raise HistoryIsAppendOnly("order_event rows are never updated")


@event.listens_for(OrderEvent, "before_delete")
def _refuse_event_delete(*_: object) -> None:
    raise HistoryIsAppendOnly("order_event rows are never deleted")


@event.listens_for(Session, "do_orm_execute")
def _refuse_history_edits(state: Any) -> None:
    # Bulk update()/delete() statements skip the mapper events above; catch them here.
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ is OrderEvent:
        raise HistoryIsAppendOnly("order_event rows are never updated or deleted")
