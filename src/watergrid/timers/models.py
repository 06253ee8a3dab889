"""Tables the timers own: the working calendar (as data the project keeps, not a library's
opinion) and the durable due rows the sweeper works through."""

from __future__ import annotations

# The calendar has a column called `date`; importing the module keeps the annotation
# `dt.date` from resolving to that column inside the class body.
import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base, JSONType, UTCDateTime, utcnow

CALENDAR_SOURCES = ("chinese_calendar", "admin")
DUE_STATES = ("pending", "claimed", "done", "cancelled")


class CalendarDay(Base):
    """A local (Asia/Shanghai) date that departs from, or names, the Monday–Friday default:
    a public holiday (is_workday false) or a make-up working day (调休上班, is_workday true on
    a weekend). A date without a row is a working day exactly when it is Monday–Friday."""

    __tablename__ = "work_calendar"
    __table_args__ = (CheckConstraint("source IN ('chinese_calendar', 'admin')", name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date, unique=True)
    is_workday: Mapped[bool] = mapped_column(Boolean)
    # e.g. "春节", "国庆节", "春节调休上班"; shown next to dates in pages.
    name: Mapped[str] = mapped_column(String(64), default="")
    # An administrator's row is never overwritten by a later re-seed from the package.
    source: Mapped[str] = mapped_column(String(16), default="admin")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class CalendarYear(Base):
    """A year whose holidays and make-up days are completely entered. Without this row the
    year's dates still follow any CalendarDay rows, but deadlines touching it carry the
    "未录入" warning: a half-typed year must not pass for a finished one."""

    __tablename__ = "work_calendar_year"
    __table_args__ = (CheckConstraint("source IN ('chinese_calendar', 'admin')", name="source"),)

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(16), default="admin")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class DueItem(Base):
    """Something that must happen at or after `due_at`: a reminder, an escalation step, a
    call that times out. The row is the timer, so a restart or a crashed worker loses
    nothing; (kind, subject_type, subject_id, key) makes scheduling idempotent."""

    __tablename__ = "due_item"
    __table_args__ = (
        UniqueConstraint("kind", "subject_type", "subject_id", "key"),
        # What the sweeper asks for: pending rows whose time has come, oldest first.
        Index("ix_due_item_state_due_at", "state", "due_at"),
        # cancel() works by subject, usually without a kind.
        Index("ix_due_item_subject", "subject_type", "subject_id"),
        CheckConstraint("state IN ('pending', 'claimed', 'done', 'cancelled')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    # Tells apart several items of one kind on one subject (e.g. "50pct", "80pct").
    key: Mapped[str] = mapped_column(String(64), default="")
    # Every query on due_at also asks for pending items: ix_due_item_state_due_at serves it.
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The due time the last schedule() asked for. due_at moves on with retries; this does
    # not, so scheduling the same thing again is recognised as the same.
    requested_due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # Failed runs (handler errors and expired leases) since the item was last armed.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the item left the queue, done or cancelled.
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return (
            f"DueItem(id={self.id!r}, kind={self.kind!r}, subject={self.subject_type}:"
            f"{self.subject_id}, key={self.key!r}, state={self.state!r}, due_at={self.due_at!r})"
        )
