"""Delivery by real worker processes (`python -m watergrid.notify`) against one database:
exactly-once under concurrency without faults, at-least-once across a crash, and SIGTERM
finishing the message in hand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from tests.notify.helpers import count, sender_for, settings_for
from tests.notify.sink import HttpSink, Reply

from watergrid.db import utcnow
from watergrid.notify import service
from watergrid.notify.jobs import deliver_due
from watergrid.notify.models import DeliveryAttempt, OutboxMessage

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
ORDER = {"topic": "flood.warning", "subject_type": "warning", "subject_id": "GM-W-2025-07"}


def _enqueue(factory: sessionmaker[Session], n: int) -> list[str]:
    with factory() as db:
        rows = service.enqueue(
            db,
            addresses=[("sms", f"139{i:08d}") for i in range(n)],
            subject="暴雨红色预警",
            body="请立即转移低洼地带人员",
            **ORDER,
        )
        db.commit()
        return [r.message_id for r in rows]


def _start(url: str, sink: HttpSink, worker_id: str, **env_extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATERGRID_")}
    env.update(
        PYTHONPATH=str(SRC),
        WATERGRID_DATABASE_URL=url,
        WATERGRID_LOG_LEVEL="WARNING",
        WATERGRID_NOTIFY_SMS_URL=f"{sink.url}/sms",
        WATERGRID_NOTIFY_POLL_INTERVAL_S="0.1",
        WATERGRID_NOTIFY_HTTP_TIMEOUT_S="5",
    )
    env.update(env_extra)
    return subprocess.Popen(
        [sys.executable, "-m", "watergrid.notify", "--worker-id", worker_id],
        env=env,
        cwd=SRC.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout_s))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


def _wait(cond, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def _concurrent_run(factory: sessionmaker[Session], url: str, sink: HttpSink, n: int) -> None:
    t0 = time.monotonic()
    mids = _enqueue(factory, n)
    t_enqueue = time.monotonic() - t0

    t1 = time.monotonic()
    procs = [_start(url, sink, f"proc-{i}") for i in (1, 2)]
    try:
        done = _wait(lambda: count(factory, state="sent") == n, timeout_s=75)
        elapsed = time.monotonic() - t1
    finally:
        codes = _stop(procs)
    errors = [p.stderr.read().decode()[-2000:] for p in procs if p.stderr]

    received = sink.counts()
    duplicates = {m: c for m, c in received.items() if c > 1}
    lost = set(mids) - set(received)
    with factory() as db:
        by_worker = Counter(
            dict(
                db.execute(
                    select(DeliveryAttempt.worker_id, func.count()).group_by(
                        DeliveryAttempt.worker_id
                    )
                ).all()
            )
        )
        states = Counter(
            dict(
                db.execute(
                    select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
                ).all()
            )
        )
    print(
        f"\n[{factory.kw['bind'].dialect.name}] {n} messages, 2 worker processes: "
        f"enqueue {t_enqueue:.1f} s, delivery {elapsed:.1f} s "
        f"({n / elapsed:.0f}/s including start-up), "
        f"requests {len(sink.requests)}, distinct {len(received)}, duplicates {len(duplicates)}, "
        f"lost {len(lost)}, per worker {dict(by_worker)}, states {dict(states)}"
    )
    assert done, f"not all sent in time: {dict(states)}; worker stderr: {errors}"
    assert codes == [0, 0], errors
    assert not lost and not duplicates
    assert len(sink.requests) == n and set(received) == set(mids)
    assert sum(by_worker.values()) == n and len(by_worker) == 2  # both did real work
    assert states == Counter({"sent": n})


def test_two_processes_deliver_every_message_exactly_once(
    factory: sessionmaker[Session], notify_url: str, notify_backend: str, sink: HttpSink
) -> None:
    """10,000 messages on PostgreSQL, the production setup; 1,000 on SQLite, where the
    writer lock serialises claims anyway and the point is the same code path."""
    _concurrent_run(factory, notify_url, sink, 10_000 if notify_backend == "postgresql" else 1_000)


def test_a_killed_worker_loses_nothing(
    factory: sessionmaker[Session], notify_url: str, sink: HttpSink
) -> None:
    [mid] = _enqueue(factory, 1)
    sink.default = Reply(delay_s=30)  # the receiver hangs; the worker waits in the send
    proc = _start(notify_url, sink, "doomed", WATERGRID_NOTIFY_HTTP_TIMEOUT_S="20")
    try:
        assert sink.wait_for(1, timeout_s=20), proc.stderr.read().decode() if proc.stderr else ""
        proc.kill()  # SIGKILL mid-send: no cleanup of any kind
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sink.default = Reply()
    with factory() as db:
        row = db.scalars(select(OutboxMessage)).one()
        assert (row.state, row.claimed_by, row.attempts) == ("sending", "doomed", 1)
        lease_end = row.next_attempt_at

    cfg = settings_for(sink)
    with sender_for(cfg) as sender:
        before = deliver_due(
            factory,
            worker_id="survivor",
            now=lease_end - timedelta(seconds=1),
            limit=10,
            sender=sender,
            settings=cfg,
        )
        after = deliver_due(
            factory, worker_id="survivor", now=lease_end, limit=10, sender=sender, settings=cfg
        )
    assert (before, after) == (0, 1)
    with factory() as db:
        row = db.scalars(select(OutboxMessage)).one()
        assert (row.state, row.attempts) == ("sent", 2)
    # At least once: the receiver saw it twice, with one id to de-duplicate on.
    assert sink.message_ids() == [mid, mid]


def test_sigterm_finishes_the_message_in_hand(
    factory: sessionmaker[Session], notify_url: str, sink: HttpSink
) -> None:
    mids = _enqueue(factory, 5)
    sink.default = Reply(delay_s=1.0)
    proc = _start(notify_url, sink, "polite")
    try:
        assert sink.wait_for(1, timeout_s=20)
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert took < 5
    assert sink.message_ids() == mids[:1]
    with factory() as db:
        states = {
            m.message_id: (m.state, m.attempts, m.claimed_by)
            for m in db.scalars(select(OutboxMessage))
        }
    assert states[mids[0]] == ("sent", 1, None)
    assert all(states[m] == ("pending", 0, None) for m in mids[1:])
    assert count(factory, state="sending") == 0
    assert utcnow()  # (times were real: the worker used the wall clock)
