"""Sensor ingestion through the real Mosquitto into the database.

For each backend (a fresh SQLite file, a fresh PostgreSQL database): the registry demo,
rain gauges and level gauges (the level gauges on rivers with alarm thresholds, so every
level reading goes through a threshold check), the consumer (`run_consumer`) in a thread
of this process, and a publisher in a separate process. Then

  1. throughput: N readings published with QoS 1 as fast as the publisher can, R readings
     per message (a sensor or gateway sending a list); sustained readings/s = N / (time
     from the first publish until all N rows are in the database, counted);
  2. the same with one reading per message (what MQTT costs per message);
     one-reading messages go out through mosquitto_pub on the gateway topic when it is
     installed (a Python publisher would be the bottleneck), else through paho;
  3. alarm latency at an offered rate (default 5,000 readings/s), once with one reading per
     message and once with ten (a data logger's list): among the traffic, trigger readings
     that cross a threshold; latency = alarm committed (the consumer's after-commit
     callback) − publish, p50/p99;

and afterwards: every row counted (none lost, none doubled) and the rolling rain
accumulations of every gauge checked against a recomputation from the stored readings.

    python bench/ingest.py [--backend sqlite|postgresql|both] [--readings 300000]
        [--per-message 100] [--single 40000] [--rate 5000] [--seconds 20]
        [--latency-per-message 1,10] [--broker host:port]

The bench starts a Mosquitto of its own, configured as docs/flood-sensors.md recommends
for production (a deep per-client queue); `--broker host:port` uses a running one instead —
with Mosquitto's default queue of 1000 messages per client, a burst the consumer cannot
read as fast as it comes is partly dropped by the broker, and the row count shows it.

Results: a table on stdout and bench/results/ingest.json. The machine's load average is
recorded: other work on the same cores shows in the figures."""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
try:
    import watergrid  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harness import free_port, fresh_database, save  # noqa: E402

GOAL_RATE = 20_000
GOAL_P99_MS = 500.0
LEVEL_OK = 7.0  # below every threshold of the bench rivers
LEVEL_ALARM = 11.0  # above yellow (10 m)
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


# -- publisher (a separate process) ---------------------------------------------------------


class _Paho:
    """Publishes from Python (paho), to any topic."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"wg-bench-pub-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()
        self.infos: list[Any] = []

    def send(self, topic: str, payload: bytes) -> None:
        # Under load paho may refuse to queue for a moment; the bench must not drop readings.
        while True:
            info = self.client.publish(topic, payload, qos=1)
            if info.rc == 0:
                self.infos.append(info)
                return
            time.sleep(0.001)

    def close(self) -> None:
        """Returns once the broker has acknowledged everything."""
        for info in self.infos:
            info.wait_for_publish(120)
        self.client.disconnect()
        self.client.loop_stop()


class _Lines:
    """Publishes one message per line through mosquitto_pub (C) on one topic: a Python
    client tops out near 5,000 messages/s on a small machine and would measure itself, not
    the consumer. Lines are flushed as written, so a line's write time is its publish time
    to within the pipe hop."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO_PUB, "-h", host, "-p", str(port), "-V", "5", "-q", "1", "-l", "-t", topic],
            stdin=subprocess.PIPE,
        )
        assert self.proc.stdin is not None
        self.stdin = self.proc.stdin

    def send_line(self, payload: bytes) -> None:
        self.stdin.write(payload + b"\n")

    def flush(self) -> None:
        self.stdin.flush()

    def close(self) -> None:
        self.stdin.close()
        if self.proc.wait(300) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {self.proc.returncode}")


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def _run_reporting(name: str, *args: Any) -> None:
    """Run a publisher by name (spawn pickles names, not closures); a failure reaches the
    bench as an error instead of a silent hang."""
    out = args[-1]
    try:
        globals()[name](*args)
    except BaseException:
        import traceback

        out.put({"error": traceback.format_exc()})
        raise


def _bulk_messages(
    prefix: str, rain: list[str], level: list[str], n: int, per_message: int, hours_back: float
) -> list[tuple[str, bytes]]:
    """N readings, per_message to a message, every sensor in turn. One reading per message
    goes through the gateway topic (the sensor named inside), more through sensor topics.
    Each phase writes its own stretch of time, so phases never collide on a key."""
    sensors = [(c, "rain") for c in rain] + [(c, "level") for c in level]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_back)
    out, made, k = [], 0, 0
    while made < n:
        code, kind = sensors[k % len(sensors)]
        rnd = k // len(sensors)
        count = min(per_message, n - made)
        items = [
            {
                "ts": _iso(base + timedelta(seconds=rnd * per_message + i)),
                "value": 0.1 if kind == "rain" else LEVEL_OK + (i % 7) / 100,
            }
            for i in range(count)
        ]
        if per_message == 1:
            out.append(
                (
                    f"{prefix}/gateways/bench/readings",
                    json.dumps(items[0] | {"sensor": code}).encode(),
                )
            )
        else:
            out.append((f"{prefix}/sensors/{code}/readings", json.dumps(items).encode()))
        made += count
        k += 1
    return out


def publish_bulk(
    host: str,
    port: int,
    prefix: str,
    rain: list[str],
    level: list[str],
    n: int,
    per_message: int,
    hours_back: float,
    out: Any,
) -> None:
    """Payloads are built first, so the clock measures sending, not JSON encoding."""
    messages = _bulk_messages(prefix, rain, level, n, per_message, hours_back)
    start = time.time()
    if per_message == 1 and MOSQUITTO_PUB:
        lines = _Lines(host, port, messages[0][0])
        for _, payload in messages:
            lines.send_line(payload)
        lines.close()
    else:
        pub = _Paho(host, port)
        for topic, payload in messages:
            pub.send(topic, payload)
        pub.close()
    out.put({"start": start, "end": time.time(), "messages": len(messages), "readings": n})


def publish_paced(
    host: str,
    port: int,
    prefix: str,
    rain: list[str],
    triggers: list[str],
    rate: int,
    seconds: float,
    per_message: int,
    trigger_hz: float,
    out: Any,
) -> None:
    """`rate` readings/s for `seconds`, in ticks of 10 ms; `trigger_hz` times a second one
    trigger sensor's first reading, above its alarm threshold, with its publish time."""
    gateway = f"{prefix}/gateways/bench/readings"
    lines = _Lines(host, port, gateway) if per_message == 1 and MOSQUITTO_PUB else None
    pub = None if lines else _Paho(host, port)

    def send(code: str, body: Any) -> None:
        if lines is not None:
            lines.send_line(json.dumps(body | {"sensor": code}).encode())
        else:
            pub.send(f"{prefix}/sensors/{code}/readings", json.dumps(body).encode())  # type: ignore[union-attr]

    tick = 0.01
    sent, fired = 0, {}
    owed, trig_owed, k, t_i = 0.0, 0.0, 0, 0
    start = time.time()
    next_tick = start
    while time.time() - start < seconds:
        owed += rate * tick
        trig_owed += trigger_hz * tick
        while owed >= per_message:
            now = datetime.now(UTC)
            items = [
                {"ts": _iso(now - timedelta(microseconds=i)), "value": 0.01}
                for i in range(per_message)
            ]
            send(rain[k % len(rain)], items[0] if per_message == 1 else items)
            owed -= per_message
            sent += per_message
            k += 1
        if lines is not None:
            lines.flush()
        while trig_owed >= 1 and t_i < len(triggers):
            code = triggers[t_i]
            fired[code] = time.time()
            send(code, {"ts": _iso(datetime.now(UTC)), "value": LEVEL_ALARM})
            if lines is not None:
                lines.flush()
            trig_owed -= 1
            t_i += 1
            sent += 1
        next_tick += tick
        pause = next_tick - time.time()
        if pause > 0:
            time.sleep(pause)
    end = time.time()
    (lines or pub).close()  # type: ignore[union-attr]
    out.put({"start": start, "end": end, "readings": sent, "triggers": fired})


# -- the bench process ------------------------------------------------------------------------


def _setup(url: str, *, gauges: int, levels: int, triggers: int) -> dict[str, Any]:
    """Registry, rivers with thresholds, and the sensors; returns their codes."""
    from sqlalchemy.orm import Session

    import watergrid.models  # noqa: F401
    from watergrid.db import Base, make_engine
    from watergrid.demo.org import build_demo_registry
    from watergrid.flood import assets, sensors
    from watergrid.flood.schemas import AssetCreate, SensorCreate, ThresholdIn
    from watergrid.registry.service import import_data

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    spot = (113.895, 22.79)  # inside 公明街道
    codes: dict[str, list[str]] = {"rain": [], "level": [], "trigger": []}
    with Session(engine) as db:
        import_data(db, data=build_demo_registry().data)
        rivers = []
        for i in range(20):
            a = assets.create(
                db,
                data=AssetCreate(
                    code=f"BR-{i}",
                    kind="river",
                    name_zh=f"基准河{i}",
                    lon=spot[0] + i * 1e-4,
                    lat=spot[1],
                    warning_level_m=10.0,
                    guaranteed_level_m=12.0,
                ),
            )
            assets.set_thresholds(
                db,
                asset=a,
                items=[
                    ThresholdIn(metric="water_level", level=2, raise_at=10.0, clear_at=9.8),
                    ThresholdIn(metric="water_level", level=4, raise_at=12.0, clear_at=11.8),
                ],
            )
            rivers.append(a.code)
        for i in range(gauges):
            c = f"BG-{i:05d}"
            sensors.create(
                db,
                data=SensorCreate(code=c, kind="rain_gauge", name_zh=c, lon=spot[0], lat=spot[1]),
            )
            codes["rain"].append(c)
        for i in range(levels):
            c = f"BL-{i:05d}"
            sensors.create(
                db,
                data=SensorCreate(code=c, kind="level_gauge", name_zh=c, asset_code=rivers[i % 20]),
            )
            codes["level"].append(c)
        for i in range(triggers):
            c = f"BT-{i:05d}"
            sensors.create(
                db,
                data=SensorCreate(
                    code=c, kind="level_gauge", name_zh=c, asset_code=rivers[i % 20], max_rate=100.0
                ),
            )
            codes["trigger"].append(c)
        db.commit()
    engine.dispose()
    return codes


class Run:
    """The consumer thread and what the bench watches of it."""

    def __init__(self, url: str, host: str, port: int, prefix: str) -> None:
        from sqlalchemy.orm import sessionmaker

        from watergrid.db import make_engine
        from watergrid.flood.mqtt import ConsumerStats, run_consumer
        from watergrid.flood.settings import FloodSettings

        self.engine = make_engine(url)
        self.sf = sessionmaker(bind=self.engine, expire_on_commit=False)
        self.stats = ConsumerStats()
        self.alarm_commits: dict[int, float] = {}
        self.commit_times: list[tuple[float, int]] = []
        self.stop = threading.Event()
        settings = FloodSettings(
            mqtt_host=host,
            mqtt_port=port,
            mqtt_client_id=f"wg-bench-{uuid.uuid4().hex[:8]}",
            mqtt_topic_prefix=prefix,
            mqtt_session_expiry_s=60,
        )
        self.thread = threading.Thread(
            target=run_consumer,
            args=(self.sf,),
            kwargs={
                "stop_event": self.stop,
                "settings": settings,
                "stats": self.stats,
                "on_batch": self._on_batch,
            },
        )
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.stats.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("consumer did not connect")
            time.sleep(0.05)

    def _on_batch(self, out: Any) -> None:
        now = time.time()
        self.commit_times.append((now, out.stored))
        for n in out.notices:
            if n.action == "raised" and n.sensor_id is not None:
                self.alarm_commits.setdefault(n.sensor_id, now)

    def rows(self) -> int:
        from sqlalchemy import func, select

        from watergrid.flood.models import Reading

        with self.sf() as db:
            return int(db.scalar(select(func.count()).select_from(Reading)) or 0)

    def wait_rows(self, target: int, timeout: float) -> float:
        deadline = time.time() + timeout
        while self.stats.stored + self.stats.duplicates < target and time.time() < deadline:
            time.sleep(0.01)
        return time.time()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.engine.dispose()


def _spawn(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_run_reporting, args=(target.__name__, *args, q))
    proc.start()
    result: dict[str, Any] = q.get(timeout=600)
    proc.join(30)
    if "error" in result:
        raise RuntimeError(f"publisher failed:\n{result['error']}")
    return result


def throughput(
    run: Run,
    host: str,
    port: int,
    prefix: str,
    codes: dict[str, list[str]],
    n: int,
    per_message: int,
    hours_back: float,
) -> dict[str, Any]:
    before = run.stats.stored
    first_commit = len(run.commit_times)
    pub = _spawn(
        publish_bulk, host, port, prefix, codes["rain"], codes["level"], n, per_message, hours_back
    )
    done = run.wait_rows(before + n, timeout=max(120, n / 2000))
    stored = run.stats.stored - before
    commits = run.commit_times[first_commit:]
    drain = (commits[-1][0] - commits[0][0]) if len(commits) > 1 else float("nan")
    return {
        "readings": n,
        "per_message": per_message,
        "messages": pub["messages"],
        "stored": stored,
        "publish_s": round(pub["end"] - pub["start"], 3),
        "publish_rate": round(n / (pub["end"] - pub["start"])),
        "elapsed_s": round(done - pub["start"], 3),
        "readings_per_s": round(stored / (done - pub["start"])),
        "consumer_drain_per_s": round(stored / drain) if drain == drain and drain > 0 else None,
        "batches": len(commits),
    }


def latency(
    run: Run,
    host: str,
    port: int,
    prefix: str,
    codes: dict[str, list[str]],
    rate: int,
    seconds: float,
    per_message: int,
    trigger_hz: float,
) -> dict[str, Any]:
    from sqlalchemy import select

    from watergrid.flood.models import Sensor

    before = run.stats.stored
    pub = _spawn(
        publish_paced,
        host,
        port,
        prefix,
        codes["rain"],
        codes["trigger"],
        rate,
        seconds,
        per_message,
        trigger_hz,
    )
    done = run.wait_rows(before + pub["readings"], timeout=120)
    time.sleep(0.2)
    with run.sf() as db:
        ids = dict(
            db.execute(
                select(Sensor.code, Sensor.id).where(Sensor.code.in_(list(pub["triggers"])))
            ).all()
        )
    lat = sorted(
        1000 * (run.alarm_commits[ids[c]] - t)
        for c, t in pub["triggers"].items()
        if ids.get(c) in run.alarm_commits
    )
    missing = len(pub["triggers"]) - len(lat)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    return {
        "offered_per_s": rate,
        "per_message": per_message,
        "seconds": seconds,
        "published": pub["readings"],
        "achieved_publish_per_s": round(pub["readings"] / (pub["end"] - pub["start"])),
        "stored": run.stats.stored - before,
        "backlog_cleared_s_after_publish_end": round(done - pub["end"], 3),
        "alarms": len(lat),
        "alarms_missing": missing,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(lat[-1], 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
    }


def verify(run: Run, expected_rows: int) -> dict[str, Any]:
    """Rows counted; every rain gauge's windows against a recomputation from the readings."""
    from sqlalchemy import func, select

    from watergrid.flood import kinds, rain
    from watergrid.flood.models import Reading, Sensor

    rows = run.rows()
    mismatches, checked = 0, 0
    with run.sf() as db:
        gauge_ids = list(db.scalars(select(Sensor.id).where(Sensor.kind == "rain_gauge")))
        now = datetime.now(UTC)
        sums = rain.window_sums(db, sensor_ids=gauge_ids, now=now)
        end = rain.ceil_to(now, kinds.BUCKET)
        for h in kinds.RAIN_WINDOWS_H:
            truth = dict(
                db.execute(
                    select(Reading.sensor_id, func.sum(Reading.value))
                    .where(
                        Reading.flag == 0,
                        Reading.ts > end - timedelta(hours=h),
                        Reading.ts <= end,
                        Reading.sensor_id.in_(gauge_ids),
                    )
                    .group_by(Reading.sensor_id)
                ).all()
            )
            for sid in gauge_ids:
                checked += 1
                if abs(sums[sid][h] - round(float(truth.get(sid) or 0.0), 3)) > 1e-3:
                    mismatches += 1
    return {
        "rows": rows,
        "expected_rows": expected_rows,
        "rows_ok": rows == expected_rows,
        "accumulations_checked": checked,
        "accumulation_mismatches": mismatches,
    }


BROKER_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
# The production recommendation: a consumer that falls behind for a while must find its
# messages queued, not dropped (Mosquitto's default keeps 1000 per client).
max_queued_messages 1000000
# Lets a publisher keep more than Mosquitto's default 20 QoS 1 messages unacknowledged, so
# mosquitto_pub is not what limits the offered rate.
max_inflight_messages 1000
persistence false
user {user}
"""


@contextmanager
def _broker(address: str) -> Iterator[tuple[str, int, str]]:
    """The broker to use: the one named, or a Mosquitto of the bench's own."""
    if address:
        host, port = address.rsplit(":", 1)
        yield host, int(port), f"external {address}"
        return
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = BROKER_CONF.format(port=port, user=getpass.getuser())
        path = Path(tmp) / "mosquitto.conf"
        path.write_text(conf)
        proc = subprocess.Popen([binary, "-c", str(path)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield "127.0.0.1", port, conf
        finally:
            proc.terminate()
            proc.wait(10)


def bench_backend(backend: str, args: argparse.Namespace, host: str, port: int) -> dict[str, Any]:
    # Each latency phase fires sensors of its own: a sensor alarms once, on its first reading.
    per_phase = int(args.trigger_hz * args.seconds) + 10
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        codes = _setup(
            url,
            gauges=args.gauges,
            levels=args.levels,
            triggers=per_phase * len(args.latency_per_message),
        )
        prefix = f"wg-bench/{uuid.uuid4().hex[:8]}"
        run = Run(url, host, port, prefix)
        try:
            bulk = throughput(
                run, host, port, prefix, codes, args.readings, args.per_message, hours_back=3
            )
            single = (
                throughput(run, host, port, prefix, codes, args.single, 1, hours_back=2)
                if args.single
                else None
            )
            lat = []
            for i, per in enumerate(args.latency_per_message):
                mine = codes | {"trigger": codes["trigger"][i * per_phase : (i + 1) * per_phase]}
                lat.append(
                    latency(
                        run, host, port, prefix, mine, args.rate, args.seconds, per, args.trigger_hz
                    )
                )
            expected = (
                bulk["readings"]
                + (single["readings"] if single else 0)
                + sum(x["published"] for x in lat)
            )
            check = verify(run, expected)
            stats = {k: v for k, v in vars(run.stats).items() if k != "lock"}
        finally:
            run.close()
        return {
            "throughput": bulk,
            "throughput_one_per_message": single,
            "latency": lat,
            "verify": check,
            "consumer": stats,
        }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--readings", type=int, default=300_000)
    p.add_argument("--per-message", type=int, default=100)
    p.add_argument(
        "--single", type=int, default=40_000, help="readings sent one per message (0: skip)"
    )
    p.add_argument("--gauges", type=int, default=1000)
    p.add_argument("--levels", type=int, default=1000)
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--latency-per-message",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 10],
        help="readings per message in the latency phases, comma-separated (default 1,10)",
    )
    p.add_argument("--trigger-hz", type=float, default=10.0)
    p.add_argument(
        "--broker",
        default="",
        help="host:port of a running broker; by default the bench starts its own Mosquitto "
        "configured as docs/flood-sensors.md recommends for production",
    )
    args = p.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    load = os.getloadavg()
    with _broker(args.broker) as (host, port, broker_conf):
        results = {b: bench_backend(b, args, host, port) for b in backends}

    def row(*cells: object) -> None:
        widths = (11, 26, 10, 9, 12, 9, 9)
        aligned = [
            f"{c!s:<{w}}" if i < 2 else f"{c!s:>{w}}"
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        print("".join(aligned))

    print()
    row("backend", "phase", "readings", "seconds", "readings/s", "p50 ms", "p99 ms")
    for b, r in results.items():
        t, s = r["throughput"], r["throughput_one_per_message"]
        row(
            b,
            f"throughput, {t['per_message']}/message",
            t["stored"],
            t["elapsed_s"],
            t["readings_per_s"],
        )
        if s:
            row(b, "throughput, 1/message", s["stored"], s["elapsed_s"], s["readings_per_s"])
        for lat in r["latency"]:
            row(
                b,
                f"alarms @ {lat['offered_per_s']}/s, {lat['per_message']}/msg",
                lat["stored"],
                lat["seconds"],
                lat["achieved_publish_per_s"],
                lat["p50_ms"],
                lat["p99_ms"],
            )
        v = r["verify"]
        right = v["accumulations_checked"] - v["accumulation_mismatches"]
        print(
            f"{'':<11}rows {v['rows']}/{v['expected_rows']} ok={v['rows_ok']}, "
            f"accumulations {right}/{v['accumulations_checked']} right"
        )
    path = save(
        "ingest",
        {
            "goals": {"readings_per_s": GOAL_RATE, "alarm_p99_ms_at_5000_per_s": GOAL_P99_MS},
            "settings": vars(args) | {"one_per_message_publisher": MOSQUITTO_PUB or "paho"},
            "broker": broker_conf,
            "load_average_at_start": [round(x, 2) for x in load],
            "results": results,
        },
    )
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
