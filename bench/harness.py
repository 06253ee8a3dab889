"""Shared by the benchmarks: a fresh database, the demo loaded, a server in its own
processes, machine facts and JSON results. Everything runs on loopback and stops itself."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get(
    "WATERGRID_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(name: str, data: dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@contextmanager
def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        return
    name = f"wg_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WATERGRID_DATABASE_URL=url,
        WATERGRID_EMBEDDED_WORKER="false",
        WATERGRID_LOG_LEVEL="WARNING",
        # All bench traffic comes from one loopback address: the public intake's per-address
        # rate limit would answer most of it 429.
        WATERGRID_INTAKE_RATE_PER_MINUTE="0",
        **extra,
    )
    return env


def load_demo(url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "watergrid.cli", "demo"],
        env=env_for(url),
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str

    def pids(self) -> list[int]:
        """The uvicorn supervisor and its worker processes."""
        out = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            out += [int(p) for p in children.read_text().split()]
        return out


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the process's peak resident memory so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def uvicorn_argv(port: int, workers: int) -> list[str]:
    """The app under uvicorn as the benches run it: loopback, quiet, no access log."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "watergrid.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def wait_ready(
    base: str, *, alive: Callable[[], bool], timeout_s: float = 60.0, step_s: float = 0.2
) -> bool:
    """Poll `base`/readyz until it answers 200 (True); False as soon as `alive()` says the
    server's processes died, or when `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(step_s)


@contextmanager
def serve(url: str, *, workers: int = 2, **env: str) -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen(uvicorn_argv(port, workers), env=env_for(url, **env))
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(base, alive=lambda: proc.poll() is None):
            raise RuntimeError("server did not become ready")
        yield Server(proc=proc, base=base)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
