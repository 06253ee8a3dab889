"""Browser fixtures: the app running for real in a subprocess (fresh SQLite file, migrated and
loaded with the Guangming demo by `python -m watergrid.cli demo`), and Debian's Chromium
driven by Playwright.

Without /usr/bin/chromium the browser tests are skipped locally; under CI=true they fail, so a
broken CI image cannot pass silently. `scripts/install-system-deps.sh` installs what is
missing. Screenshots and printed PDFs go to test-artifacts/ (gitignored) for a human to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_support import start_uvicorn, wait_ready

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
# From the field notes in DESIGN.md: what Debian's Chromium needs in a container.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base URL of the app served by uvicorn over a fresh demo database; stopped at exit.
    One server per test process, however many folders use the fixture."""
    from tests.browser_support import shared, stop_server

    def start() -> tuple[str, subprocess.Popen[bytes]]:
        return _start_server(tmp_path_factory.mktemp("live"))

    def stop(value: tuple[str, subprocess.Popen[bytes]]) -> None:
        stop_server(value[1])

    return str(shared("live_server", start, stop)[0])


def _start_server(tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.update(
        WATERGRID_DATABASE_URL=f"sqlite:///{tmp / 'live.db'}",
        WATERGRID_ASSETS_DIR=str(ROOT / "node_modules"),
        WATERGRID_PUBLIC_BASE_URL=base,
        # No basemap: the tests must not depend on the network.
        WATERGRID_TILE_URL="",
        WATERGRID_LOG_JSON="false",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    # The working directory is the temp dir so a developer's .env cannot leak in.
    demo = subprocess.run(
        [sys.executable, "-m", "watergrid.cli", "demo"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if demo.returncode != 0:
        pytest.fail(f"`watergrid demo` failed ({demo.returncode}):\n{demo.stdout}\n{demo.stderr}")
    proc, log = start_uvicorn(env=env, cwd=tmp, port=port)
    try:
        wait_ready(f"{base}/readyz", proc, log)
    except BaseException:
        proc.kill()
        raise
    return base, proc


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests need {reason} (CI=true): run scripts/install-system-deps.sh")
    pytest.skip(f"{reason} missing: run scripts/install-system-deps.sh")


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for the session, with a fresh user-data dir."""
    if not CHROMIUM.exists():
        _unavailable(str(CHROMIUM))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package")
    from tests.browser_support import playwright as shared_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    pw = shared_playwright()
    # One Playwright per process (tests/browser_support.py); a context per fixture copy.
    context = pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        args=LAUNCH_ARGS,
        headless=True,
        viewport={"width": 1280, "height": 860},
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A new tab with no cookies: every test signs in (or stays anonymous) itself. Uncaught
    script errors fail the test."""
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
