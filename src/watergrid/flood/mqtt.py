"""The MQTT sensor consumer: `run_consumer` for `watergrid worker` (and a thread of the embedded
`serve`).

Delivery guarantees, and how they are kept:

- **Nothing acknowledged is lost.** QoS 1 messages are acknowledged (PUBACK) only after the
  transaction holding their readings has committed (paho's manual_ack). A consumer that
  dies before committing leaves them unacknowledged, and the broker sends them again.
- **Nothing published while we are away is lost.** The client connects with a fixed client
  id, clean_start False and an MQTT v5 session expiry, so the broker keeps the
  subscriptions and queues QoS 1 messages while the consumer is disconnected or restarting
  — and, with broker persistence on (Mosquitto's `persistence true`), across a broker
  restart too.
- **Duplicates change nothing.** Redelivery after a crash or reconnect repeats readings;
  the readings' primary key (sensor, ts) refuses them and no sum counts them twice.
- **It never stops on bad data.** A bad message becomes dead letters; a batch that fails
  for any other reason is retried message by message, and a message that still fails is
  dead-lettered with reason internal_error. Database outages are retried with backoff,
  without acknowledging anything.
- **It reconnects by itself** (paho's reconnect loop, backoff 1 to 30 s), also when the
  broker is down at start.

Two processes: the receiver (flood/receiver.py) holds the MQTT connection and reads
continuously; this one parses and writes. Reading must never pause for the database: a
consumer that stops reading fills its TCP buffers, the broker then queues for it, and
Mosquitto drops QoS 1 messages for a client once that queue passes max_queued_messages
(1000 by default). In one process the MQTT work and the database work also fought over the
interpreter lock (receiver.py says more). Throughput comes from batching: each batch takes
what is waiting (up to `batch_max` readings, waiting at most `batch_linger_ms` when little
is), and is written in one transaction with a handful of multi-row statements (flood/ingest.py)."""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from watergrid.db import begin_write
from watergrid.flood.ingest import Outcome, ingest
from watergrid.flood.parse import Limits, RawReading, Rejected, parse_message, subscriptions
from watergrid.flood.receiver import receiver_main
from watergrid.flood.settings import FloodSettings, get_flood_settings
from watergrid.flood.state import IngestState
from watergrid.timers.clock import Clock, SystemClock

log = logging.getLogger("watergrid.flood.mqtt")
DB_BACKOFF_MAX_S = 30.0


@dataclass
class ConsumerStats:
    """Counters a caller (the worker's health check, the bench, tests) can watch from
    another thread."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    messages: int = 0
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    flagged: int = 0
    dead_letters: int = 0
    alarm_changes: int = 0
    db_errors: int = 0
    isolated_failures: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, out: Outcome, messages: int) -> None:
        with self.lock:
            self.messages += messages
            self.batches += 1
            self.stored += out.stored
            self.duplicates += out.duplicates
            self.flagged += out.flagged
            self.dead_letters += len(out.rejected)
            self.alarm_changes += len(out.notices)


@dataclass(slots=True)
class _Message:
    mid: int
    qos: int
    topic: str
    payload: bytes | bytearray
    generation: int = 0  # which receiver process delivered it
    readings: list[RawReading] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class _Inbox:
    """Hand-over from the pipe-reading thread to the writer. The deque needs no lock (append
    and popleft are atomic); the event only wakes a writer that found it empty, so a busy
    stream costs no wake-up per message."""

    def __init__(self) -> None:
        self._items: collections.deque[_Message] = collections.deque()
        self._ready = threading.Event()

    def put(self, item: _Message) -> None:
        self._items.append(item)
        if not self._ready.is_set():
            self._ready.set()

    def get(self, timeout: float) -> _Message | None:
        if not self._items and timeout > 0:
            self._ready.clear()
            if not self._items:  # a put between the check and the clear is not missed
                self._ready.wait(timeout)
        return self._items.popleft() if self._items else None


class _Link:
    """The writer's end of the receiver process: starts it, reads its pipe in a thread,
    sends it acknowledgements, restarts it should it die."""

    def __init__(self, settings: FloodSettings, inbox: _Inbox, stats: ConsumerStats) -> None:
        self.settings = settings
        self.inbox = inbox
        self.stats = stats
        self.generation = 0
        self.proc: Any = None
        self.acks: Any = None
        self.ack_lock = threading.Lock()
        self.started_at = 0.0

    def start(self) -> None:
        ctx = mp.get_context("spawn")  # no fork: this process has threads and connections
        msgs_in, msgs_out = ctx.Pipe(duplex=False)
        acks_in, acks_out = ctx.Pipe(duplex=False)
        self.generation += 1
        self.proc = ctx.Process(
            target=receiver_main,
            args=(self.settings, msgs_out, acks_in),
            name=f"flood-mqtt-receiver-{self.generation}",
            daemon=True,
        )
        self.proc.start()
        msgs_out.close()
        acks_in.close()
        self.acks = acks_out
        self.started_at = time.monotonic()
        threading.Thread(
            target=self._read, args=(msgs_in, self.generation), name="flood-mqtt-pipe", daemon=True
        ).start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def _read(self, conn: Any, generation: int) -> None:
        try:
            while True:
                kind, *rest = conn.recv()
                if kind == "msgs":
                    for mid, qos, topic, payload in rest[0]:
                        self.inbox.put(_Message(mid, qos, topic, payload, generation))
                elif kind == "status":
                    with self.stats.lock:
                        self.stats.connected, self.stats.connects, self.stats.disconnects = rest
        except (EOFError, OSError):
            with self.stats.lock:
                self.stats.connected = False
        finally:
            conn.close()

    def ack(self, batch: list[_Message]) -> None:
        # Only to the receiver that delivered them: a new one never saw those packet ids,
        # and the broker sends it the unacknowledged messages again anyway.
        items = [(m.mid, m.qos) for m in batch if m.qos and m.generation == self.generation]
        if not items:
            return
        try:
            with self.ack_lock:
                self.acks.send(("ack", items))
        except OSError:
            pass  # receiver gone; the broker redelivers, the readings' key drops the copies

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            with self.ack_lock:
                self.acks.send(("stop",))
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.acks.close()


class Consumer:
    """One consumer: the receiver process and the loop writing batches."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        settings: FloodSettings,
        state: IngestState,
        stats: ConsumerStats,
        clock: Clock,
        on_batch: Callable[[Outcome], None] | None,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.state = state
        self.stats = stats
        self.clock = clock
        self.on_batch = on_batch
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_batch_readings=settings.max_batch_readings,
            future_tolerance=timedelta(seconds=settings.future_tolerance_s),
            late_limit=timedelta(days=settings.late_limit_days),
        )
        self.inbox = _Inbox()
        self.link = _Link(settings, self.inbox, stats)
        self.stop_event = threading.Event()

    def run(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event
        self.link.start()
        try:
            while not stop_event.is_set():
                batch = self._collect()
                if batch:
                    self._process(batch)
                elif not self.link.alive() and time.monotonic() - self.link.started_at > 1:
                    log.error("MQTT receiver process exited; starting another")
                    self.link.start()
        finally:
            self.link.stop()

    def _collect(self) -> list[_Message]:
        first = self.inbox.get(timeout=0.2)
        if first is None:
            return []
        now = self.clock.now()
        self._parse(first, now)
        batch, readings = [first], len(first.readings)
        deadline = time.monotonic() + self.settings.batch_linger_ms / 1000
        while readings < self.settings.batch_max and not self.stop_event.is_set():
            msg = self.inbox.get(timeout=deadline - time.monotonic())
            if msg is None:
                break
            self._parse(msg, now)
            batch.append(msg)
            readings += len(msg.readings)
        return batch

    def _parse(self, msg: _Message, now: datetime) -> None:
        msg.readings, msg.rejected = parse_message(
            msg.topic,
            msg.payload,
            prefix=self.settings.mqtt_topic_prefix,
            now=now,
            limits=self.limits,
        )

    def _write(self, batch: list[_Message]) -> Outcome:
        now = self.clock.now()
        with self.session_factory() as db:
            begin_write(db)
            try:
                out = ingest(
                    db,
                    readings=[r for m in batch for r in m.readings],
                    rejected=[r for m in batch for r in m.rejected],
                    source="mqtt",
                    state=self.state,
                    now=now,
                )
                db.commit()
            except BaseException:
                db.rollback()
                self.state.invalidate()
                raise
        return out

    def _done(self, batch: list[_Message], out: Outcome) -> None:
        self.link.ack(batch)
        self.stats.add(out, len(batch))
        if self.on_batch is not None:
            self.on_batch(out)

    def _process(self, batch: list[_Message]) -> None:
        backoff = 0.5
        while True:
            try:
                out = self._write(batch)
                break
            except DBAPIError as exc:
                if not _is_outage(exc):
                    self._isolate(batch)
                    return
                self._note_error(exc)
                if self.stop_event.is_set():
                    return  # unacknowledged: the broker delivers these again next time
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, DB_BACKOFF_MAX_S)
            except Exception as exc:
                self._note_error(exc)
                self._isolate(batch)
                return
        self._done(batch, out)

    def _isolate(self, batch: list[_Message]) -> None:
        """Write each message alone so one poisonous message cannot hold the rest back; a
        message that still fails is dead-lettered as internal_error and acknowledged."""
        for m in batch:
            try:
                out = self._write([m])
            except Exception as exc:
                self._note_error(exc)
                with self.stats.lock:
                    self.stats.isolated_failures += 1
                detail = f"{type(exc).__name__}: {exc}"[:500]
                payload = bytes(m.payload[:4000]).decode("utf-8", "replace")
                note = Rejected("internal_error", detail, None, payload, m.topic)
                try:
                    poison = _Message(m.mid, m.qos, m.topic, m.payload, m.generation, [], [note])
                    out = self._write([poison])
                except Exception as again:  # the database itself is failing: leave it unacked
                    self._note_error(again)
                    continue
            self._done([m], out)

    def _note_error(self, exc: BaseException) -> None:
        with self.stats.lock:
            self.stats.db_errors += isinstance(exc, DBAPIError)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("flood ingest batch failed: %s", self.stats.last_error)


def _is_outage(exc: DBAPIError) -> bool:
    """Errors worth waiting out (server gone, lock busy) rather than blaming the data."""
    return bool(exc.connection_invalidated) or type(exc.orig).__name__ in {
        "OperationalError",
        "InterfaceError",
    }


def run_consumer(
    session_factory: Callable[[], Session],
    *,
    stop_event: threading.Event,
    settings: FloodSettings | None = None,
    state: IngestState | None = None,
    stats: ConsumerStats | None = None,
    clock: Clock | None = None,
    on_batch: Callable[[Outcome], None] | None = None,
) -> ConsumerStats:
    """Consume sensor readings until `stop_event` is set; returns the counters. Blocks: run
    it in a thread or as a worker process's main loop. `on_batch` is called after each
    commit with what the batch did."""
    settings = settings or get_flood_settings()
    stats = stats or ConsumerStats()
    consumer = Consumer(
        session_factory,
        settings=settings,
        state=state or IngestState(refresh=settings.directory_refresh_s),
        stats=stats,
        clock=clock or SystemClock(),
        on_batch=on_batch,
    )
    log.info(
        "flood consumer %s on %s:%s, topics %s",
        settings.mqtt_client_id,
        settings.mqtt_host,
        settings.mqtt_port,
        subscriptions(settings.mqtt_topic_prefix),
    )
    consumer.run(stop_event)
    return stats


def start_consumer_thread(
    session_factory: Callable[[], Session], **kwargs: Any
) -> tuple[threading.Thread, threading.Event, ConsumerStats]:
    """run_consumer in a daemon thread (the embedded serve). Set the event to stop it."""
    stop = threading.Event()
    stats = kwargs.pop("stats", None) or ConsumerStats()
    thread = threading.Thread(
        target=run_consumer,
        args=(session_factory,),
        kwargs={"stop_event": stop, "stats": stats, **kwargs},
        name="flood-mqtt-consumer",
        daemon=True,
    )
    thread.start()
    return thread, stop, stats
