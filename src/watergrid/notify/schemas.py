"""What the notification routes answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class InboxItemRead(BaseModel):
    id: int
    topic: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemRead]
    unread: int = Field(description="All unread items of the caller, not only this page")


class OutboxRead(BaseModel):
    id: int
    message_id: str
    person_id: int | None
    channel: str
    address_masked: str = Field(description="Numbers, mailboxes and robot keys are masked")
    topic: str
    subject: str
    subject_type: str
    subject_id: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
