"""The delivery worker in-process: claiming, classification, backoff, leases, stopping."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.helpers import T0, count, seeded, sender_for, settings_for
from tests.notify.sink import HttpSink, Reply, error

from watergrid.notify import service
from watergrid.notify.channels import Envelope, PermanentError
from watergrid.notify.jobs import claim_due, deliver_due, record_result
from watergrid.notify.models import DeliveryAttempt, OutboxMessage
from watergrid.notify.settings import NotifySettings

ORDER = {"topic": "order.escalated", "subject_type": "order", "subject_id": "GM-2025-0001"}


def _enqueue_sms(factory: sessionmaker[Session], n: int = 1) -> list[str]:
    with factory() as db:
        rows = service.enqueue(
            db,
            addresses=[("sms", f"1380000{i:04d}") for i in range(n)],
            subject="红色暴雨预警",
            body="光明大道积水 30 cm",
            link="/orders/1",
            now=T0,
            **ORDER,
        )
        db.commit()
        return [r.message_id for r in rows]


def _row(factory: sessionmaker[Session], message_id: str) -> OutboxMessage:
    with factory() as db:
        return db.scalars(select(OutboxMessage).where(OutboxMessage.message_id == message_id)).one()


def _attempts(factory: sessionmaker[Session]) -> list[tuple[int, bool, str | None, str]]:
    with factory() as db:
        return [
            (a.attempt, a.ok, a.error_class, a.detail)
            for a in db.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id))
        ]


def _deliver(
    factory: sessionmaker[Session], cfg: NotifySettings, *, now=T0, worker="w1", limit=50, **kw
) -> int:  # type: ignore[no-untyped-def]
    with sender_for(cfg) as sender:
        return deliver_due(
            factory,
            worker_id=worker,
            now=now,
            limit=limit,
            sender=sender,
            settings=cfg,
            rng=seeded(),
            **kw,
        )


def test_sms_delivered_with_stable_id_in_header_and_body(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink, text_prefix="【光明水务】")
    [mid] = _enqueue_sms(factory)
    assert _deliver(factory, cfg) == 1
    [req] = sink.requests
    assert req.path == "/sms" and req.headers["x-watergrid-message-id"] == mid
    assert req.json() == {
        "message_id": mid,
        "to": "13800000000",
        "text": "【光明水务】红色暴雨预警\n光明大道积水 30 cm\nhttps://water.example.gov.cn/orders/1",
    }
    row = _row(factory, mid)
    assert (row.state, row.attempts, row.claimed_by, row.last_error) == ("sent", 1, None, None)
    assert row.sent_at is not None and row.sent_at >= T0
    assert _attempts(factory) == [(1, True, None, "")]
    assert _deliver(factory, cfg, now=T0 + timedelta(days=1)) == 0  # sent is never due again


def test_transient_failure_backs_off_then_delivers_with_the_same_id(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink)
    [mid] = _enqueue_sms(factory)
    sink.plan(error(500), error(503))

    assert _deliver(factory, cfg) == 1
    row = _row(factory, mid)
    assert (row.state, row.attempts) == ("pending", 1)
    assert "HTTP 500" in (row.last_error or "")
    first_wait = (row.next_attempt_at - T0).total_seconds()
    assert 15 <= first_wait <= 30.1  # base 30 s with equal jitter: [15, 30]

    assert _deliver(factory, cfg, now=T0 + timedelta(seconds=14)) == 0  # not due yet
    t1 = row.next_attempt_at
    assert _deliver(factory, cfg, now=t1) == 1
    row = _row(factory, mid)
    assert (row.state, row.attempts) == ("pending", 2)
    assert 30 <= (row.next_attempt_at - t1).total_seconds() <= 60.1  # doubled

    assert _deliver(factory, cfg, now=row.next_attempt_at) == 1
    row = _row(factory, mid)
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)
    assert sink.message_ids() == [mid, mid, mid]
    assert [(a, ok, c) for a, ok, c, _ in _attempts(factory)] == [
        (1, False, "transient"),
        (2, False, "transient"),
        (3, True, None),
    ]


def test_retry_after_is_honoured(factory: sessionmaker[Session], sink: HttpSink) -> None:
    cfg = settings_for(sink)
    [mid] = _enqueue_sms(factory)
    sink.plan(error(429, headers={"Retry-After": "600"}))
    _deliver(factory, cfg)
    row = _row(factory, mid)
    assert row.state == "pending" and (row.next_attempt_at - T0).total_seconds() >= 600


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_permanent_failure_is_recorded_and_not_retried(
    factory: sessionmaker[Session], sink: HttpSink, status: int
) -> None:
    cfg = settings_for(sink)
    [mid] = _enqueue_sms(factory)
    sink.default = error(status)
    _deliver(factory, cfg)
    row = _row(factory, mid)
    assert row.state == "failed" and row.attempts == 1
    assert (row.last_error or "").startswith(f"permanent: HTTP {status}")
    assert _deliver(factory, cfg, now=T0 + timedelta(days=7)) == 0
    assert len(sink.requests) == 1
    assert [(ok, c) for _, ok, c, _ in _attempts(factory)] == [(False, "permanent")]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(factory: sessionmaker[Session], sink: HttpSink, status: int) -> None:
    cfg = settings_for(sink)
    [mid] = _enqueue_sms(factory)
    sink.default = error(status)
    _deliver(factory, cfg)
    assert _row(factory, mid).state == "pending"
    assert _attempts(factory)[0][2] == "transient"


def test_timeout_is_transient(factory: sessionmaker[Session], sink: HttpSink) -> None:
    cfg = settings_for(sink, http_timeout_s=0.3)
    [mid] = _enqueue_sms(factory)
    sink.plan(Reply(delay_s=2.0))  # hangs well past the client's timeout
    _deliver(factory, cfg)
    row = _row(factory, mid)
    assert row.state == "pending" and "timeout" in (row.last_error or "")
    [(_, ok, cls, _detail)] = _attempts(factory)
    assert (ok, cls) == (False, "transient")


def test_slow_but_in_time_is_success(factory: sessionmaker[Session], sink: HttpSink) -> None:
    cfg = settings_for(sink, http_timeout_s=1.0)
    [mid] = _enqueue_sms(factory)
    sink.plan(Reply(delay_s=0.3))
    _deliver(factory, cfg)
    assert _row(factory, mid).state == "sent"
    with factory() as db:
        assert db.scalars(select(DeliveryAttempt.duration_ms)).one() >= 250


def test_connection_refused_is_transient(factory: sessionmaker[Session], sink: HttpSink) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = settings_for(sink, sms_url=f"http://127.0.0.1:{port}/sms")
    [mid] = _enqueue_sms(factory)
    _deliver(factory, cfg)
    row = _row(factory, mid)
    assert row.state == "pending" and "connection failed" in (row.last_error or "")


def test_unconfigured_channel_fails_permanently_with_a_clear_error(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink, sms_url="")
    [mid] = _enqueue_sms(factory)
    _deliver(factory, cfg)
    row = _row(factory, mid)
    assert row.state == "failed" and "WATERGRID_NOTIFY_SMS_URL" in (row.last_error or "")


def test_gives_up_after_max_attempts(factory: sessionmaker[Session], sink: HttpSink) -> None:
    cfg = settings_for(sink, max_attempts=3)
    [mid] = _enqueue_sms(factory)
    sink.default = error(503)
    now = T0
    for _ in range(3):
        assert _deliver(factory, cfg, now=now) == 1
        now = _row(factory, mid).next_attempt_at
    row = _row(factory, mid)
    assert (row.state, row.attempts) == ("failed", 3)
    assert _deliver(factory, cfg, now=now + timedelta(days=1)) == 0
    assert sink.message_ids() == [mid] * 3


def test_unexpected_sender_error_is_retried_not_fatal(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink)
    [mid] = _enqueue_sms(factory)

    def broken(env: Envelope) -> None:
        raise KeyError("surprise")

    assert deliver_due(factory, worker_id="w", now=T0, limit=5, sender=broken, settings=cfg) == 1
    row = _row(factory, mid)
    assert row.state == "pending" and "KeyError" in (row.last_error or "")


def test_lease_reclaimed_after_a_crash_and_the_late_worker_is_fenced_off(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink, lease_s=60)
    [mid] = _enqueue_sms(factory)
    # Worker A claims and "crashes": it never sends and never records anything.
    [claim_a] = claim_due(factory, worker_id="A", now=T0, limit=10, settings=cfg)
    row = _row(factory, mid)
    assert (row.state, row.claimed_by, row.attempts) == ("sending", "A", 1)

    # Within the lease, nobody else touches it.
    assert _deliver(factory, cfg, now=T0 + timedelta(seconds=59), worker="B") == 0
    # After it, B takes over and delivers, with the same message id.
    assert _deliver(factory, cfg, now=T0 + timedelta(seconds=61), worker="B") == 1
    row = _row(factory, mid)
    assert (row.state, row.attempts) == ("sent", 2)
    assert sink.message_ids() == [mid]

    # A wakes up and reports a (stale) failure: logged, but the message stays sent.
    state = record_result(
        factory,
        claim=claim_a,
        worker_id="A",
        now=T0 + timedelta(seconds=90),
        error=PermanentError("late"),
        duration_ms=5,
        settings=cfg,
    )
    assert state is None
    assert _row(factory, mid).state == "sent"
    assert [(a, ok) for a, ok, _, _ in _attempts(factory)] == [(2, True), (1, False)]


def test_a_message_that_keeps_killing_workers_is_given_up(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink, lease_s=60, max_attempts=2)
    [mid] = _enqueue_sms(factory)
    now = T0
    for worker in ("A", "B"):
        assert len(claim_due(factory, worker_id=worker, now=now, limit=1, settings=cfg)) == 1
        now += timedelta(seconds=61)
    assert claim_due(factory, worker_id="C", now=now, limit=1, settings=cfg) == []
    row = _row(factory, mid)
    assert row.state == "failed" and "lease expired" in (row.last_error or "")
    assert sink.requests == []


def test_two_workers_never_claim_the_same_message(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink)
    _enqueue_sms(factory, 30)
    a = claim_due(factory, worker_id="A", now=T0, limit=20, settings=cfg)
    b = claim_due(factory, worker_id="B", now=T0, limit=20, settings=cfg)
    assert len(a) == 20 and len(b) == 10
    assert not {c.outbox_id for c in a} & {c.outbox_id for c in b}


def test_stop_finishes_the_message_in_hand_and_releases_the_rest(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    cfg = settings_for(sink)
    mids = _enqueue_sms(factory, 5)
    stop = threading.Event()
    with sender_for(cfg) as real:

        def send_then_stop(env: Envelope) -> None:
            stop.set()  # SIGTERM arrives while the first message is on its way
            real(env)

        tried = deliver_due(
            factory,
            worker_id="w",
            now=T0,
            limit=5,
            sender=send_then_stop,
            settings=cfg,
            stop_event=stop,
        )
    assert tried == 1 and sink.message_ids() == mids[:1]
    assert _row(factory, mids[0]).state == "sent"
    for mid in mids[1:]:
        row = _row(factory, mid)
        # Back in the queue, due at once, no attempt spent.
        assert (row.state, row.attempts, row.claimed_by, row.next_attempt_at) == (
            "pending",
            0,
            None,
            T0,
        )


def test_no_send_is_started_that_could_outlive_the_lease(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    # Lease 7 s, margin 1.5 x 1 s + 5 s = 6.5 s: once a batch of slow receivers has taken
    # half a second, the rest goes back rather than risk a second worker sending it too.
    cfg = settings_for(sink, lease_s=7.0, http_timeout_s=1.0)
    mids = _enqueue_sms(factory, 6)
    sink.default = Reply(delay_s=0.3)
    tried = _deliver(factory, cfg, limit=6)
    assert 1 <= tried <= 3
    assert count(factory, state="sent") == tried
    assert count(factory, state="pending") == 6 - tried
    assert sink.message_ids() == mids[:tried]


def test_lease_must_leave_room_for_a_send() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        NotifySettings(lease_s=10, http_timeout_s=10)


def test_delivery_loop_survives_database_errors_and_stops_on_request(
    factory: sessionmaker[Session], sink: HttpSink
) -> None:
    from sqlalchemy.exc import OperationalError

    from watergrid.notify.jobs import delivery_loop

    cfg = settings_for(sink)
    mids = _enqueue_sms(factory, 3)
    outages = iter(range(2))

    def flaky_factory() -> Session:
        # The database is unreachable for the first two rounds.
        if next(outages, None) is not None:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return factory()

    stop = threading.Event()
    with sender_for(cfg) as sender:
        worker = threading.Thread(
            target=delivery_loop,
            kwargs={
                "session_factory": flaky_factory,
                "clock": lambda: T0,
                "worker_id": "loop",
                "stop_event": stop,
                "sender": sender,
                "settings": cfg,
                "poll_interval_s": 0.01,
            },
        )
        worker.start()
        try:
            assert sink.wait_for(3, timeout_s=10)
            assert _wait_until(lambda: count(factory, state="sent") == 3)
        finally:
            stop.set()
            worker.join(5)
    assert not worker.is_alive()
    assert sorted(sink.message_ids()) == sorted(mids)


def _wait_until(cond, timeout_s: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())
