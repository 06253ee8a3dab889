"""Enqueueing: in the caller's transaction, channel resolution, de-duplication, the inbox."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.helpers import T0, add_person

from watergrid.db import begin_write
from watergrid.errors import AppError
from watergrid.notify import service
from watergrid.notify.models import InboxItem, OutboxMessage

ORDER = {"topic": "order.escalated", "subject_type": "order", "subject_id": "GM-2025-0001"}


def _counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as db:
        return (
            int(db.scalar(select(func.count()).select_from(OutboxMessage)) or 0),
            int(db.scalar(select(func.count()).select_from(InboxItem)) or 0),
        )


def test_enqueue_is_part_of_the_callers_transaction(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        pid = add_person(db, "P1", mobile="13800000001").id
        db.commit()

    with factory() as db:
        begin_write(db)
        service.set_preference(db, person_id=pid, channel="sms")
        rows = service.enqueue(db, person_ids=[pid], subject="积水", body="b", **ORDER)
        assert len(rows) == 2 and all(r.id for r in rows)
        db.rollback()  # the causing change failed: no notification may survive it
    assert _counts(factory) == (0, 0)

    with factory() as db:
        begin_write(db)
        service.enqueue(db, person_ids=[pid], subject="积水", body="b", **ORDER)
        db.commit()
    assert _counts(factory) == (1, 1)


def test_without_preferences_a_person_gets_the_inbox_only(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        pid = add_person(db, "P1", mobile="13800000001").id
        rows = service.enqueue(
            db,
            person_ids=[pid],
            subject="工单超时",
            body="请尽快处置",
            link="/orders/1",
            now=T0,
            **ORDER,
        )
        db.commit()
        [row] = rows
        assert (row.channel, row.state, row.sent_at, row.attempts) == ("inapp", "sent", T0, 0)
        [item] = service.inbox(db, person_id=pid)
        assert (item.outbox_id, item.title, item.body, item.link) == (
            row.id,
            "工单超时",
            "请尽快处置",
            "/orders/1",
        )
        assert item.created_at == T0 and item.read_at is None


def test_active_preferences_in_priority_order(factory: sessionmaker[Session]) -> None:
    robot = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1"
    with factory() as db:
        p = add_person(db, "P1", mobile="13800000001", email="a@example.com")
        service.set_preference(db, person_id=p.id, channel="wecom", address=robot, priority=20)
        service.set_preference(db, person_id=p.id, channel="sms", priority=10)  # own mobile
        service.set_preference(db, person_id=p.id, channel="email", active=False)
        # No address and none on the person: skipped, not an error.
        q = add_person(db, "P2")
        service.set_preference(db, person_id=q.id, channel="sms")
        rows = service.enqueue(db, person_ids=[p.id, q.id], subject="s", body="b", **ORDER)
        got = [(r.person_id, r.channel, r.address, r.state) for r in rows]
        assert got == [
            (p.id, "inapp", "", "sent"),
            (p.id, "sms", "13800000001", "pending"),
            (p.id, "wecom", robot, "pending"),
            (q.id, "inapp", "", "sent"),
        ]
        assert len({r.message_id for r in rows}) == 4


def test_raw_addresses_and_their_validation(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        rows = service.enqueue(
            db,
            addresses=[("webhook", "https://ops.example/hook"), ("sms", "13900000000")],
            subject="s",
            body="b",
            **ORDER,
        )
        assert [(r.person_id, r.channel, r.state) for r in rows] == [
            (None, "webhook", "pending"),
            (None, "sms", "pending"),
        ]
        assert db.scalar(select(func.count()).select_from(InboxItem)) == 0
        for bad in ([("fax", "123")], [("sms", " ")], [("inapp", "x")]):
            with pytest.raises(AppError) as err:
                service.enqueue(db, addresses=bad, subject="s", body="b", **ORDER)
            assert err.value.status == 422
        with pytest.raises(AppError) as err:
            service.enqueue(db, subject="s", body="b", **ORDER)
        assert err.value.status == 422


def test_unknown_people_are_an_error_inactive_ones_are_skipped(
    factory: sessionmaker[Session],
) -> None:
    with factory() as db:
        gone = add_person(db, "P9", mobile="13800000009", active=False)
        with pytest.raises(AppError) as err:
            service.enqueue(db, person_ids=[gone.id, 999_999], subject="s", body="b", **ORDER)
        assert err.value.status == 404 and "999999" in err.value.message
        assert service.enqueue(db, person_ids=[gone.id], subject="s", body="b", **ORDER) == []


def test_dedupe_key_makes_one_row_per_recipient_and_channel(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        pid = add_person(db, "P1", mobile="13800000001").id
        service.set_preference(db, person_id=pid, channel="sms")
        db.commit()
    kwargs = {
        "person_ids": [pid],
        "addresses": [("webhook", "https://ops.example/h")],
        "subject": "s",
        "body": "b",
        **ORDER,
    }
    with factory() as db:
        first = service.enqueue(db, dedupe_key="order:1:escalated:L2", **kwargs)
        # Twice in one transaction, then again in a later one: the same rows come back.
        again = service.enqueue(db, dedupe_key="order:1:escalated:L2", **kwargs)
        assert [r.id for r in again] == [r.id for r in first]
        db.commit()
    with factory() as db:
        later = service.enqueue(db, dedupe_key="order:1:escalated:L2", **kwargs)
        assert [r.message_id for r in later] == [r.message_id for r in first]
        other = service.enqueue(db, dedupe_key="order:1:escalated:L3", **kwargs)
        assert not {r.id for r in other} & {r.id for r in first}
        unkeyed = service.enqueue(db, **kwargs)  # no key: no de-duplication
        db.commit()
    assert len(first) == len(other) == len(unkeyed) == 3
    assert _counts(factory) == (9, 3)


def test_dedupe_key_tells_apart_two_addresses_on_one_channel(
    factory: sessionmaker[Session],
) -> None:
    with factory() as db:
        pid = add_person(db, "P1").id
        for key in ("k1", "k2"):
            robot = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={key}"
            service.set_preference(db, person_id=pid, channel="wecom", address=robot)
        kwargs = {"person_ids": [pid], "subject": "s", "body": "b", "dedupe_key": "k", **ORDER}
        first = service.enqueue(db, **kwargs)
        assert [r.channel for r in first] == ["inapp", "wecom", "wecom"]
        assert [r.id for r in service.enqueue(db, **kwargs)] == [r.id for r in first]
        assert len({r.dedupe_key for r in first}) == 3
        assert all("key=" not in (r.dedupe_key or "") for r in first)  # robot keys stay out


def test_concurrent_enqueues_of_one_key_make_one_set_of_rows(
    factory: sessionmaker[Session],
) -> None:
    """The second transaction waits on the first one's unique key (PostgreSQL) or its
    write lock (SQLite), then finds its rows instead of failing the caller."""
    with factory() as db:
        pid = add_person(db, "P1").id
        db.commit()
    kwargs = {"person_ids": [pid], "subject": "s", "body": "b", "dedupe_key": "k", **ORDER}
    first = factory()
    begin_write(first)
    [mine] = service.enqueue(first, **kwargs)
    result: list[object] = []

    def second() -> None:
        with factory() as db:
            try:
                begin_write(db)
                rows = service.enqueue(db, **kwargs)
                db.commit()
                result.append([r.message_id for r in rows])
            except Exception as exc:  # reported below
                result.append(exc)

    t = threading.Thread(target=second)
    t.start()
    t.join(0.5)
    assert t.is_alive(), "the second enqueue should be waiting for the first transaction"
    first.commit()
    first.close()
    t.join(10)
    assert result == [[mine.message_id]]
    assert _counts(factory) == (1, 1)


def test_inbox_unread_and_mark_read(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        a = add_person(db, "PA").id
        b = add_person(db, "PB").id
        for n in range(3):
            service.enqueue(db, person_ids=[a], subject=f"s{n}", body="", now=T0, **ORDER)
        service.enqueue(db, person_ids=[b], subject="theirs", body="", **ORDER)
        items = service.inbox(db, person_id=a)
        assert [i.title for i in items] == ["s2", "s1", "s0"]  # newest first
        assert service.unread_count(db, person_id=a) == 3

        read = service.mark_read(db, person_id=a, item_id=items[1].id, now=T0)
        assert read.read_at == T0
        again = service.mark_read(db, person_id=a, item_id=items[1].id)
        assert again.read_at == T0  # the first reading counts
        assert [i.title for i in service.inbox(db, person_id=a, unread_only=True)] == ["s2", "s0"]
        assert service.unread_count(db, person_id=a) == 2

        [theirs] = service.inbox(db, person_id=b)
        with pytest.raises(AppError) as err:
            service.mark_read(db, person_id=a, item_id=theirs.id)
        assert err.value.status == 404
        assert theirs.read_at is None
        page = service.inbox(db, person_id=a, limit=2)
        assert [i.title for i in service.inbox(db, person_id=a, before_id=page[-1].id)] == ["s0"]


def test_requeue_gives_a_failed_message_new_attempts(factory: sessionmaker[Session]) -> None:
    with factory() as db:
        [row] = service.enqueue(
            db, addresses=[("sms", "13900000000")], subject="s", body="b", **ORDER
        )
        with pytest.raises(AppError) as err:
            service.requeue(db, outbox_id=row.id)
        assert err.value.status == 409
        row.state, row.attempts, row.last_error = "failed", 5, "permanent: HTTP 400"
        db.flush()
        again = service.requeue(db, outbox_id=row.id, now=T0)
        assert (again.state, again.attempts, again.next_attempt_at) == ("pending", 0, T0)
        assert again.message_id == row.message_id
