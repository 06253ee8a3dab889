"""Scenario restart_mosquitto: the MQTT broker restarts in the middle of sensor ingestion.

A private Mosquitto (as bench/ingest.py starts one, here with persistence on, as
docs/flood-sensors.md asks of production) on a free port; a `watergrid worker --loops mqtt`
consuming into a fresh database holding rain gauges; a QoS 1 publisher in this process.

  1. before: readings published once the consumer's subscription is in place;
  2. during: readings published at a steady rate while the broker is stopped (SIGTERM,
     which writes its persistence file) and started again on the same port; the publisher
     keeps every reading until the broker acknowledges it (PUBACK) and sends again what
     was not acknowledged within `RESEND_S` — at least once, as a real data logger does;
  3. after: readings published once the broker is back;
  4. count: the readings stored (flood_reading rows, keyed by sensor and timestamp, so a
     repeat is one row) = the distinct readings published, and no row that was not.

    python faults/restart_mosquitto.py [--readings 1000] [--backend postgresql|sqlite]"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults.common import (
    Processes,
    app_env,
    exit_on_sigterm,
    free_port,
    report,
    wait_until,
    workdir,
)

NAME = "restart_mosquitto"
RESEND_S = 3.0
BROKER_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
# The consumer's session and the QoS 1 messages queued for it survive the restart only
# when the broker keeps them on disk.
persistence true
persistence_location {dir}/
autosave_interval 1
user {user}
"""


class Broker:
    def __init__(self, tmp: Path) -> None:
        import getpass

        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        (tmp / "mosq").mkdir()
        self.conf.write_text(
            BROKER_CONF.format(port=self.port, dir=tmp / "mosq", user=getpass.getuser())
        )
        self.log = tmp / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        t0 = time.monotonic()
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return time.monotonic() - t0
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    tail = self.log.read_text()[-500:]
                    raise RuntimeError(f"mosquitto did not start: {tail}") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Publisher:
    """QoS 1 with a resend: a reading counts as published once the broker acknowledged one
    of its copies."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"wg-faults-pub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.max_inflight_messages_set(200)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str], list[Any]] = {}
        self.acked: set[tuple[str, str]] = set()
        self.sends = 0
        self.resends = 0

    def send(self, key: tuple[str, str], topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        with self.lock:
            self.sends += 1
            rec = self.pending.setdefault(key, [topic, payload, [], 0.0])
            rec[2].append(info)
            rec[3] = time.monotonic()

    @staticmethod
    def _published(info: Any) -> bool:
        try:
            return bool(info.is_published())
        except (RuntimeError, ValueError):  # refused while disconnected: not sent
            return False

    def pump(self) -> int:
        """Move acknowledged readings to `acked`, send again those waiting too long;
        returns how many are still waiting."""
        now = time.monotonic()
        with self.lock:
            items = list(self.pending.items())
        again = []
        for key, (topic, payload, infos, sent_at) in items:
            if any(self._published(i) for i in infos):
                with self.lock:
                    self.acked.add(key)
                    del self.pending[key]
            elif now - sent_at > RESEND_S:
                again.append((key, topic, payload))
        for key, topic, payload in again:
            self.resends += 1
            self.send(key, topic, payload)
        with self.lock:
            return len(self.pending)

    def settle(self, timeout_s: float) -> bool:
        return wait_until(lambda: self.pump() == 0, timeout_s, every_s=0.1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _setup(url: str, gauges: int) -> list[str]:
    sys_path_bench = str(Path(__file__).resolve().parents[1] / "bench")
    import sys

    if sys_path_bench not in sys.path:
        sys.path.insert(0, sys_path_bench)
    from ingest import _setup as bench_setup

    return bench_setup(url, gauges=gauges, levels=0, triggers=0)["rain"]


def _rows(url: str) -> set[tuple[str, str]]:
    from sqlalchemy import create_engine, select

    from watergrid.flood.models import Reading, Sensor

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(Sensor.code, Reading.ts).join(Sensor, Sensor.id == Reading.sensor_id)
            ).all()
    finally:
        engine.dispose()
    out = set()
    for code, ts in rows:
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts)
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        out.add((code, ts.isoformat()))
    return out


def run(*, readings: int = 1000, backend: str = "postgresql", gauges: int = 20) -> dict[str, Any]:
    from harness import fresh_database

    started = time.monotonic()
    events: list[dict[str, Any]] = []
    with workdir(NAME) as tmp, fresh_database(backend, tmp) as url:
        codes = _setup(url, gauges)
        prefix = f"wg-faults/{uuid.uuid4().hex[:8]}"
        broker = Broker(tmp)
        broker.start()
        procs = Processes()
        pub: Publisher | None = None
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
        counter = iter(range(10**9))
        probes = iter(range(10**9))
        probe_keys: set[tuple[str, str]] = set()

        def publish_one(probe: bool = False) -> None:
            # Probes go a day further back than the readings counted, and are left out of
            # both counts: one sent before the subscription existed is rightly dropped.
            k = next(probes) if probe else next(counter)
            code = codes[k % len(codes)]
            ts = (base - timedelta(days=1 if probe else 0) + timedelta(seconds=k)).isoformat()
            if probe:
                probe_keys.add((code, ts))
            body = json.dumps({"ts": ts, "value": 0.1, "seq": k}).encode()
            assert pub is not None
            pub.send((code, ts), f"{prefix}/sensors/{code}/readings", body)

        try:
            env = app_env(
                url,
                WATERGRID_FLOOD_MQTT_HOST="127.0.0.1",
                WATERGRID_FLOOD_MQTT_PORT=str(broker.port),
                WATERGRID_FLOOD_MQTT_CLIENT_ID=f"wg-faults-consumer-{uuid.uuid4().hex[:6]}",
                WATERGRID_FLOOD_MQTT_TOPIC_PREFIX=prefix,
                WATERGRID_FLOOD_MQTT_SESSION_EXPIRY_S="600",
                WATERGRID_LOG_LEVEL="INFO",
            )
            consumer = procs.start(
                "consumer",
                [
                    __import__("sys").executable,
                    "-m",
                    "watergrid.cli",
                    "worker",
                    "--worker-id",
                    "consumer",
                    "--loops",
                    "mqtt",
                ],
                env=env,
                log=tmp / "consumer.log",
            )
            pub = Publisher(broker.port)
            # A reading published before the consumer has subscribed would go nowhere (the
            # broker has no session for it yet); probe until one arrives.
            t0 = time.monotonic()
            subscribed = False
            while time.monotonic() - t0 < 60 and not subscribed:
                publish_one(probe=True)
                subscribed = wait_until(lambda: len(_rows(url)) > 0, 1.0, every_s=0.1)
            if not subscribed:
                raise RuntimeError(f"consumer never stored a reading:\n{consumer.tail()}")
            events.append({"at_s": round(time.monotonic() - t0, 2), "event": "consumer subscribed"})
            per_phase = {"before": readings // 4, "during": readings // 2}
            per_phase["after"] = readings - per_phase["before"] - per_phase["during"]
            for _ in range(per_phase["before"]):
                publish_one()
            pub.settle(30)
            events.append({"at_s": round(time.monotonic() - t0, 2), "event": "before published"})

            during_done = threading.Event()
            rate = 100.0

            def during() -> None:
                for _ in range(per_phase["during"]):
                    publish_one()
                    pub.pump()
                    time.sleep(1 / rate)
                during_done.set()

            th = threading.Thread(target=during, daemon=True)
            th.start()
            time.sleep(per_phase["during"] / rate / 4)
            rows_at_stop = len(_rows(url))
            broker.stop()
            events.append(
                {
                    "at_s": round(time.monotonic() - t0, 2),
                    "event": "broker stopped",
                    "rows_stored_so_far": rows_at_stop,
                }
            )
            time.sleep(2.0)
            up_s = broker.start()
            events.append(
                {
                    "at_s": round(time.monotonic() - t0, 2),
                    "event": "broker started",
                    "start_s": round(up_s, 2),
                }
            )
            th.join(120)
            for _ in range(per_phase["after"]):
                publish_one()
            all_acked = pub.settle(60)
            events.append(
                {
                    "at_s": round(time.monotonic() - t0, 2),
                    "event": "all acknowledged",
                    "ok": all_acked,
                }
            )
            published = (set(pub.acked) | set(pub.pending)) - probe_keys
            stored_all = wait_until(
                lambda: len(_rows(url) - probe_keys) >= len(published), 60, every_s=0.5
            )
            time.sleep(1.0)  # a late repeat must not add a row either
            stored = _rows(url) - probe_keys
            events.append({"at_s": round(time.monotonic() - t0, 2), "event": "counted"})
            code = procs.terminate(consumer)
            log_text = consumer.log.read_text(errors="replace")
        finally:
            procs.kill_all()
            if pub is not None:
                pub.close()
            broker.stop()
    missing = published - stored
    extra = stored - published
    return {
        "settings": {
            "backend": backend,
            "readings": readings,
            "sensors": len(codes),
            "during_rate_per_s": rate,
            "publisher_resend_after_s": RESEND_S,
            "broker": "private Mosquitto, persistence true",
        },
        "published_per_phase": per_phase,
        "probes_until_subscribed": len(probe_keys),
        "events": events,
        "published": len(published),
        "acknowledged_by_broker": len(pub.acked - probe_keys),
        "publisher_sends": pub.sends,
        "publisher_resends": pub.resends,
        "stored": len(stored),
        "missing": sorted(missing)[:10],
        "missing_count": len(missing),
        "not_published_but_stored": len(extra),
        "consumer_disconnects_logged": log_text.count("MQTT disconnected"),
        "consumer_exit_code": code,
        "duration_s": round(time.monotonic() - started, 1),
        "ok": all_acked
        and stored_all
        and not missing
        and not extra
        and log_text.count("MQTT disconnected") > 0,
    }


def main() -> int:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=1000)
    ap.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()
    return report(NAME, run(readings=args.readings, backend=args.backend))


if __name__ == "__main__":
    raise SystemExit(main())
