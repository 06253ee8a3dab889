"""Enqueueing notifications, the in-app inbox and channel preferences.

Every function writes into the caller's transaction and never commits: a notification is
part of the change that causes it, so both commit or neither does. Nothing here sends."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Integer, Table, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from watergrid.db import Statement, json_param, pg_insert_from_json, utcnow
from watergrid.errors import AppError, FieldError, invalid, not_found
from watergrid.notify.models import (
    CHANNELS,
    ChannelPreference,
    InboxItem,
    OutboxMessage,
    new_message_id,
)
from watergrid.org.models import Person

log = logging.getLogger("watergrid.notify")

EXTERNAL_CHANNELS = tuple(c for c in CHANNELS if c != "inapp")


def _field_error(name: str, message: str, message_zh: str) -> AppError:
    return invalid([FieldError(field=name, message=message, message_zh=message_zh)])


def _row_key(dedupe_key: str, recipient: str, channel: str, address: str) -> str:
    """The stored, unique key of one row of a keyed notification: the caller's key says
    which logical notification; recipient, channel and address say which of its rows (a
    person may follow two group robots). The address enters as a short hash, so the key
    neither grows with it nor shows a number in clear."""
    where = hashlib.sha256(address.encode()).hexdigest()[:12] if address else "-"
    key = f"{dedupe_key}|{recipient}|{channel}|{where}"
    if len(key) <= 255:
        return key
    return f"{dedupe_key[:180]}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class _Reachable(Protocol):
    """What channel resolution reads of a person: a Person row or a _Who."""

    @property
    def id(self) -> int: ...
    @property
    def mobile(self) -> str: ...
    @property
    def email(self) -> str: ...


class _Preference(Protocol):
    @property
    def channel(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def active(self) -> bool: ...


class _Who(NamedTuple):
    id: int
    active: bool
    mobile: str
    email: str


class _Pref(NamedTuple):
    channel: str
    address: str
    active: bool


def _targets(person: _Reachable, prefs: Iterable[_Preference]) -> list[tuple[str, str]]:
    """(channel, address) pairs a person is reached on, in-app first, then `prefs` in
    their order. A preference without an address falls back to the person's own mobile
    or e-mail; one that still has none is skipped (the in-app message remains)."""
    targets: list[tuple[str, str]] = [("inapp", "")]
    for pref in prefs:
        if pref.channel == "inapp" or not pref.active:
            continue
        address = pref.address.strip()
        if not address and pref.channel == "sms":
            address = person.mobile.strip()
        elif not address and pref.channel == "email":
            address = person.email.strip()
        if not address:
            log.info(
                "channel preference without an address skipped",
                extra={"fields": {"person_id": person.id, "channel": pref.channel}},
            )
            continue
        if (pref.channel, address) not in targets:
            targets.append((pref.channel, address))
    return targets


def resolve_channels(db: Session, *, person: Person) -> list[tuple[str, str]]:
    """Where a notification to `person` goes now: in-app, then each active preference in
    priority order."""
    return _targets(person, preferences(db, person_id=person.id))


# Everyone's active preferences with the person in one query (a warning may go to hundreds
# of people, and an order's create must not pay two round trips for a handful).
_RECIPIENTS_ALL = (
    select(
        Person.id,
        Person.active,
        Person.mobile,
        Person.email,
        ChannelPreference.channel,
        ChannelPreference.address,
    )
    .outerjoin(
        ChannelPreference,
        (ChannelPreference.person_id == Person.id) & ChannelPreference.active.is_(True),
    )
    .order_by(Person.id, ChannelPreference.priority, ChannelPreference.id)
)
# PostgreSQL takes the ids as one array parameter: a statement of fixed text. Elsewhere an
# expanding IN, which SQLAlchemy renders anew for each execution.
_RECIPIENTS = {
    "postgresql": _RECIPIENTS_ALL.where(
        Person.id == any_(bindparam("ids", type_=PG_ARRAY(Integer)))
    ),
    "default": _RECIPIENTS_ALL.where(Person.id.in_(bindparam("ids", expanding=True))),
}

# (recipient, person id or None, channel, address): one outbox row.
Wanted = tuple[str, int | None, str, str]


# Each person's (channel, address) targets, by person id.
Targets = dict[int, list[tuple[str, str]]]


def _person_targets(db: Session, person_ids: list[int]) -> Targets:
    """Each person's (channel, address) targets, from one query; an inactive person has
    none (and is logged), an unknown one is an error."""
    rows: Sequence[Sequence[Any]] = []
    if person_ids:
        if db.autoflush:
            db.flush()  # as a session query would: people added just now must be found
        conn = db.connection()
        stmt = _RECIPIENTS.get(conn.dialect.name, _RECIPIENTS["default"])
        rows = conn.execute(stmt, {"ids": person_ids}).all()
    return targets_from(rows, person_ids)


_RECIPIENTS_PG_SQL = str(_RECIPIENTS["postgresql"].compile(dialect=psycopg_dialect()))


def recipients_pg(person_ids: list[int]) -> Statement:
    """_person_targets' query as a statement to send with others (db.pg_together,
    PostgreSQL); targets_from reads its rows."""
    return _RECIPIENTS_PG_SQL, {"ids": person_ids}


def targets_from(rows: Sequence[Sequence[Any]], person_ids: list[int]) -> Targets:
    """The targets of `person_ids` from the recipients query's rows (_person_targets)."""
    people: dict[int, _Who] = {}
    prefs: dict[int, list[_Pref]] = {}
    for pid, active, mobile, email, channel, address in rows:
        if pid not in people:
            people[pid] = _Who(pid, bool(active), mobile or "", email or "")
            prefs[pid] = []
        if channel is not None:
            prefs[pid].append(_Pref(channel, address or "", True))
    missing = [pid for pid in person_ids if pid not in people]
    if missing:
        raise not_found("Person", "人员", ", ".join(map(str, missing)))
    out: Targets = {}
    for pid, person in people.items():
        if not person.active:
            log.info(
                "notification to inactive person skipped", extra={"fields": {"person_id": pid}}
            )
            out[pid] = []
        else:
            out[pid] = _targets(person, prefs[pid])
    return out


def _plan(
    db: Session,
    *,
    person_ids: Iterable[int],
    addresses: Iterable[tuple[str, str]],
    topic: str,
    subject: str,
    body: str,
    link: str | None,
    subject_type: str,
    subject_id: str | int,
) -> tuple[list[Wanted], dict[str, str | None]]:
    """Check a notification and resolve its recipients: the rows wanted and the columns
    they share. Raises AppError; writes nothing."""
    person_ids = list(dict.fromkeys(person_ids))
    raw_targets = list(dict.fromkeys((c.strip(), a.strip()) for c, a in addresses))
    if not person_ids and not raw_targets:
        raise _field_error("person_ids", "No recipients", "没有接收人")
    for channel, address in raw_targets:
        if channel not in EXTERNAL_CHANNELS:
            raise _field_error(
                "addresses", f"Unknown channel {channel!r}", f"未知的通知渠道：{channel}"
            )
        if not address:
            raise _field_error("addresses", "Empty address", "地址为空")
    if not subject.strip():
        raise _field_error("subject", "Subject is empty", "标题不能为空")

    targets = _person_targets(db, person_ids)
    wanted: list[Wanted] = []
    for pid in person_ids:
        for channel, address in targets[pid]:
            wanted.append((f"p{pid}", pid, channel, address))
    for channel, address in raw_targets:
        wanted.append(("raw", None, channel, address))

    return wanted, _common(subject, body, link, topic, subject_type, subject_id)


def _common(
    subject: str, body: str, link: str | None, topic: str, subject_type: str, subject_id: str | int
) -> dict[str, str | None]:
    """The columns every row of one message shares, whatever its channel."""
    return {
        "subject": subject.strip()[:200],
        "body": body,
        "link": link,
        "topic": topic,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
    }


def enqueue(
    db: Session,
    *,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    link: str | None = None,
    subject_type: str,
    subject_id: str | int,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> list[OutboxMessage]:
    """Queue one notification for people (over their preferred channels, always including
    the in-app inbox, which is written at once) and/or raw (channel, address) targets.

    Rows are added to the caller's transaction. With `dedupe_key`, enqueueing the same
    notification again returns the rows already there instead of adding new ones (per
    recipient and channel). Inactive people are skipped; unknown ones are an error."""
    now = now or utcnow()
    wanted, common = _plan(
        db,
        person_ids=person_ids,
        addresses=addresses,
        topic=topic,
        subject=subject,
        body=body,
        link=link,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    if dedupe_key is None:
        return _write(db, wanted, common, None, now)

    # Keyed: rows already there are returned, the rest written. A concurrent transaction
    # writing the same key makes our insert fail on the unique key; the savepoint keeps the
    # caller's transaction alive, and the second pass then finds that transaction's rows.
    for attempt in (1, 2):
        keys = {w: _row_key(dedupe_key, w[0], w[2], w[3]) for w in wanted}
        existing = {
            m.dedupe_key: m
            for m in db.scalars(
                select(OutboxMessage).where(OutboxMessage.dedupe_key.in_(list(keys.values())))
            )
        }
        todo = [w for w in wanted if keys[w] not in existing]
        try:
            with db.begin_nested():
                created = _write(db, todo, common, {w: keys[w] for w in todo}, now)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        by_key = {m.dedupe_key: m for m in created} | existing
        return [by_key[keys[w]] for w in wanted]
    raise AssertionError("unreachable")


def enqueue_ids(
    db: Session,
    *,
    person_ids: Iterable[int] = (),
    addresses: Iterable[tuple[str, str]] = (),
    topic: str,
    subject: str,
    body: str,
    link: str | None = None,
    subject_type: str,
    subject_id: str | int,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> list[int]:
    """enqueue() for callers that only need the rows written, such as a work order's create:
    the same rows, checks and de-duplication, but written with one multi-row INSERT per
    table and answered with the outbox ids instead of loaded objects, which is most of what
    a notification costs on a hot path."""
    now = now or utcnow()
    wanted, common = _plan(
        db,
        person_ids=person_ids,
        addresses=addresses,
        topic=topic,
        subject=subject,
        body=body,
        link=link,
        subject_type=subject_type,
        subject_id=subject_id,
    )
    if dedupe_key is None:
        return _insert_rows(db, wanted, common, None, now)
    for attempt in (1, 2):
        keys = {w: _row_key(dedupe_key, w[0], w[2], w[3]) for w in wanted}
        existing: dict[str | None, int] = {
            key: oid
            for key, oid in db.execute(
                select(OutboxMessage.dedupe_key, OutboxMessage.id).where(
                    OutboxMessage.dedupe_key.in_(list(keys.values()))
                )
            )
        }
        todo = [w for w in wanted if keys[w] not in existing]
        try:
            with db.begin_nested():
                ids = _insert_rows(db, todo, common, {w: keys[w] for w in todo}, now)
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        created = {keys[w]: oid for w, oid in zip(todo, ids, strict=True)}
        return [created.get(keys[w]) or existing[keys[w]] for w in wanted]
    raise AssertionError("unreachable")


class PersonMessage(NamedTuple):
    """One message for one person, as enqueue_each takes them."""

    person_id: int
    subject: str
    body: str
    link: str | None
    subject_id: str | int


def enqueue_each(
    db: Session,
    messages: Sequence[PersonMessage],
    *,
    topic: str,
    subject_type: str,
    now: datetime | None = None,
) -> list[int]:
    """Many messages, each to its own person (a call round's first notifications: every
    person gets an answer link of their own), checked like enqueue() and written like
    enqueue_ids(): recipients from one query and every row in one multi-row INSERT per
    table, however many messages. A thousand separate enqueues cost a thousand round trips
    of each kind, which on PostgreSQL was most of a district-wide warning's fan-out."""
    now = now or utcnow()
    return _insert_row_dicts(
        db, plan_each(db, messages, topic=topic, subject_type=subject_type, now=now), now
    )


def plan_each(
    db: Session,
    messages: Sequence[PersonMessage],
    *,
    topic: str,
    subject_type: str,
    now: datetime,
    targets: Targets | None = None,
) -> list[dict[str, Any]]:
    """enqueue_each() up to the writing: the messages checked and their recipients read
    (or taken from `targets`, read by the caller with recipients_pg), the outbox rows it
    would write. For a caller that writes them with its own rows (rows_pg)."""
    if not messages:
        return []
    for m in messages:
        if not m.subject.strip():
            raise _field_error("subject", "Subject is empty", "标题不能为空")
    ids = list(dict.fromkeys(m.person_id for m in messages))
    if targets is None:
        targets = _person_targets(db, ids)
    elif missing := [pid for pid in ids if pid not in targets]:
        raise not_found("Person", "人员", ", ".join(map(str, missing)))
    rows: list[dict[str, Any]] = []
    for m in messages:
        common = _common(m.subject, m.body, m.link, topic, subject_type, m.subject_id)
        for channel, address in targets[m.person_id]:
            rows.append(
                _row_values((f"p{m.person_id}", m.person_id, channel, address), common, None, now)
            )
    return rows


def _row_values(
    w: Wanted,
    common: dict[str, str | None],
    keys: dict[Wanted, str] | None,
    now: datetime,
) -> dict[str, Any]:
    _, person_id, channel, address = w
    inapp = channel == "inapp"
    return {
        "message_id": new_message_id(),
        "person_id": person_id,
        "channel": channel,
        "address": address,
        "dedupe_key": keys[w] if keys else None,
        # The in-app message is delivered by being written: the inbox item below.
        "state": "sent" if inapp else "pending",
        "attempts": 0,
        "sent_at": now if inapp else None,
        "next_attempt_at": now,
        "created_at": now,
        **common,
    }


def _write(
    db: Session,
    wanted: Sequence[Wanted],
    common: dict[str, str | None],
    keys: dict[Wanted, str] | None,
    now: datetime,
) -> list[OutboxMessage]:
    rows = [OutboxMessage(**_row_values(w, common, keys, now)) for w in wanted]
    db.add_all(rows)
    db.flush()
    items = [
        InboxItem(
            person_id=m.person_id,
            outbox_id=m.id,
            topic=m.topic,
            title=m.subject,
            body=m.body,
            link=m.link,
            created_at=now,
        )
        for m in rows
        if m.channel == "inapp" and m.person_id is not None
    ]
    if items:
        db.add_all(items)
        db.flush()
    return rows


_OUTBOX = cast(Table, OutboxMessage.__table__)
_INBOX = cast(Table, InboxItem.__table__)
# Ids come back in the order the rows were given, which is what pairs each in-app row
# with its inbox item.
_INSERT_OUTBOX = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_INSERT_INBOX = insert(_INBOX)


def _insert_rows(
    db: Session,
    wanted: Sequence[Wanted],
    common: dict[str, str | None],
    keys: dict[Wanted, str] | None,
    now: datetime,
) -> list[int]:
    """The rows of _write as two Core INSERTs (outbox, then inbox), with no objects kept."""
    if not wanted:
        return []
    return _insert_row_dicts(db, [_row_values(w, common, keys, now) for w in wanted], now)


def _insert_row_dicts(db: Session, rows: list[dict[str, Any]], now: datetime) -> list[int]:
    if not rows:
        return []
    conn = db.connection()
    if conn.dialect.name == "postgresql":
        return _insert_rows_pg(db, rows)
    ids = [int(i) for i in conn.execute(_INSERT_OUTBOX, rows).scalars()]
    items = [
        {
            "person_id": r["person_id"],
            "outbox_id": oid,
            "topic": r["topic"],
            "title": r["subject"],
            "body": r["body"],
            "link": r["link"],
            "created_at": now,
            "read_at": None,
        }
        for r, oid in zip(rows, ids, strict=True)
        if r["channel"] == "inapp" and r["person_id"] is not None
    ]
    if items:
        conn.execute(_INSERT_INBOX, items)
    return ids


_pg_insert_sql: dict[tuple[str, ...], str] = {}


def _insert_rows_pg(db: Session, rows: list[dict[str, Any]]) -> list[int]:
    """_insert_rows on PostgreSQL in one statement (rows_pg). The ids come back paired with
    the message ids, which is how they are put back in the order of `rows`."""
    sql, params = rows_pg(rows)
    result = db.connection().exec_driver_sql(sql, params)
    ids: dict[str, int] = {str(mid): int(oid) for mid, oid in result}
    return [int(ids[r["message_id"]]) for r in rows]


def rows_pg(rows: list[dict[str, Any]]) -> Statement:
    """The statement that writes outbox rows (as plan_each makes them) on PostgreSQL: the
    rows as one JSON array, and the inbox items made from what that INSERT returns. It
    answers (message id, outbox id) for each row."""
    names = tuple(rows[0])
    sql = _pg_insert_sql.get(names)
    if sql is None:
        sql = (
            f"WITH o AS ({pg_insert_from_json(_OUTBOX, names, 'rows', many=True)} "
            "RETURNING id, message_id, person_id, channel, topic, subject, body, link, "
            "created_at), "
            f"i AS (INSERT INTO {_INBOX.name} "
            "(person_id, outbox_id, topic, title, body, link, created_at) "
            "SELECT person_id, id, topic, subject, body, link, created_at FROM o "
            "WHERE channel = 'inapp' AND person_id IS NOT NULL) "
            "SELECT message_id, id FROM o"
        )
        _pg_insert_sql[names] = sql
    return sql, {"rows": json_param(rows)}


# -- in-app inbox --------------------------------------------------------------------


def inbox(
    db: Session,
    *,
    person_id: int,
    unread_only: bool = False,
    limit: int = 50,
    before_id: int | None = None,
) -> list[InboxItem]:
    """A person's in-app messages, newest first; `before_id` pages further back."""
    q = select(InboxItem).where(InboxItem.person_id == person_id)
    if unread_only:
        q = q.where(InboxItem.read_at.is_(None))
    if before_id is not None:
        q = q.where(InboxItem.id < before_id)
    return list(db.scalars(q.order_by(InboxItem.id.desc()).limit(limit)))


def unread_count(db: Session, *, person_id: int) -> int:
    return int(
        db.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.person_id == person_id, InboxItem.read_at.is_(None))
        )
        or 0
    )


def mark_read(
    db: Session, *, person_id: int, item_id: int, now: datetime | None = None
) -> InboxItem:
    """Mark one of the person's own items read. Someone else's item is "not found", so its
    existence is not revealed; reading twice keeps the first time."""
    item = db.get(InboxItem, item_id)
    if item is None or item.person_id != person_id:
        raise not_found("Inbox item", "消息", item_id)
    if item.read_at is None:
        item.read_at = now or utcnow()
        db.flush()
    return item


# -- preferences ---------------------------------------------------------------------


def preferences(db: Session, *, person_id: int) -> list[ChannelPreference]:
    return list(
        db.scalars(
            select(ChannelPreference)
            .where(ChannelPreference.person_id == person_id)
            .order_by(ChannelPreference.priority, ChannelPreference.id)
        )
    )


def set_preference(
    db: Session,
    *,
    person_id: int,
    channel: str,
    address: str = "",
    priority: int = 100,
    active: bool = True,
) -> ChannelPreference:
    """Add or update the preference for (person, channel, address)."""
    if channel not in EXTERNAL_CHANNELS:
        raise _field_error("channel", f"Unknown channel {channel!r}", f"未知的通知渠道：{channel}")
    if db.get(Person, person_id) is None:
        raise not_found("Person", "人员", person_id)
    address = address.strip()
    pref = db.scalar(
        select(ChannelPreference).where(
            ChannelPreference.person_id == person_id,
            ChannelPreference.channel == channel,
            ChannelPreference.address == address,
        )
    )
    if pref is None:
        pref = ChannelPreference(person_id=person_id, channel=channel, address=address)
        db.add(pref)
    pref.priority = priority
    pref.active = active
    db.flush()
    return pref


# -- operations ----------------------------------------------------------------------


def outbox(
    db: Session, *, state: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[OutboxMessage]:
    q = select(OutboxMessage)
    if state is not None:
        q = q.where(OutboxMessage.state == state)
    if before_id is not None:
        q = q.where(OutboxMessage.id < before_id)
    return list(db.scalars(q.order_by(OutboxMessage.id.desc()).limit(limit)))


def requeue(db: Session, *, outbox_id: int, now: datetime | None = None) -> OutboxMessage:
    """Give a failed message a fresh set of attempts (e.g. after fixing a channel's
    configuration). It keeps its message id, so a receiver that did get it drops it."""
    message = db.get(OutboxMessage, outbox_id)
    if message is None:
        raise not_found("Outbox message", "通知", outbox_id)
    if message.state != "failed":
        raise AppError(
            409, "not_failed", "Only failed messages can be requeued", "只有发送失败的通知才能重发"
        )
    # Workers never touch a failed row, so no conditional UPDATE is needed here.
    message.state = "pending"
    message.attempts = 0
    message.next_attempt_at = now or utcnow()
    message.claimed_by = None
    message.claimed_at = None
    db.flush()
    return message
