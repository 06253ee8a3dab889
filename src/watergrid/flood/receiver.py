"""The MQTT side of the consumer, in a process of its own: it holds the paho client, reads
continuously and forwards messages to the writer (flood/mqtt.py) over a pipe; the writer
sends back what it has committed, which this process then acknowledges to the broker.

Why a process: paho handles each message and each acknowledgement in Python. In the same
process as the database work the two fought over the interpreter lock — every database
call gave the lock away and waited up to the switch interval to get it back — and one
reading per message topped out near 3,000 messages/s on two cores. Apart, each has a core.

Protocol (tuples over two one-way pipes):
  receiver → writer: ("msgs", [(mid, qos, topic, payload), ...]), ("status", connected,
                     connects, disconnects)
  writer → receiver: ("ack", [(mid, qos), ...]), ("stop",)
The receiver exits when the writer's end closes, so it never outlives its writer."""

from __future__ import annotations

import collections
import logging
import ssl
import threading
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from watergrid.flood.parse import subscriptions
from watergrid.flood.settings import FloodSettings

log = logging.getLogger("watergrid.flood.receiver")
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
KEEPALIVE_S = 30
FORWARD_EVERY_S = 0.002  # how long messages may wait here before going to the writer
FORWARD_MAX = 2000  # messages per pipe write


def connect_properties(settings: FloodSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.mqtt_session_expiry_s
    props.ReceiveMaximum = max(1, min(65535, settings.mqtt_receive_maximum))
    return props


class _Receiver:
    def __init__(self, settings: FloodSettings, out: Connection) -> None:
        self.settings = settings
        self.out = out
        self.out_lock = threading.Lock()  # paho's thread sends status, the main thread messages
        self.items: collections.deque[tuple[int, int, str, bytes]] = collections.deque()
        self.connects = self.disconnects = 0
        self.stopping = False
        self.client = self._make_client()

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

    def _send(self, item: tuple[Any, ...]) -> None:
        with self.out_lock:
            self.out.send(item)

    def _on_connect(self, c: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT connection refused: %s", reason)
            return
        self.connects += 1
        log.info("MQTT connected (session present: %s)", flags.session_present)
        # Subscribing again on a resumed session is harmless and covers an expired one.
        c.subscribe([(t, 1) for t in subscriptions(self.settings.mqtt_topic_prefix)])
        self._send(("status", True, self.connects, self.disconnects))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.disconnects += 1
        if not self.stopping:
            log.warning("MQTT disconnected (%s); reconnecting", reason)
        self._send(("status", False, self.connects, self.disconnects))

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self.items.append((msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def run(self, inbox: Connection) -> None:
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
            while True:
                if inbox.poll(FORWARD_EVERY_S):
                    order = inbox.recv()
                    if order[0] == "stop":
                        return
                    for mid, qos in order[1]:
                        self.client.ack(mid, qos)
                batch: list[tuple[int, int, str, bytes]] = []
                while self.items and len(batch) < FORWARD_MAX:
                    batch.append(self.items.popleft())
                if batch:
                    self._send(("msgs", batch))
        except (EOFError, OSError):
            return  # the writer is gone; the broker keeps what we did not acknowledge
        finally:
            self.stopping = True
            self.client.disconnect()
            self.client.loop_stop()


def receiver_main(settings: FloodSettings, out: Connection, inbox: Connection) -> None:
    """Entry point of the receiver process."""
    from watergrid.ops.logs import setup_logging
    from watergrid.settings import get_settings

    app = get_settings()
    setup_logging(level=app.log_level, as_json=app.log_json)  # the same log lines as the worker
    _Receiver(settings, out).run(inbox)
