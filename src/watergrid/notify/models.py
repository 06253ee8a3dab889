"""The outbox and what hangs off it: the delivery log, people's channel preferences and the
in-app inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from watergrid.db import Base, UTCDateTime, utcnow

CHANNELS = ("inapp", "wecom", "dingtalk", "email", "webhook", "sms")
STATES = ("pending", "sending", "sent", "failed")
ERROR_CLASSES = ("transient", "permanent")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets room for years of rows.
_BigId = BigInteger().with_variant(Integer, "sqlite")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def new_message_id() -> str:
    return str(uuid.uuid4())


class OutboxMessage(Base):
    """One message to one address over one channel, written in the transaction of the change
    that causes it. `message_id` never changes, so every attempt carries the same id and a
    receiver can drop repeats."""

    __tablename__ = "outbox"
    __table_args__ = (
        # What workers ask for: rows to look at now. For 'pending' rows next_attempt_at is
        # when to try (again); for 'sending' rows it is when the claiming worker's lease
        # runs out. Partial, because sent and failed rows pile up and are never due.
        Index(
            "ix_outbox_due",
            "state",
            "next_attempt_at",
            postgresql_where=text("state IN ('pending', 'sending')"),
            sqlite_where=text("state IN ('pending', 'sending')"),
        ),
        Index("ix_outbox_subject", "subject_type", "subject_id"),
        CheckConstraint(f"state IN ({_quoted(STATES)})", name="state"),
        CheckConstraint(f"channel IN ({_quoted(CHANNELS)})", name="channel"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_message_id)
    # None for a raw address (a duty-room robot, an outside system's webhook).
    # Not indexed: messages are found by state, subject or id, never by person (the inbox
    # has its own table), and people are deactivated, never deleted; an index would be an
    # entry more for every message of every create.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    channel: Mapped[str] = mapped_column(String(16))
    # Resolved when enqueued: a later change of someone's number does not redirect a
    # message that is already on its way, and the log shows where it really went.
    address: Mapped[str] = mapped_column(String(500), default="")
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500))
    topic: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    # The caller's key plus recipient and channel; UNIQUE lets many NULLs through on both
    # engines, so only keyed notifications are de-duplicated.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return (
            f"OutboxMessage(id={self.id!r}, message_id={self.message_id!r}, "
            f"channel={self.channel!r}, state={self.state!r}, attempts={self.attempts!r})"
        )


class DeliveryAttempt(Base):
    """One try at sending an outbox message, successful or not. Append-only."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (
        CheckConstraint(
            f"error_class IS NULL OR error_class IN ({_quoted(ERROR_CLASSES)})",
            name="error_class",
        ),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(
        _BigId, ForeignKey("outbox.id", ondelete="CASCADE"), index=True
    )
    # 1 for the first try; equals outbox.attempts at the time of the try.
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    error_class: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)


class ChannelPreference(Base):
    """A channel a person wants to be reached on. Every active preference is used; the
    in-app inbox is always written in addition. An empty address means the person's own
    mobile (sms) or e-mail (email)."""

    __tablename__ = "channel_preference"
    __table_args__ = (
        UniqueConstraint("person_id", "channel", "address"),
        CheckConstraint(f"channel IN ({_quoted(CHANNELS)})", name="channel"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(500), default="")
    # Lower goes first: messages of one notification are queued in this order.
    priority: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class InboxItem(Base):
    """An in-app message, written together with its outbox row so it is there the moment
    the causing change commits."""

    __tablename__ = "inbox_item"
    __table_args__ = (Index("ix_inbox_item_person_read", "person_id", "read_at"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    outbox_id: Mapped[int] = mapped_column(
        _BigId, ForeignKey("outbox.id", ondelete="CASCADE"), unique=True
    )
    topic: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
