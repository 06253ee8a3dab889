"""A storm night on loopback, against a deployment in its own processes.

    python bench/storm.py --backend sqlite|postgresql|both [--minutes 2.5]

Deployments:

- sqlite: embedded — one `watergrid serve` process with its embedded worker (timers, outbox
  delivery and the MQTT consumer, whose receiver is a child process), on a fresh SQLite file;
- postgresql: production mode — a fresh database on the local server, `watergrid serve
  --workers 2`, `watergrid worker --loops timers,notify,mqtt` and `watergrid worker --loops
  timers,notify` (the MQTT consumer has a fixed client id and keeps per-sensor state in
  memory: one consumer per prefix, see docs/flood-sensors.md).

Both get a private Mosquitto on a free port (configured as bench/ingest.py does) and send
SMS to a local HTTP sink (tests/notify/sink.py), so every delivery is seen with its stable
message id. Before the storm: the Guangming demo with its flood demos, an SMS channel
preference for every person with a mobile number (so every notification of a person also
goes out over the wire), and synthetic rain gauges beside the demo's sensors.

During the storm (`--minutes`), at once:

- public reports (`POST /api/v1/orders`, no sign-in) at a base rate with bursts, each with
  an Idempotency-Key and retried with the same key on a connection error, a 5xx or a 429,
  from many citizens' addresses (X-Forwarded-For from loopback, as behind a local proxy);
- staff working the reports: accept, dispatch, respond, resolve, each by the account the
  order was routed to (its department's handler, the grid member, else the duty officer),
  with bearer tokens; staff lists and the duty officer's flood board polled as pages do;
- sensor readings over MQTT (QoS 1, one reading a message): rain gauges whose increments
  climb, level gauges and ponding sensors rising through their blue and yellow thresholds
  (alarms, which start call rounds of their assets' plans);
- the duty officer issuing orange warnings for two subdistricts, then red for a third and
  upgrading one orange to red: the call rounds of every covering plan;
- people answering a share of the calls they get by SMS: some tap the link in the message
  (`POST /api/v1/flood/calls/answer-token`), some reply with the code through the SMS
  gateway (`POST /api/v1/flood/calls/sms-inbound`), after a few seconds each.

Afterwards the warnings are lifted, the outbox is drained and everything is counted:
reports acknowledged vs stored (per Idempotency-Key), readings published vs stored,
notifications due (outbox rows of external channels) vs delivered at the sink by message id,
duplicates counted. Both lost and duplicated must be 0 (exit status 1 otherwise). Each
process's peak resident memory (VmHWM, sampled every second) is recorded with the goal of
300 MB per app worker, and so is the machine's load average: other work on the same cores
shows in every figure.

Results: a summary on stdout and bench/results/storm.json (one entry per backend; a run of
one backend keeps the other's last figures)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
try:
    import watergrid  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from harness import (  # noqa: E402
    RESULTS,
    env_for,
    free_port,
    fresh_database,
    load_demo,
    machine,
    wait_ready,
)
from loadgen import Conn, Result, _target  # noqa: E402
from procwatch import Watcher  # noqa: E402

GOAL_APP_WORKER_MB = 300.0
DEMO_PASSWORD = "demo1234"
STAFF_USERS = ("duty", "drainage", "watercorp", "soilwater", "grid01", "grid13", "chain1")
# The routed department's handler account in the demo; other departments' orders are
# worked by the duty officer (role duty_officer, scope: the whole district).
HANDLER_OF = {"DRAINAGE": "drainage", "WATERCO": "watercorp", "SOILWATER": "soilwater"}
GRID_MEMBER_OF = {"W01": "grid01", "W13": "grid13"}
# (category, attributes, share): what people report on a storm night.
CATEGORIES = (
    ("disaster.waterlogging", {"depth": "10to30"}, 0.40),
    ("drainage.blocked_drain", {"smell": "no"}, 0.20),
    ("drainage.backflow", {"premises": "shop"}, 0.10),
    ("drainage.sewage_overflow", {}, 0.10),
    ("water_supply.burst_pipe", {"flow": "flowing"}, 0.10),
    ("soil_water.slope_erosion", {}, 0.05),
    ("disaster.hazard_report", {}, 0.05),
)
SMS_PATH = "/sms"
LINK_RE = re.compile(r"/a/([A-Za-z0-9_\-]{8,100})")
CODE_RE = re.compile(r"回复短信 (\d{6})")
REQUEST_TIMEOUT_S = 60.0
# uvicorn closes a keep-alive connection idle for 5 s; one idle longer than this is
# reopened before use rather than met with a closed socket.
IDLE_REOPEN_S = 3.0


# -- HTTP --------------------------------------------------------------------------------------


class Http:
    """Keep-alive connections shared by every activity (loadgen.Conn), latency measured from
    when each request was due, per request type."""

    def __init__(self, base: str, max_in_flight: int = 256) -> None:
        self.host, self.port = _target(base)
        self.idle: list[tuple[Conn, float]] = []
        self.sem = asyncio.Semaphore(max_in_flight)
        self.stats: dict[str, Result] = defaultdict(Result)
        self.failures: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        due: float | None = None,
    ) -> tuple[int, Any]:
        due = time.perf_counter() if due is None else due
        h = {"Accept": "application/json", **(headers or {})}
        raw = b""
        if body is not None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = f"Bearer {token}"
        res = self.stats[kind]
        async with self.sem:
            conn = self._take()
            try:
                status, data = await asyncio.wait_for(
                    conn.send((method, path, h, raw)), REQUEST_TIMEOUT_S
                )
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                # OSError covers ConnectionError and TimeoutError (a request past its time).
                conn.close()
                self.idle.append((conn, time.monotonic()))
                res.errors += 1
                self.failures[f"{kind}: {type(exc).__name__}"] += 1
                return 0, None
            self.idle.append((conn, time.monotonic()))
        res.latencies_ms.append((time.perf_counter() - due) * 1000)
        res.statuses[status] = res.statuses.get(status, 0) + 1
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        if status >= 400:
            # The application's error code says whether a refusal was expected (an answer
            # to a call already stood down) or a fault.
            err = parsed.get("error") if isinstance(parsed, dict) else None
            code = err.get("code") if isinstance(err, dict) else None
            self.refusals[f"{kind} {status} {code or (data or b'')[:80]!r}"] += 1
        return status, parsed

    def _take(self) -> Conn:
        while self.idle:
            conn, used = self.idle.pop()
            if time.monotonic() - used > IDLE_REOPEN_S:
                conn.close()
            return conn
        return Conn(self.host, self.port)

    def close(self) -> None:
        for conn, _ in self.idle:
            conn.close()


# -- the deployment ----------------------------------------------------------------------------


@dataclass
class Deployment:
    backend: str
    url: str
    base: str
    procs: list[tuple[str, subprocess.Popen[bytes]]]
    logs: list[Path]
    sink: Any
    broker: tuple[str, int]
    sms_inbound_token: str
    mqtt_client_id: str


def _popen(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    # A process group of its own: Ctrl-C in the terminal reaches only the bench, which stops
    # these in order (workers first, so they hand back what they hold).
    try:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        out.close()  # the child has its own copy of the descriptor


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for _, p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _load_sink() -> Any:
    """tests/notify/sink.py, loaded by path: `tests` is not a package of its own, and a
    `tests` package of some installed library could shadow it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wg_notify_sink", ROOT / "tests/notify/sink.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@contextmanager
def deployment(backend: str, url: str, tmp: Path, args: argparse.Namespace) -> Iterator[Deployment]:
    from ingest import _broker

    sink = _load_sink().HttpSink()
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    logs: list[Path] = []
    try:
        with _broker("") as (host, port, _conf):
            port_http = free_port()
            base = f"http://127.0.0.1:{port_http}"
            run = uuid.uuid4().hex[:6]
            inbound = f"storm-{uuid.uuid4().hex}"
            client_id = f"wg-storm-{run}"
            env = env_for(url)
            env.update(
                WATERGRID_PUBLIC_BASE_URL=base,
                WATERGRID_NOTIFY_SMS_URL=sink.url + SMS_PATH,
                WATERGRID_NOTIFY_POLL_INTERVAL_S=str(args.notify_poll_s),
                WATERGRID_FLOOD_MQTT_HOST=host,
                WATERGRID_FLOOD_MQTT_PORT=str(port),
                WATERGRID_FLOOD_MQTT_CLIENT_ID=client_id,
                WATERGRID_FLOOD_MQTT_SESSION_EXPIRY_S="300",
                WATERGRID_FLOOD_RESPONSE_SMS_INBOUND_TOKEN=inbound,
                WATERGRID_LOG_JSON="false",
            )
            cli = [sys.executable, "-m", "watergrid.cli"]
            serve = [*cli, "serve", "--host", "127.0.0.1", "--port", str(port_http)]
            if backend == "sqlite":
                env["WATERGRID_EMBEDDED_WORKER"] = "true"
                logs.append(tmp / "serve.log")
                procs.append(
                    ("app (embedded worker)", _popen([*serve, "--workers", "1"], env, logs[-1]))
                )
            else:
                env["WATERGRID_EMBEDDED_WORKER"] = "false"
                logs.append(tmp / "serve.log")
                procs.append(
                    (
                        "app master",
                        _popen([*serve, "--workers", str(args.app_workers)], env, logs[-1]),
                    )
                )
                for i in range(args.workers):
                    # Only the first consumes MQTT: one consumer per client id and prefix.
                    loops = "timers,notify,mqtt" if i == 0 else "timers,notify"
                    logs.append(tmp / f"worker{i + 1}.log")
                    procs.append(
                        (
                            f"worker {i + 1} ({loops})",
                            _popen(
                                [
                                    *cli,
                                    "worker",
                                    "--worker-id",
                                    f"storm-w{i + 1}",
                                    "--loops",
                                    loops,
                                ],
                                env,
                                logs[-1],
                            ),
                        )
                    )
            up = wait_ready(
                base,
                alive=lambda: all(p.poll() is None for _, p in procs),
                timeout_s=90,
                step_s=0.3,
            )
            if not up:
                dead = [n for n, p in procs if p.poll() is not None]
                for log in logs:
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
                raise RuntimeError(f"deployment did not start (exited: {dead})")
            yield Deployment(
                backend=backend,
                url=url,
                base=base,
                procs=procs,
                logs=logs,
                sink=sink,
                broker=(host, port),
                sms_inbound_token=inbound,
                mqtt_client_id=client_id,
            )
    finally:
        _stop(procs)
        sink.close()


# -- preparation -------------------------------------------------------------------------------


@dataclass
class SensorPlan:
    code: str
    kind: str
    start: float  # level / depth at the start; rain: increment at the start (mm)
    end: float  # the same at the end of the storm


def prepare(url: str, *, extra_gauges: int, seed: int) -> tuple[list[SensorPlan], int]:
    """SMS preferences for everyone reachable, synthetic rain gauges, and what each sensor
    will report. Returns the sensor plans and how many people got an SMS preference."""
    from shapely.geometry import Point, shape
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    import watergrid.models  # noqa: F401
    from watergrid.db import make_engine
    from watergrid.flood import sensors
    from watergrid.flood.models import AlarmThreshold as Threshold
    from watergrid.flood.models import Sensor
    from watergrid.flood.schemas import SensorCreate
    from watergrid.geo import service as geo_service
    from watergrid.notify import service as notify
    from watergrid.org.models import Person

    rng = random.Random(seed)
    engine = make_engine(url)
    plans: list[SensorPlan] = []
    with Session(engine) as db:
        people = list(
            db.scalars(select(Person.id).where(Person.active.is_(True), Person.mobile != ""))
        )
        for pid in people:
            notify.set_preference(db, person_id=pid, channel="sms")
        district = shape(geo_service.get_all(db, kind="district")[0].geometry)
        minx, miny, maxx, maxy = district.bounds
        made = 0
        while made < extra_gauges:
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if not district.contains(Point(x, y)):
                continue
            code = f"ST-RG-{made:04d}"
            sensors.create(
                db,
                data=SensorCreate(
                    code=code,
                    kind="rain_gauge",
                    name_zh=f"暴雨压测雨量计{made:04d}",
                    lon=round(x, 6),
                    lat=round(y, 6),
                    synthetic=True,
                ),
            )
            made += 1
        db.commit()
        thresholds: dict[int, dict[int, float]] = defaultdict(dict)
        for t in db.scalars(select(Threshold)):
            thresholds[t.asset_id][t.level] = t.raise_at
        for s in db.scalars(select(Sensor).where(Sensor.active.is_(True)).order_by(Sensor.code)):
            if s.kind == "rain_gauge":
                # mm per reading: a shower turning into a downpour, wetter in some places.
                f = rng.uniform(0.6, 1.4)
                plans.append(SensorPlan(s.code, s.kind, round(0.2 * f, 3), round(1.6 * f, 3)))
                continue
            levels = thresholds.get(s.asset_id or -1, {})
            now = s.last_value if s.last_value is not None else 0.0
            if 1 in levels and 2 in levels:
                # Through blue and yellow, a little past yellow by the end.
                top = levels[2] + 0.1 * (levels.get(3, levels[2] + 1) - levels[2])
                plans.append(SensorPlan(s.code, s.kind, min(now, levels[1] - 0.2), top))
            else:
                plans.append(SensorPlan(s.code, s.kind, now, now))
    engine.dispose()
    return plans, len(people)


# -- sensor publisher (a process of its own, so it does not share the bench's interpreter) -----


def publish_storm(
    host: str,
    port: int,
    prefix: str,
    plans: list[tuple[str, str, float, float]],
    start_at: float,
    seconds: float,
    interval_s: float,
    out: Any,
) -> None:
    try:
        from ingest import _Paho

        pub = _Paho(host, port)
        n = len(plans)
        sent = 0
        per_kind: Counter[str] = Counter()
        first_ts = last_ts = None
        # Each sensor reports every interval_s, the sensors spread evenly over the interval,
        # so the broker sees a steady stream, as from a district's loggers.
        k = 0
        while True:
            due = start_at + (k // n) * interval_s + (k % n) * interval_s / n
            if due - start_at >= seconds:
                break
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            code, kind, a, b = plans[k % n]
            frac = min(1.0, max(0.0, (due - start_at) / seconds))
            value = a + (b - a) * frac
            ts = datetime.fromtimestamp(math.floor(due), UTC)
            if kind == "rain_gauge":
                value = round(value, 2)
            elif kind == "ponding_sensor":
                value = round(max(0.0, value), 1)
            else:
                value = round(value, 3)
            pub.send(
                f"{prefix}/sensors/{code}/readings",
                json.dumps({"ts": ts.isoformat(), "value": value}).encode(),
            )
            sent += 1
            per_kind[kind] += 1
            first_ts = first_ts or ts
            last_ts = ts
            k += 1
        pub.close()  # returns when the broker has acknowledged every message
        out.put(
            {
                "published": sent,
                "per_kind": dict(per_kind),
                "first_ts": first_ts.isoformat() if first_ts else None,
                "last_ts": last_ts.isoformat() if last_ts else None,
                "ended": time.time(),
            }
        )
    except BaseException:
        import traceback

        out.put({"error": traceback.format_exc()})
        raise


# -- the storm ---------------------------------------------------------------------------------


@dataclass
class Storm:
    dep: Deployment
    args: argparse.Namespace
    run: str
    http: Http
    tokens: dict[str, str]
    points: list[tuple[float, float]]
    rng: random.Random
    t0: float = 0.0  # perf_counter at the start
    stop_at: float = 0.0
    acked: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> order id
    given_up: list[str] = field(default_factory=list)
    report_e2e_ms: list[float] = field(default_factory=list)
    report_retries: int = 0
    orders: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    actions_done: Counter[str] = field(default_factory=Counter)
    orders_resolved: int = 0
    warnings: dict[str, int] = field(default_factory=dict)  # subdistrict -> warning id
    warning_log: list[dict[str, Any]] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    call_sms_seen: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    task_errors: Counter[str] = field(default_factory=Counter)

    def spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self.tasks.add(t)
        t.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[Any]) -> None:
        self.tasks.discard(t)
        # A fault of the bench itself must show in the results, not vanish with its task.
        if not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            self.task_errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    # public reports ------------------------------------------------------------------------

    def report_body(self, i: int) -> dict[str, Any]:
        r = self.rng.random()
        acc = 0.0
        cat, attrs = CATEGORIES[0][0], CATEGORIES[0][1]
        for code, a, share in CATEGORIES:
            acc += share
            if r < acc:
                cat, attrs = code, a
                break
        lon, lat = self.points[i % len(self.points)]
        body: dict[str, Any] = {
            "category_code": cat,
            "attributes": attrs,
            "description": f"暴雨夜：路面积水、排水不畅（压测 storm {self.run}-{i}）",
            "lon": lon,
            "lat": lat,
            "source": "api",
        }
        if i % 3 == 0:  # a third leave a number and agree to be texted back
            body |= {"reporter_phone": f"139{i % 100_000_000:08d}", "phone_consent": True}
        return body

    async def report(self, i: int, due: float) -> None:
        key = f"storm-{self.run}-{i}"
        body = self.report_body(i)
        # Citizens report from their own phones: each report comes from one of many client
        # addresses (X-Forwarded-For, which `watergrid serve` trusts from loopback as from a
        # local proxy), so the per-address intake limit sees a crowd, not one flooding host.
        c = self.rng.randrange(self.args.citizens)
        headers = {"Idempotency-Key": key, "X-Forwarded-For": f"10.20.{c // 250}.{c % 250 + 1}"}
        first_due = due
        for attempt in range(10):
            status, data = await self.http.call(
                "report",
                "POST",
                "/api/v1/orders",
                body=body,
                headers=headers,
                due=due,
            )
            if status in (200, 201) and isinstance(data, dict):
                self.acked[key] = int(data["id"])
                self.report_e2e_ms.append((time.perf_counter() - first_due) * 1000)
                if self.rng.random() < self.args.staff_share:
                    self.orders.put_nowait(data)
                return
            if status and status < 500 and status != 429:
                self.given_up.append(f"{key}: {status} {str(data)[:200]}")
                return
            self.report_retries += 1
            await asyncio.sleep(min(5.0, 0.25 * 2**attempt) * (0.5 + self.rng.random()))
            due = time.perf_counter()
        self.given_up.append(f"{key}: still failing after 10 attempts")

    def report_rate(self, t: float) -> float:
        """Reports per second at storm time t: the base rate, with bursts (a street floods,
        everyone on it reports at once)."""
        a = self.args
        in_burst = (t % a.burst_every_s) >= a.burst_every_s - a.burst_s
        return a.burst_rate if in_burst else a.report_rate

    async def reports(self) -> None:
        i = 0
        t_next = 0.0
        while t_next < self.args.seconds:
            due = self.t0 + t_next
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            self.spawn(self.report(i, due))
            i += 1
            t_next += 1.0 / self.report_rate(t_next)

    # staff ---------------------------------------------------------------------------------

    def actor_for(self, action: str, order: dict[str, Any]) -> str:
        dept = (order.get("department") or {}).get("code", "")
        grid = (order.get("grid") or {}).get("code", "")
        handler = HANDLER_OF.get(dept, "duty")
        if action == "respond":
            return GRID_MEMBER_OF.get(grid, handler)
        return handler

    async def staff_member(self) -> None:
        steps = (
            ("accept", {}),
            ("dispatch", {}),
            ("respond", {"mode": "on_site"}),
            ("resolve", {"note": "已到场疏通，积水已退去"}),
        )
        while time.perf_counter() < self.stop_at:
            try:
                order = await asyncio.wait_for(self.orders.get(), 1.0)
            except TimeoutError:
                continue
            for action, body in steps:
                await asyncio.sleep(self.rng.uniform(*self.args.think_s))
                who = self.actor_for(action, order)
                status, data = await self.http.call(
                    f"action {action}",
                    "POST",
                    f"/api/v1/orders/{order['id']}/actions/{action}",
                    body=body,
                    token=self.tokens[who],
                )
                if status != 200:
                    self.actions_done[f"{action} failed {status}"] += 1
                    break
                self.actions_done[action] += 1
                if time.perf_counter() >= self.stop_at:
                    break
            else:
                self.orders_resolved += 1

    async def pages(self) -> None:
        """What open browsers poll: the duty officer's flood board (every 15 s), staff queues,
        and the duty officer's own open calls, answered through the API."""
        k = 0
        while time.perf_counter() < self.stop_at:
            if k % 3 == 0:
                self.spawn(
                    self.http.call(
                        "flood board", "GET", "/api/v1/flood/board", token=self.tokens["duty"]
                    )
                )
            for who in ("drainage", "grid01", "duty"):
                self.spawn(
                    self.http.call(
                        "order list",
                        "GET",
                        "/api/v1/orders?state=submitted&state=dispatched&page_size=50",
                        token=self.tokens[who],
                    )
                )
            status, data = await self.http.call(
                "my calls", "GET", "/api/v1/flood/calls/mine", token=self.tokens["duty"]
            )
            if status == 200 and data:
                for rnd in data:
                    for call in rnd.get("calls", []):
                        if call.get("state") == "calling":
                            st, _ = await self.http.call(
                                "answer api",
                                "POST",
                                f"/api/v1/flood/calls/{call['id']}/answer",
                                token=self.tokens["duty"],
                            )
                            self.answers[f"api {st}"] += 1
            k += 1
            await asyncio.sleep(5.0)

    # warnings ------------------------------------------------------------------------------

    async def warnings_plan(self) -> None:
        s = self.args.seconds
        plan = [
            (0.15, "issue", "440311002", "orange"),
            (0.15, "issue", "440311005", "orange"),
            (0.40, "issue", "440311006", "red"),
            (0.55, "level", "440311002", "red"),
        ]
        for frac, what, sub, level in plan:
            pause = self.t0 + frac * s - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            if what == "issue":
                status, data = await self.http.call(
                    "warning issue",
                    "POST",
                    "/api/v1/flood/warnings",
                    body={"subdistrict_code": sub, "level": level, "reason": "暴雨压测"},
                    token=self.tokens["duty"],
                )
                if status == 201 and isinstance(data, dict):
                    self.warnings[sub] = int(data["id"])
            else:
                wid = self.warnings.get(sub)
                status = 0
                if wid is not None:
                    status, _ = await self.http.call(
                        "warning level",
                        "POST",
                        f"/api/v1/flood/warnings/{wid}/level",
                        body={"level": level, "reason": "雨势加强"},
                        token=self.tokens["duty"],
                    )
            self.warning_log.append(
                {
                    "at_s": round(self.elapsed(), 1),
                    "action": what,
                    "subdistrict": sub,
                    "level": level,
                    "status": status,
                }
            )

    async def lift_all(self) -> None:
        for sub, wid in self.warnings.items():
            status, _ = await self.http.call(
                "warning lift",
                "POST",
                f"/api/v1/flood/warnings/{wid}/lift",
                body={"reason": "雨势减弱，压测结束"},
                token=self.tokens["duty"],
            )
            self.warning_log.append(
                {
                    "at_s": round(self.elapsed(), 1),
                    "action": "lift",
                    "subdistrict": sub,
                    "status": status,
                }
            )

    # people answering their calls ----------------------------------------------------------

    async def answer(self, rec: dict[str, Any], how: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if time.perf_counter() >= self.stop_at:
            return
        text = rec.get("text", "")
        if how == "link":
            m = LINK_RE.search(text)
            if not m:
                self.answers["link: no token in text"] += 1
                return
            status, _ = await self.http.call(
                "answer link",
                "POST",
                "/api/v1/flood/calls/answer-token",
                body={"token": m.group(1)},
            )
        else:
            m = CODE_RE.search(text)
            if not m:
                self.answers["sms: no code in text"] += 1
                return
            status, _ = await self.http.call(
                "answer sms",
                "POST",
                "/api/v1/flood/calls/sms-inbound",
                body={"from": rec.get("to", ""), "text": f"收到 {m.group(1)}"},
                headers={"Authorization": f"Bearer {self.dep.sms_inbound_token}"},
            )
        self.answers[f"{how} {status}"] += 1

    async def answerers(self) -> None:
        seen = 0
        while time.perf_counter() < self.stop_at:
            reqs = self.dep.sink.requests
            while seen < len(reqs):
                r = reqs[seen]
                seen += 1
                try:
                    rec = json.loads(r.body)
                except ValueError:
                    continue
                if "/a/" not in rec.get("text", ""):
                    continue
                self.call_sms_seen += 1
                x = self.rng.random()
                delay = self.rng.uniform(2.0, 20.0)
                if x < self.args.answer_link_share:
                    self.spawn(self.answer(rec, "link", delay))
                elif x < self.args.answer_link_share + self.args.answer_sms_share:
                    self.spawn(self.answer(rec, "sms", delay))
            await asyncio.sleep(0.25)

    async def main(self) -> None:
        self.t0 = time.perf_counter()
        self.stop_at = self.t0 + self.args.seconds
        workers = [
            asyncio.ensure_future(c)
            for c in (
                self.reports(),
                self.warnings_plan(),
                self.answerers(),
                self.pages(),
                *(self.staff_member() for _ in range(self.args.staff)),
            )
        ]
        await asyncio.gather(*workers)
        # Reports still being retried and answers in flight finish; nothing new starts.
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


def tokens_for(base: str) -> dict[str, str]:
    out = {}
    with httpx.Client(base_url=base, timeout=30) as c:
        for u in STAFF_USERS:
            r = c.post(
                "/api/v1/auth/token",
                json={"username": u, "password": DEMO_PASSWORD, "name": "storm"},
            )
            r.raise_for_status()
            out[u] = r.json()["access_token"]
    return out


def inside_points(url: str, n: int, seed: int) -> list[tuple[float, float]]:
    from intake import inside_points as points

    return points(n, seed)


# -- counting ----------------------------------------------------------------------------------


def count_reports(url: str, storm: Storm) -> dict[str, Any]:
    from sqlalchemy import text

    eng = _engine(url)
    with eng.connect() as c:
        rows = c.execute(
            text("SELECT id, description FROM work_order WHERE description LIKE :p"),
            {"p": f"%storm {storm.run}-%"},
        ).all()
    eng.dispose()
    marker = re.compile(rf"storm {storm.run}-(\d+)")
    per_key: Counter[str] = Counter()
    for _id, desc in rows:
        m = marker.search(desc)
        if m:
            per_key[f"storm-{storm.run}-{m.group(1)}"] += 1
    acked = set(storm.acked)
    stored = set(per_key)
    return {
        "acknowledged": len(acked),
        "stored": sum(per_key.values()),
        "lost": len(acked - stored),
        "duplicated": sum(n - 1 for n in per_key.values() if n > 1),
        "stored_not_acknowledged": len(stored - acked),
        "given_up": len(storm.given_up),
        "given_up_examples": storm.given_up[:5],
        "retries": storm.report_retries,
    }


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine(url, poolclass=NullPool)


def readings_stored(url: str, since: datetime) -> int:
    """Readings stamped from the storm's start on (the demo's day of readings ends before)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from watergrid.flood.models import Reading

    eng = _engine(url)
    with Session(eng) as db:
        n = db.scalar(select(func.count()).select_from(Reading).where(Reading.ts >= since))
    eng.dispose()
    return int(n or 0)


def outbox_external(url: str) -> list[tuple[str, str, str, str, datetime]]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from watergrid.notify.models import OutboxMessage as M

    eng = _engine(url)
    with Session(eng) as db:
        rows = db.execute(
            select(M.message_id, M.state, M.topic, M.channel, M.created_at).where(
                M.channel != "inapp"
            )
        ).all()
    eng.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


WIRE_CHANNELS = ("sms", "webhook")  # the channels this deployment sends to the sink


def count_notifications(
    url: str, sink: Any, timeout_s: float, storm_started: datetime
) -> dict[str, Any]:
    """Waits until every message for the sink is sent and there (or the timeout), then
    compares the outbox with what the sink received. Rows the demo left in the outbox count
    too: they are sent during the storm, now that people have an SMS preference and the
    gateway is configured; the delay from outbox to sink is taken over the storm's own."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [r for r in outbox_external(url) if r[3] in WIRE_CHANNELS]
        got = sink.counts()
        open_rows = [r for r in rows if r[1] in ("pending", "sending")]
        missing = [r for r in rows if r[1] == "sent" and r[0] not in got]
        if (not open_rows and not missing) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    got = sink.counts()
    by_id = {r[0]: r for r in rows}
    mono0, wall0 = time.monotonic(), time.time()
    received_at: dict[str, float] = {}
    for rec in list(sink.requests):
        mid = rec.headers.get("x-watergrid-message-id", "")
        received_at.setdefault(mid, wall0 + (rec.at - mono0))
    since = storm_started.timestamp()
    delays = sorted(
        received_at[mid] - _as_utc(r[4]).timestamp()
        for mid, r in by_id.items()
        if mid in received_at and _as_utc(r[4]).timestamp() >= since
    )

    def pct(q: float) -> float | None:
        return round(delays[min(len(delays) - 1, int(q * len(delays)))], 2) if delays else None

    others = Counter((r[3], r[1]) for r in outbox_external(url) if r[3] not in WIRE_CHANNELS)
    return {
        "due": len(rows),
        "due_from_storm": sum(1 for r in rows if _as_utc(r[4]).timestamp() >= since),
        "by_state": dict(Counter(r[1] for r in rows)),
        "by_topic": dict(Counter(r[2] for r in rows)),
        "delivered": sum(1 for mid in by_id if mid in got),
        "lost": sum(1 for mid in by_id if mid not in got),
        "duplicated": sum(n - 1 for n in got.values() if n > 1),
        "unknown_at_sink": sum(1 for mid in got if mid not in by_id),
        "sink_requests": len(sink.requests),
        "outbox_to_sink_s": {
            "p50": pct(0.5),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(delays[-1], 2) if delays else None,
        },
        "other_channels": {f"{c} {st}": n for (c, st), n in others.items()},
    }


def _as_utc(ts: Any) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def log_problems(logs: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for log in logs:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        bad = [ln for ln in lines if "ERROR" in ln or "Traceback" in ln or "CRITICAL" in ln]
        out[log.name] = {
            "lines": len(lines),
            "error_lines": len(bad),
            "first_errors": bad[:5],
            "first_lines": [ln[:300] for ln in lines[:5]],
        }
    return out


# -- one backend -------------------------------------------------------------------------------


class StormWatcher(Watcher):
    def relabel(self, parent: str, index: int, cmdline: str) -> str:
        if parent.startswith("bench client"):
            if "mosquitto" in cmdline:
                return "mosquitto (the bench's private broker)"
            if "multiprocessing" in cmdline and "resource_tracker" not in cmdline:
                return "bench sensor publisher"
        if "resource_tracker" in cmdline:
            return f"{parent} / multiprocessing resource tracker"
        if "multiprocessing" in cmdline:
            if parent == "app master":
                return f"app worker {index}"
            return f"{parent} / mqtt receiver"
        return super().relabel(parent, index, cmdline)


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import text

    print(f"-- {backend}: database, demo, sensors", flush=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="wg-storm-") as tmpname, ExitStack() as stack:
        tmp = Path(tmpname)
        url = stack.enter_context(fresh_database(backend, tmp))
        load_demo(url)
        plans, people = prepare(url, extra_gauges=args.extra_gauges, seed=args.seed)
        dep = stack.enter_context(deployment(backend, url, tmp, args))
        print(f"   deployment up at {dep.base}: " + ", ".join(n for n, _ in dep.procs), flush=True)
        roots = {p.pid: name for name, p in dep.procs}
        roots[os.getpid()] = "bench client (load, sink, answers)"
        watcher = StormWatcher(roots=roots)
        watcher.start()
        tokens = tokens_for(dep.base)
        rng = random.Random(args.seed)
        points = inside_points(url, 3000, args.seed)

        # Warm-up: every app worker has served reports and staff reads, as after an evening's
        # use; its orders are counted like the storm's.
        run = uuid.uuid4().hex[:6]

        async def warm(storm: Storm) -> None:
            await asyncio.gather(
                *(storm.report(10_000_000 + i, time.perf_counter()) for i in range(16))
            )
            await asyncio.gather(
                *(
                    storm.http.call("warm", "GET", "/api/v1/flood/board", token=tokens["duty"])
                    for _ in range(4)
                )
            )

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        host, port = dep.broker
        seconds = args.minutes * 60
        args.seconds = seconds
        storm_started = datetime.now(UTC).replace(microsecond=0)
        # The publisher starts on the clock; the warm-up below fits in the time before it.
        start_at = time.time() + 10.0
        pub = ctx.Process(
            target=publish_storm,
            args=(
                host,
                port,
                "watergrid/v1",
                [(p.code, p.kind, p.start, p.end) for p in plans],
                start_at,
                seconds,
                args.reading_interval_s,
                q,
            ),
            daemon=True,
        )

        async def storm_main() -> Storm:
            http = Http(dep.base)
            storm = Storm(
                dep=dep, args=args, run=run, http=http, tokens=tokens, points=points, rng=rng
            )
            storm.stop_at = time.perf_counter() + 3600
            await warm(storm)
            for k in list(http.stats):
                http.stats.pop(k)  # warm-up requests are not measured
            for p in list(watcher.procs.values()):
                p.first_rss_kb = p.last_rss_kb  # growth over the storm is measured from here
            pause = start_at - time.time()
            if pause > 0:
                await asyncio.sleep(pause)
            print(f"   storm for {seconds:.0f} s", flush=True)
            await storm.main()
            await storm.lift_all()
            http.close()
            return storm

        pub.start()
        stack.callback(lambda: pub.is_alive() and pub.terminate())
        storm = asyncio.run(storm_main())
        # Rates are over the storm's nominal length: nothing new starts after it, and the
        # tail (retries finishing, lifting the warnings) would only dilute them.
        storm_seconds = seconds
        storm_wall_s = storm.elapsed()
        load_end_storm = [round(x, 2) for x in os.getloadavg()]
        print("   storm over; draining", flush=True)

        published = q.get(timeout=120)
        pub.join(30)
        if "error" in published:
            raise RuntimeError(f"publisher failed:\n{published['error']}")
        deadline = time.monotonic() + args.drain_timeout_s
        stored = 0
        while time.monotonic() < deadline:
            stored = readings_stored(url, storm_started)
            if stored >= published["published"]:
                break
            time.sleep(1.0)
        notes = count_notifications(url, dep.sink, args.drain_timeout_s, storm_started)
        reports = count_reports(url, storm)
        eng = _engine(url)
        with eng.connect() as c:
            calls = dict(
                c.execute(text("SELECT state, count(*) FROM flood_call GROUP BY state")).all()
            )
            answered_via = dict(
                c.execute(
                    text(
                        "SELECT answered_via, count(*) FROM flood_call "
                        "WHERE answered_via IS NOT NULL GROUP BY answered_via"
                    )
                ).all()
            )
            rounds = c.execute(text("SELECT count(*) FROM flood_call_round")).scalar_one()
            alarms = dict(
                c.execute(text("SELECT state, count(*) FROM flood_alarm GROUP BY state")).all()
            )
            dead = c.execute(text("SELECT count(*) FROM flood_dead_letter")).scalar_one()
            order_states = dict(
                c.execute(
                    text(
                        "SELECT state, count(*) FROM work_order "
                        "WHERE description LIKE :p GROUP BY state"
                    ),
                    {"p": f"%storm {run}-%"},
                ).all()
            )
        eng.dispose()
        watcher.stop()
        load_end = [round(x, 2) for x in os.getloadavg()]
        logs = log_problems(dep.logs)

    stats = storm.http.stats
    requests = {k: v.summary() for k, v in sorted(stats.items())}
    for k, v in requests.items():
        v["ok_per_s"] = round(stats[k].ok() / storm_seconds, 2)
        v.pop("elapsed_s", None)
    by_status: Counter[str] = Counter()
    for r in stats.values():
        for s, n in r.statuses.items():
            if not 200 <= s < 300:
                by_status[str(s)] += n
        if r.errors:
            by_status["connection/timeout"] += r.errors
    e2e = sorted(storm.report_e2e_ms)

    def pct(xs: list[float], q: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None

    readings = {
        "published": published["published"],
        "per_kind": published["per_kind"],
        "stored": stored,
        "lost": max(0, published["published"] - stored),
        "duplicated": max(0, stored - published["published"]),
        "dead_letters": dead,
    }
    procs = watcher.summary()
    app_workers = [
        p for p in procs if p["label"].startswith("app worker") and "/" not in p["label"]
    ] or [p for p in procs if p["label"] == "app (embedded worker)"]
    result = {
        "deployment": {
            "backend": backend,
            "processes": [n for n, _ in dep.procs],
            "mqtt_client_id": dep.mqtt_client_id,
            "extra_rain_gauges": args.extra_gauges,
            "sensors": len(plans),
            "people_with_sms": people,
        },
        "storm_s": round(storm_seconds, 1),
        "storm_wall_s_with_tail": round(storm_wall_s, 1),
        "load_average": {
            "before_setup": load_start,
            "end_of_storm": load_end_storm,
            "after_counting": load_end,
            "max_1min_sampled": round(watcher.load_max_1min, 2),
        },
        "throughput_per_s": {
            "reports_acknowledged": round(len(storm.acked) / storm_seconds, 2),
            "staff_actions": round(
                sum(n for k, n in storm.actions_done.items() if "failed" not in k) / storm_seconds,
                2,
            ),
            "readings_published": round(published["published"] / storm_seconds, 1),
            "notifications_delivered": round(notes["delivered"] / storm_seconds, 2),
            "call_answers": round(
                sum(n for k, n in storm.answers.items() if k.endswith(" 200")) / storm_seconds, 2
            ),
        },
        "requests": requests,
        "errors_by_status": dict(sorted(by_status.items())),
        "client_failures": dict(storm.http.failures),
        "refusals_by_code": dict(storm.http.refusals.most_common()),
        "bench_task_errors": dict(storm.task_errors),
        "reports": {
            **reports,
            "end_to_end_ms": {"p50": pct(e2e, 0.5), "p95": pct(e2e, 0.95), "p99": pct(e2e, 0.99)},
            "order_states": order_states,
        },
        "staff_actions": dict(storm.actions_done),
        "orders_resolved": storm.orders_resolved,
        "orders_left_in_staff_queue": storm.orders.qsize(),
        "readings": readings,
        "notifications": notes,
        "warnings": storm.warning_log,
        "calls": {
            "rounds": rounds,
            "by_state": calls,
            "answered_via": answered_via,
            "call_sms_seen": storm.call_sms_seen,
            "answer_requests": dict(storm.answers),
        },
        "alarms": alarms,
        "memory": {
            "goal_app_worker_mb": GOAL_APP_WORKER_MB,
            "app_worker_peak_mb": max((p["peak_rss_mb"] for p in app_workers), default=None),
            "goal_met": all(p["peak_rss_mb"] <= GOAL_APP_WORKER_MB for p in app_workers)
            and bool(app_workers),
            "processes": procs,
        },
        "server_logs": logs,
        "lost": reports["lost"] + readings["lost"] + notes["lost"],
        "duplicated": reports["duplicated"] + readings["duplicated"] + notes["duplicated"],
    }
    return result


def print_summary(backend: str, r: dict[str, Any]) -> None:
    print(f"\n== {backend}: storm {r['storm_s']} s, load {r['load_average']}")
    print(f"   throughput/s: {r['throughput_per_s']}")
    print(f"   {'request':<18}{'n':>7}{'ok/s':>8}{'p50':>9}{'p95':>9}{'p99':>9}  statuses")
    for k, v in r["requests"].items():
        print(
            f"   {k:<18}{v['requests']:>7}{v['ok_per_s']:>8}{v['p50_ms']:>9}{v['p95_ms']:>9}"
            f"{v['p99_ms']:>9}  {v['statuses']} err={v['errors']}"
        )
    rep, rd, nt = r["reports"], r["readings"], r["notifications"]
    print(
        f"   reports   acknowledged {rep['acknowledged']} stored {rep['stored']} "
        f"lost {rep['lost']} duplicated {rep['duplicated']} (retries {rep['retries']})"
    )
    print(
        f"   readings  published {rd['published']} stored {rd['stored']} lost {rd['lost']} "
        f"duplicated {rd['duplicated']}"
    )
    print(
        f"   notices   due {nt['due']} delivered {nt['delivered']} lost {nt['lost']} "
        f"duplicated {nt['duplicated']} {nt['by_state']} delay {nt['outbox_to_sink_s']}"
    )
    print(f"   calls     {r['calls']['by_state']} answers {r['calls']['answer_requests']}")
    print(f"   errors    {r['errors_by_status']}")
    print("   memory (peak RSS, first → last sample):")
    for p in r["memory"]["processes"]:
        print(
            f"     {p['label']:<52}{p['peak_rss_mb']:>8} MB  "
            f"{p['rss_first_sample_mb']} → {p['rss_last_sample_mb']}"
        )
    met = "met" if r["memory"]["goal_met"] else "NOT met"
    print(f"   app worker goal ≤ {GOAL_APP_WORKER_MB:g} MB: {met}")
    print(f"   LOST {r['lost']}  DUPLICATED {r['duplicated']}")


def save_results(args: argparse.Namespace, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "storm.json"
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    merged = dict(old.get("results", {}))
    settings = dict(old.get("settings", {}))
    for b, r in results.items():
        merged[b] = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), **r}
        settings[b] = {k: v for k, v in vars(args).items() if k != "backend"}
    data = {
        "benchmark": "storm",
        "machine": machine(),
        "goal_app_worker_peak_rss_mb": GOAL_APP_WORKER_MB,
        "settings": settings,
        "results": merged,
    }
    path.write_text(
        json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--minutes", type=float, default=2.5, help="length of the storm")
    ap.add_argument(
        "--report-rate", type=float, default=4.0, help="public reports/s between bursts"
    )
    ap.add_argument("--burst-rate", type=float, default=40.0, help="public reports/s in a burst")
    ap.add_argument("--burst-s", type=float, default=10.0, help="length of a burst")
    ap.add_argument("--burst-every-s", type=float, default=45.0, help="a burst ends every N s")
    ap.add_argument(
        "--citizens", type=int, default=5000, help="client addresses the reports come from"
    )
    ap.add_argument("--staff", type=int, default=6, help="staff members working orders at once")
    ap.add_argument("--staff-share", type=float, default=0.6, help="share of reports staff take up")
    ap.add_argument(
        "--think-s",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=(0.5, 3.0),
        help="a staff member's pause before each action, min,max seconds",
    )
    ap.add_argument("--extra-gauges", type=int, default=160, help="synthetic rain gauges")
    ap.add_argument(
        "--reading-interval-s", type=float, default=5.0, help="each sensor reports every N s"
    )
    ap.add_argument(
        "--answer-link-share", type=float, default=0.5, help="call SMS answered by link"
    )
    ap.add_argument(
        "--answer-sms-share", type=float, default=0.2, help="call SMS answered by reply"
    )
    ap.add_argument("--app-workers", type=int, default=2, help="postgresql: uvicorn workers")
    ap.add_argument(
        "--workers", type=int, default=2, help="postgresql: `watergrid worker` processes"
    )
    ap.add_argument("--notify-poll-s", type=float, default=1.0, help="outbox delivery idle poll")
    ap.add_argument("--drain-timeout-s", type=float, default=180.0)
    ap.add_argument("--seed", type=int, default=20250611)
    args = ap.parse_args()

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Both stop the run through the same unwinding (processes stopped, database dropped),
    # also when started from a shell that ignores SIGINT in background jobs; and with a
    # handler of our own asyncio.run does not turn Ctrl-C into a quiet cancellation.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    try:
        for b in backends:
            results[b] = run_backend(b, args)
            print_summary(b, results[b])
    except KeyboardInterrupt:
        # The with-blocks have stopped every process and dropped the database by now.
        print("\ninterrupted: processes stopped, database removed; nothing saved", flush=True)
        return 130
    path = save_results(args, results)
    print(f"\nsaved {path}")
    return 1 if any(r["lost"] or r["duplicated"] for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
