"""Process-wide browser resources. Several test folders pull the browser fixtures from
tests/web/conftest.py into their own conftest, which gives pytest several copies of the same
session fixtures; Playwright's sync API cannot be started twice in one process and a second
demo server would only cost time. So the fixtures delegate to these singletons, which are
shared however many fixture copies exist, and stopped when the process exits."""

from __future__ import annotations

import atexit
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_playwright: Any = None
_servers: dict[str, Any] = {}


def playwright() -> Any:
    global _playwright
    if _playwright is None:
        from playwright.sync_api import sync_playwright

        _playwright = sync_playwright().start()
        atexit.register(_playwright.stop)
    return _playwright


def shared(name: str, start: Callable[[], Any], stop: Callable[[Any], None]) -> Any:
    """Start `name` once per process; `stop` runs at exit."""
    if name not in _servers:
        value = start()
        _servers[name] = value
        atexit.register(stop, value)
    return _servers[name]


def start_uvicorn(*, env: dict[str, str], cwd: Path, port: int) -> tuple[Any, Path]:
    """The app served by uvicorn in a process of its own, its output in cwd/server.log."""
    log = cwd / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "watergrid.asgi:app"]
            + ["--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def wait_ready(url: str, proc: Any, log: Path, timeout: float = 60) -> None:
    """Until `url` answers 200; fails the test if the server exits or never gets there."""
    import pytest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"server not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def stop_server(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def uvicorn_server(
    *, env: dict[str, str], cwd: Path, port: int, ready_path: str = "/readyz"
) -> Iterator[str]:
    """Base URL of the app served by uvicorn for the duration of the block."""
    base = f"http://127.0.0.1:{port}"
    proc, log = start_uvicorn(env=env, cwd=cwd, port=port)
    try:
        wait_ready(f"{base}{ready_path}", proc, log)
        yield base
    finally:
        stop_server(proc)
