"""The caller's in-app inbox, and the outbox for administrators."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query

from watergrid.auth.deps import allow
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.errors import not_found
from watergrid.notify import service
from watergrid.notify.models import InboxItem, OutboxMessage
from watergrid.notify.schemas import InboxItemRead, InboxPage, OutboxRead
from watergrid.org.service import mask_mobile

router = APIRouter(prefix="/api/v1", tags=["notifications"])
InboxReader = Annotated[Principal, Depends(allow("inbox.read"))]
# Outbox rows are delivery plumbing: the operators who read the metrics read these too.
OutboxReader = Annotated[Principal, Depends(allow("ops.metrics"))]


def _item(item: InboxItem) -> InboxItemRead:
    return InboxItemRead.model_validate(item, from_attributes=True)


@router.get("/inbox", response_model=InboxPage)
def inbox(
    db: SessionDep,
    principal: InboxReader,
    unread_only: bool = False,
    limit: int = Query(50, ge=1, le=200),
    before_id: int | None = Query(None, description="Page back: items older than this id"),
) -> InboxPage:
    """The caller's own in-app messages, newest first."""
    if principal.person_id is None:
        # An account not linked to a person (a service account) has no inbox.
        return InboxPage(items=[], unread=0)
    items = service.inbox(
        db, person_id=principal.person_id, unread_only=unread_only, limit=limit, before_id=before_id
    )
    return InboxPage(
        items=[_item(i) for i in items],
        unread=service.unread_count(db, person_id=principal.person_id),
    )


@router.post("/inbox/{item_id}/read", response_model=InboxItemRead)
def mark_read(db: SessionDep, principal: InboxReader, item_id: int) -> InboxItemRead:
    """Mark one of the caller's own messages read; anyone else's is 404."""
    if principal.person_id is None:
        raise not_found("Inbox item", "消息", item_id)
    return _item(service.mark_read(db, person_id=principal.person_id, item_id=item_id))


def mask_address(channel: str, address: str) -> str:
    """Enough to recognise a target, not enough to use it: robot URLs carry their key."""
    if not address:
        return ""
    if channel == "sms":
        return mask_mobile(address)
    if channel == "email":
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    parts = urlsplit(address)
    if parts.scheme and parts.hostname:
        return f"{parts.scheme}://{parts.hostname}/***"
    return "***"


@router.get("/notify/outbox", response_model=list[OutboxRead])
def outbox(
    db: SessionDep,
    _: OutboxReader,
    state: Literal["pending", "sending", "sent", "failed"] | None = None,
    limit: int = Query(100, ge=1, le=500),
    before_id: int | None = Query(None, description="Page back: rows older than this id"),
) -> list[OutboxRead]:
    """Outgoing messages, newest first, with masked addresses."""
    return [_outbox(m) for m in service.outbox(db, state=state, limit=limit, before_id=before_id)]


def _outbox(m: OutboxMessage) -> OutboxRead:
    return OutboxRead(
        id=m.id,
        message_id=m.message_id,
        person_id=m.person_id,
        channel=m.channel,
        address_masked=mask_address(m.channel, m.address),
        topic=m.topic,
        subject=m.subject,
        subject_type=m.subject_type,
        subject_id=m.subject_id,
        state=m.state,
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        last_error=m.last_error,
        created_at=m.created_at,
        sent_at=m.sent_at,
    )
