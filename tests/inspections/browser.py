"""Browser fixtures for the inspection and permit pages: the app served for real by uvicorn
over a fresh SQLite file holding the Guangming demo plus the inspection and permit demos, and
Debian's Chromium driven by Playwright (phone-sized or desktop contexts).

The database is migrated with Alembic and loaded with the registry demo and these domains'
demos. Screenshots and printed PDFs (with a PNG of each page made by pdftoppm) go to
test-artifacts/."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser_support import uvicorn_server

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
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
PASSWORD = "demo1234"
PHONE = {"width": 390, "height": 844}
# A point in Guangming (the phone's reported position in the tests).
GUANGMING = {"longitude": 113.935, "latitude": 22.77}

PREPARE = textwrap.dedent("""
    import sys
    import watergrid.models
    import watergrid.inspections.api, watergrid.permits.api
    from watergrid import db as dbmod
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade
    from watergrid.inspections.demo import load_inspections_demo
    from watergrid.permits.demo import load_permits_demo
    url = sys.argv[1]
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        load_demo(s)
    with dbmod.session_scope() as s:
        load_inspections_demo(s)
        load_permits_demo(s)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests need {reason} (CI=true): run scripts/install-system-deps.sh")
    pytest.skip(f"{reason} missing: run scripts/install-system-deps.sh")


def _serve(tmp: Path) -> Iterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp / 'live.db'}"
    env = dict(os.environ)
    env.update(
        WATERGRID_DATABASE_URL=url,
        WATERGRID_ASSETS_DIR=str(ROOT / "node_modules"),
        WATERGRID_PUBLIC_BASE_URL=base,
        WATERGRID_TILE_URL="",
        WATERGRID_LOG_JSON="false",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p),
    )
    prep = subprocess.run(
        [sys.executable, "-c", PREPARE, url],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if prep.returncode != 0:
        pytest.fail(f"demo load failed:\n{prep.stdout[-2000:]}\n{prep.stderr[-4000:]}")
    with uvicorn_server(env=env, cwd=tmp, port=port, ready_path="/permits") as served:
        yield served


# The inspection and permit folders each declare session fixtures for the server and the
# browser; one process can drive only one sync Playwright, and one demo server is enough, so
# both fixtures share what the first one started (counted, stopped with the last user).
_shared: dict[str, list[Any]] = {}


def _share(name: str, start: Any) -> Iterator[Any]:
    entry = _shared.get(name)
    if entry is None:
        gen = start()
        entry = _shared[name] = [gen, next(gen), 0]
    entry[2] += 1
    try:
        yield entry[1]
    finally:
        entry[2] -= 1
        if entry[2] == 0:
            del _shared[name]
            with contextlib.suppress(StopIteration):
                next(entry[0])


def chromium() -> Iterator[Any]:
    yield from _share("chromium", _chromium)


def serve(tmp: Path) -> Iterator[str]:
    yield from _share("server", lambda: _serve(tmp))


def _chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(str(CHROMIUM))
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package")
    try:
        # The suite's one Playwright per process (tests/web starts it too; a second sync
        # Playwright in the same process fails).
        from tests.browser_support import playwright as suite_playwright
    except ImportError:
        suite_playwright = None
    if suite_playwright is not None:
        browser = suite_playwright().chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        yield browser
        browser.close()
        return
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()
    finally:
        pw.stop()


class Tab:
    """A page in a fresh context (no cookies, no storage) that fails the test on script
    errors."""

    def __init__(self, browser: Any, *, phone: bool) -> None:
        options: dict[str, Any] = {
            "locale": "zh-CN",
            "timezone_id": "Asia/Shanghai",
            "geolocation": GUANGMING,
            "permissions": ["geolocation"],
        }
        if phone:
            options.update(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        else:
            options.update(viewport={"width": 1280, "height": 860})
        self.context = browser.new_context(**options)
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"script errors on the page: {self.errors}"


def login(page: Any, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def pdf_pages(data: bytes) -> int:
    if shutil.which("pdfinfo"):
        out = subprocess.run(["pdfinfo", "-"], input=data, capture_output=True, check=True).stdout
        m = re.search(rb"^Pages:\s+(\d+)", out, re.M)
        if m:
            return int(m.group(1))
    return len(re.findall(rb"/Type\s*/Page(?!s)", data))


def print_pdf(page: Any, name: str) -> bytes:
    """Print the page as the browser would on A4 and keep the PDF and a PNG of each page."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.emulate_media(media="print")
    data = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
    page.emulate_media(media="screen")
    pdf = ARTIFACTS / f"{name}.pdf"
    pdf.write_bytes(data)
    for old in ARTIFACTS.glob(f"{name}-pdf-*.png"):
        old.unlink()  # pages of an earlier, longer print must not linger
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "90", str(pdf), str(ARTIFACTS / f"{name}-pdf")], check=True
        )
    return bytes(data)


def shot(page: Any, name: str, full: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)
