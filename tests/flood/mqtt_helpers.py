"""MQTT plumbing of the flood tests: a publisher, a consumer thread, a private broker."""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker
from tests.flood.helpers import wait_for

from watergrid.flood.mqtt import ConsumerStats, start_consumer_thread
from watergrid.flood.settings import FloodSettings


def settings_for(
    tag: str, host: str = "127.0.0.1", port: int = 1883, **extra: Any
) -> FloodSettings:
    # A short session expiry: the shared broker should not keep every test's session a week.
    extra.setdefault("mqtt_session_expiry_s", 120)
    return FloodSettings(
        mqtt_host=host,
        mqtt_port=port,
        mqtt_client_id=f"wg-test-{tag}",
        mqtt_topic_prefix=f"wg-test/{tag}",
        **extra,
    )


@contextmanager
def consumer(
    sf: sessionmaker[Session], settings: FloodSettings, **kwargs: Any
) -> Iterator[ConsumerStats]:
    thread, stop, stats = start_consumer_thread(sf, settings=settings, **kwargs)
    try:
        wait_for(lambda: stats.connected, 10, "the consumer to connect")
        yield stats
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "consumer did not stop"


@contextmanager
def publisher(tag: str, host: str = "127.0.0.1", port: int = 1883) -> Iterator[paho.Client]:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"wg-test-pub-{tag}-{time.monotonic_ns()}",
        protocol=paho.MQTTv5,
    )
    deadline = time.monotonic() + 15
    while True:  # the broker may be coming back up
        try:
            client.connect(host, port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: paho.Client, messages: Sequence[tuple[str, object]]) -> None:
    """QoS 1, waiting for every PUBACK: once this returns the broker owns the messages."""
    infos = []
    for topic, body in messages:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateBroker:
    """A Mosquitto process of the test's own (same binary, persistence on, like the system
    broker's configuration), so restarting it disturbs nobody else's tests. Stopped by its
    own process id with SIGTERM, which is how a service manager stops it: it saves its
    persistence file first."""

    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.workdir}/\nlog_dest file {self.workdir}/mosquitto.log\n"
            # Started as root, Mosquitto would drop to its own user, which may not write in
            # the test's directory: stay the user running the tests.
            f"user {getpass.getuser()}\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._listening, 10, "the private broker to listen")

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None
