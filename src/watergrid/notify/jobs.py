"""Delivering the outbox: claim due messages, send them outside any transaction, record.

The claim is a conditional UPDATE that only succeeds while the row is still claimable, and
a worker goes on only with the rows that UPDATE reports it changed, so any number of
workers on SQLite or PostgreSQL never hold the same message at once. A claim is a lease: a
row left 'sending' by a worker that died becomes due again when the lease runs out, and is
sent again (at least once; the stable message id lets the receiver drop the repeat). A
worker that outlived its lease cannot overwrite the newer holder's result: its final
UPDATE is fenced by (claimed_by, attempts)."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from watergrid.db import begin_write, utcnow
from watergrid.notify.channels import ChannelSender, DeliveryError, Envelope, Sender
from watergrid.notify.models import DeliveryAttempt, OutboxMessage
from watergrid.notify.settings import NotifySettings, get_notify_settings

log = logging.getLogger("watergrid.notify.jobs")

SessionFactory = Callable[[], Session] | sessionmaker[Session]


def default_worker_id() -> str:
    # Unique per process even when a container restarts with the same pid.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_delay(
    attempt: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): base·2^(n-1) capped,
    then "equal jitter" — a random point in its upper half — so workers that failed
    together (a gateway outage) do not all come back in the same second."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(attempt - 1, 0), 60))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@contextmanager
def _writing(factory: SessionFactory) -> Iterator[Session]:
    """A worker's bookkeeping transaction (claim, result, release).

    On PostgreSQL it commits without waiting for the WAL flush: an fsync per message was
    most of the cost of delivery (~5 ms each on a local disk). This is safe for at-least-once:
    a server crash can only lose the last few of these commits, which rolls a message back
    to an earlier state ('pending' or 'sending'), and such a message is sent again, never
    dropped. Other workers see each commit at once either way; the enqueueing
    transactions, which are the caller's, keep full durability."""
    session = factory()
    try:
        begin_write(session)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@dataclass(frozen=True)
class Claim:
    outbox_id: int
    attempt: int  # outbox.attempts after the claim: the fencing token with claimed_by
    envelope: Envelope


_outbox = cast(Table, OutboxMessage.__table__)
_ENVELOPE_COLUMNS = (
    "message_id",
    "channel",
    "address",
    "subject",
    "body",
    "link",
    "topic",
    "subject_type",
    "subject_id",
)


def claim_due(
    session_factory: SessionFactory,
    *,
    worker_id: str,
    now: datetime,
    limit: int,
    settings: NotifySettings | None = None,
) -> list[Claim]:
    """Claim up to `limit` due messages (pending and due, or 'sending' with an expired
    lease) for `worker_id`, in one short transaction.

    The claim is a conditional UPDATE that repeats the "still claimable" test, and only the
    rows it reports changed (RETURNING) are kept: a row another worker took meanwhile
    simply is not among them. That is healthchecks' `UPDATE … WHERE id=:id AND state=:old`
    + "exactly one row changed", done for a batch in one statement.

    A reclaimed message that has used up its attempts is marked failed instead: a message
    that crashes its worker every time must not take the workers down with it forever."""
    cfg = settings or get_notify_settings()
    due = (_outbox.c.state.in_(("pending", "sending")), _outbox.c.next_attempt_at <= now)
    with _writing(session_factory) as db:
        conn = db.connection()
        candidates = conn.execute(
            select(_outbox.c.id, _outbox.c.state, _outbox.c.attempts)
            .where(*due)
            .order_by(_outbox.c.next_attempt_at, _outbox.c.id)
            .limit(limit)
            # PostgreSQL: concurrent workers take disjoint candidates instead of queueing
            # on each other's row locks. SQLite ignores it; its writer lock serialises.
            .with_for_update(skip_locked=True)
        ).all()
        if not candidates:
            return []
        exhausted = [
            c.id for c in candidates if c.state == "sending" and c.attempts >= cfg.max_attempts
        ]
        if exhausted:
            conn.execute(
                update(_outbox)
                .where(_outbox.c.id.in_(exhausted), *due)
                .values(
                    state="failed",
                    claimed_by=None,
                    last_error=f"lease expired after {cfg.max_attempts} attempts; given up",
                )
            )
        wanted = [c.id for c in candidates if c.id not in exhausted]
        rows = conn.execute(
            update(_outbox)
            .where(_outbox.c.id.in_(wanted), *due)
            .values(
                state="sending",
                attempts=_outbox.c.attempts + 1,
                claimed_by=worker_id,
                claimed_at=now,
                # While 'sending', next_attempt_at is the end of the lease.
                next_attempt_at=now + timedelta(seconds=cfg.lease_s),
            )
            .returning(_outbox.c.id, _outbox.c.attempts, *(_outbox.c[n] for n in _ENVELOPE_COLUMNS))
        ).all()
    taken_over = {c.id for c in candidates if c.state == "sending"}
    order = {c.id: i for i, c in enumerate(candidates)}
    claims = []
    for row in sorted(rows, key=lambda r: order[r.id]):
        if row.id in taken_over:
            log.warning(
                "lease expired; message taken over",
                extra={"fields": {"outbox_id": row.id, "worker": worker_id}},
            )
        fields = {n: getattr(row, n) for n in _ENVELOPE_COLUMNS}
        claims.append(
            Claim(
                outbox_id=row.id,
                attempt=row.attempts,
                envelope=Envelope(**fields, attempt=row.attempts),
            )
        )
    return claims


def _still_held(db: Session, claims: list[Claim], worker_id: str) -> set[int]:
    """Ids of the claimed rows this worker still holds, locked until commit so no other
    worker can take one over between this check and our update (on SQLite the writer lock
    does the same). A row is held while it is 'sending' under our name with the attempt
    number we claimed it with; a takeover after our lease ran out changes both."""
    if not claims:
        return set()
    rows = db.connection().execute(
        select(_outbox.c.id, _outbox.c.state, _outbox.c.claimed_by, _outbox.c.attempts)
        .where(_outbox.c.id.in_([c.outbox_id for c in claims]))
        .with_for_update()
    )
    current = {r.id: (r.state, r.claimed_by, r.attempts) for r in rows}
    return {
        c.outbox_id for c in claims if current.get(c.outbox_id) == ("sending", worker_id, c.attempt)
    }


@dataclass(frozen=True)
class Outcome:
    """The result of one try, waiting to be recorded."""

    claim: Claim
    at: datetime
    error: DeliveryError | None
    duration_ms: int


def _next_state(o: Outcome, cfg: NotifySettings, rng: random.Random | None) -> dict[str, Any]:
    if o.error is None:
        return {"b_state": "sent", "b_sent_at": o.at, "b_next": o.at, "b_error": None}
    if o.error.error_class == "permanent" or o.claim.attempt >= cfg.max_attempts:
        return {
            "b_state": "failed",
            "b_sent_at": None,
            "b_next": o.at,
            "b_error": f"{o.error.error_class}: {o.error.detail}",
        }
    delay = backoff_delay(
        o.claim.attempt, base_s=cfg.backoff_base_s, cap_s=cfg.backoff_cap_s, rng=rng
    )
    if o.error.retry_after_s:
        delay = max(delay, min(o.error.retry_after_s, cfg.backoff_cap_s))
    return {
        "b_state": "pending",
        "b_sent_at": None,
        "b_next": o.at + timedelta(seconds=delay),
        "b_error": f"transient: {o.error.detail}",
    }


def record_results(
    session_factory: SessionFactory,
    *,
    outcomes: list[Outcome],
    worker_id: str,
    settings: NotifySettings | None = None,
    rng: random.Random | None = None,
) -> list[str | None]:
    """Log the attempts and move each message on — sent; back to pending after a backoff;
    or failed — in one transaction. For each outcome returns the new state, or None when
    the lease had been lost (another worker holds the message now and its result counts;
    our attempt is still logged)."""
    if not outcomes:
        return []
    cfg = settings or get_notify_settings()
    with _writing(session_factory) as db:
        conn = db.connection()
        conn.execute(
            insert(DeliveryAttempt),
            [
                {
                    "outbox_id": o.claim.outbox_id,
                    "attempt": o.claim.attempt,
                    "worker_id": worker_id,
                    "at": o.at,
                    "ok": o.error is None,
                    "error_class": None if o.error is None else o.error.error_class,
                    "detail": "" if o.error is None else o.error.detail[:2000],
                    "duration_ms": o.duration_ms,
                }
                for o in outcomes
            ],
        )
        held = _still_held(db, [o.claim for o in outcomes], worker_id)
        changes = [
            {"b_id": o.claim.outbox_id, **_next_state(o, cfg, rng)}
            for o in outcomes
            if o.claim.outbox_id in held
        ]
        if changes:
            conn.execute(
                update(_outbox)
                .where(_outbox.c.id == bindparam("b_id"))
                .values(
                    state=bindparam("b_state"),
                    sent_at=bindparam("b_sent_at"),
                    next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                    claimed_by=None,
                ),
                changes,
            )
    new_state = {c["b_id"]: str(c["b_state"]) for c in changes}
    states = [new_state.get(o.claim.outbox_id) for o in outcomes]
    for o, state in zip(outcomes, states, strict=True):
        if state is None:
            log.warning(
                "lease lost before the result was recorded",
                extra={"fields": {"outbox_id": o.claim.outbox_id, "worker": worker_id}},
            )
    return states


def record_result(
    session_factory: SessionFactory,
    *,
    claim: Claim,
    worker_id: str,
    now: datetime,
    error: DeliveryError | None,
    duration_ms: int,
    settings: NotifySettings | None = None,
    rng: random.Random | None = None,
) -> str | None:
    """record_results for a single try."""
    [state] = record_results(
        session_factory,
        outcomes=[Outcome(claim=claim, at=now, error=error, duration_ms=duration_ms)],
        worker_id=worker_id,
        settings=settings,
        rng=rng,
    )
    return state


def release(
    session_factory: SessionFactory, *, claims: list[Claim], worker_id: str, now: datetime
) -> int:
    """Hand back claimed messages that were not tried (stopping, or the lease running
    short), due at once for any worker and without spending an attempt."""
    if not claims:
        return 0
    with _writing(session_factory) as db:
        held = _still_held(db, claims, worker_id)
        back = [
            {"b_id": c.outbox_id, "b_attempts": c.attempt - 1}
            for c in claims
            if c.outbox_id in held
        ]
        if back:
            db.connection().execute(
                update(_outbox)
                .where(_outbox.c.id == bindparam("b_id"))
                .values(
                    state="pending",
                    attempts=bindparam("b_attempts"),
                    claimed_by=None,
                    claimed_at=None,
                    next_attempt_at=now,
                ),
                back,
            )
    return len(back)


# Results are recorded in groups: one transaction per message was most of the cost of
# delivery. The messages of a worker that dies holding unrecorded results are sent again
# after its lease (at least once), so a group is kept small in count and in age.
RECORD_EVERY = 20
RECORD_WITHIN_S = 0.5


def deliver_due(
    session_factory: SessionFactory,
    *,
    worker_id: str,
    now: datetime,
    limit: int,
    sender: Sender,
    settings: NotifySettings | None = None,
    stop_event: threading.Event | None = None,
    rng: random.Random | None = None,
) -> int:
    """Claim up to `limit` due messages and try each once. Returns how many were tried
    (sent, rescheduled or failed); 0 means nothing was due for this worker.

    `now` is the time the claim is stamped with; results are stamped `now` plus the time
    the batch has taken so far. Before each send the remaining lease is checked against
    the channel timeout, so a row of slow receivers never outlives its lease; messages
    left untried (that, or `stop_event`) are released."""
    cfg = settings or get_notify_settings()
    claims = claim_due(session_factory, worker_id=worker_id, now=now, limit=limit, settings=cfg)
    claimed_at = time.monotonic()
    unrecorded: list[Outcome] = []
    oldest = 0.0
    tried = 0

    def record() -> None:
        states = record_results(
            session_factory, outcomes=unrecorded, worker_id=worker_id, settings=cfg, rng=rng
        )
        for o, state in zip(unrecorded, states, strict=True):
            if o.error is not None:
                log.info(
                    "delivery failed",
                    extra={
                        "fields": {
                            "outbox_id": o.claim.outbox_id,
                            "channel": o.claim.envelope.channel,
                            "attempt": o.claim.attempt,
                            "class": o.error.error_class,
                            "state": state,
                            "detail": o.error.detail[:300],
                        }
                    },
                )
        unrecorded.clear()

    try:
        for i, claim in enumerate(claims):
            # Before starting a send (which may take up to the timeout), write down what is
            # due: a crash then re-sends at most RECORD_EVERY messages, or those that
            # finished in the last RECORD_WITHIN_S, plus the one in flight.
            if unrecorded and (
                len(unrecorded) >= RECORD_EVERY or time.monotonic() - oldest >= RECORD_WITHIN_S
            ):
                record()
            stopping = stop_event is not None and stop_event.is_set()
            lease_short = time.monotonic() - claimed_at + cfg.send_margin_s > cfg.lease_s
            if stopping or lease_short:
                record()
                n = release(session_factory, claims=claims[i:], worker_id=worker_id, now=now)
                log.info(
                    "released untried messages",
                    extra={"fields": {"count": n, "reason": "stop" if stopping else "lease"}},
                )
                break
            started = time.monotonic()
            error: DeliveryError | None = None
            try:
                sender(claim.envelope)
            except DeliveryError as exc:
                error = exc
            except Exception as exc:
                # A bug or an unforeseen library error: keep the worker alive, retry later
                # and leave the traceback in the log; max_attempts bounds the damage.
                log.exception("sender raised", extra={"fields": {"outbox_id": claim.outbox_id}})
                error = DeliveryError(f"{type(exc).__name__}: {exc}")
            finished = time.monotonic()
            if not unrecorded:
                oldest = finished
            unrecorded.append(
                Outcome(
                    claim=claim,
                    at=now + timedelta(seconds=finished - claimed_at),
                    error=error,
                    duration_ms=int((finished - started) * 1000),
                )
            )
            tried += 1
    finally:
        # Also on the way out of an unexpected error: what was sent gets recorded.
        if unrecorded:
            record()
    return tried


def delivery_loop(
    session_factory: SessionFactory,
    *,
    clock: Callable[[], datetime],
    worker_id: str,
    stop_event: threading.Event,
    sender: Sender | None = None,
    settings: NotifySettings | None = None,
    limit: int | None = None,
    poll_interval_s: float | None = None,
) -> int:
    """Deliver until `stop_event` is set; returns how many messages were tried. Idle, it
    waits poll_interval_s; after a database error it waits longer each time (up to a
    minute) rather than spinning. Setting stop_event lets the message in hand finish and
    hands the rest of the batch back."""
    cfg = settings or get_notify_settings()
    batch = limit or cfg.batch_size
    idle_s = poll_interval_s if poll_interval_s is not None else cfg.poll_interval_s
    own_sender = sender is None
    send: Sender = ChannelSender(cfg) if sender is None else sender
    total, failures = 0, 0
    log.info("delivery worker started", extra={"fields": {"worker": worker_id}})
    try:
        while not stop_event.is_set():
            try:
                tried = deliver_due(
                    session_factory,
                    worker_id=worker_id,
                    now=clock(),
                    limit=batch,
                    sender=send,
                    settings=cfg,
                    stop_event=stop_event,
                )
                failures = 0
            except Exception:
                failures += 1
                wait = min(60.0, idle_s * 2**failures)
                log.exception("delivery round failed", extra={"fields": {"retry_in_s": wait}})
                stop_event.wait(wait)
                continue
            total += tried
            if tried == 0:
                stop_event.wait(idle_s)
    finally:
        if own_sender and isinstance(send, ChannelSender):
            send.close()
        log.info("delivery worker stopped", extra={"fields": {"worker": worker_id, "tried": total}})
    return total


def run_worker(*, worker_id: str | None = None, database_url: str | None = None) -> int:
    """Entry point for a worker process (`python -m watergrid.notify`): SIGTERM and SIGINT
    finish the message in hand, release the rest and return."""
    from watergrid import db as dbmod

    dbmod.configure(database_url)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stop requested", extra={"fields": {"signal": signum}})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return delivery_loop(
        dbmod.session_factory(),
        clock=utcnow,
        worker_id=worker_id or default_worker_id(),
        stop_event=stop,
    )


def start_in_thread(
    session_factory: SessionFactory, *, worker_id: str | None = None
) -> tuple[threading.Thread, threading.Event]:
    """A delivery loop beside the web app (the embedded single-process setup). Set the
    returned event and join the thread to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=delivery_loop,
        kwargs={
            "session_factory": session_factory,
            "clock": utcnow,
            "worker_id": worker_id or default_worker_id(),
            "stop_event": stop,
        },
        name="notify-delivery",
        daemon=True,
    )
    thread.start()
    return thread, stop
