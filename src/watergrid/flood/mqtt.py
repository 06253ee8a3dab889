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

paho's network thread reads continuously into memory while the consumer thread writes
batches. Reading must never pause for the database: a consumer that stops reading fills
its TCP buffers, the broker then queues for it, and Mosquitto drops QoS 1 messages for a
client once that queue passes max_queued_messages (1000 by default) — measured: a 0.3 s
burst of 3,000 large messages lost 43% to a consumer that read only between batches.
Throughput comes from batching: each batch takes what is waiting (up to `batch_max`
readings, waiting at most `batch_linger_ms` when little is), and is written in one
transaction with a handful of multi-row statements (flood/ingest.py)."""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from watergrid.db import begin_write
from watergrid.flood.ingest import Outcome, ingest
from watergrid.flood.parse import Limits, RawReading, Rejected, parse_message, subscriptions
from watergrid.flood.settings import FloodSettings, get_flood_settings
from watergrid.flood.state import IngestState
from watergrid.timers.clock import Clock, SystemClock

log = logging.getLogger("watergrid.flood.mqtt")
DB_BACKOFF_MAX_S = 30.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
KEEPALIVE_S = 30


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
    readings: list[RawReading] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def connect_properties(settings: FloodSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.mqtt_session_expiry_s
    props.ReceiveMaximum = max(1, min(65535, settings.mqtt_receive_maximum))
    return props


class _Inbox:
    """Hand-over from paho's network thread to the consumer thread. The deque needs no lock
    (append and popleft are atomic); the event only wakes a consumer that found it empty,
    so a busy stream costs no wake-up per message."""

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


class Consumer:
    """One consumer: a paho client (its network thread) and the loop writing batches."""

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
        self.stop_event = threading.Event()
        self.client = self._make_client()

    # -- the connection (callbacks run on paho's network thread) -------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_password or None)
        if s.mqtt_tls:
            client.tls_set_context(ssl.create_default_context())
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, c: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connection refused: %s", reason)
            return
        with self.stats.lock:
            self.stats.connected, self.stats.connects = True, self.stats.connects + 1
        log.info("MQTT connected (session present: %s)", flags.session_present)
        # Subscribing again on a resumed session is harmless and covers an expired one.
        c.subscribe([(t, 1) for t in subscriptions(self.settings.mqtt_topic_prefix)])

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self.stats.lock:
            self.stats.connected, self.stats.disconnects = False, self.stats.disconnects + 1
        if not self.stop_event.is_set():
            log.warning("MQTT disconnected (%s); reconnecting", reason)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self.inbox.put(_Message(msg.mid, msg.qos, msg.topic, msg.payload))

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event
        s = self.settings
        # connect_async + loop_start: paho's thread connects, and reconnects with backoff
        # whenever the connection drops, also when the broker is down at start.
        self.client.connect_async(
            s.mqtt_host,
            s.mqtt_port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=connect_properties(s),
        )
        self.client.loop_start()
        try:
            while not stop_event.is_set():
                batch = self._collect()
                if batch:
                    self._process(batch)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

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
        for m in batch:
            if m.qos:
                self.client.ack(m.mid, m.qos)
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
                    out = self._write([_Message(m.mid, m.qos, m.topic, m.payload, [], [note])])
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
