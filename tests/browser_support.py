"""Process-wide browser resources. Several test folders pull the browser fixtures from
tests/web/conftest.py into their own conftest, which gives pytest several copies of the same
session fixtures; Playwright's sync API cannot be started twice in one process and a second
demo server would only cost time. So the fixtures delegate to these singletons, which are
shared however many fixture copies exist, and stopped when the process exits."""

from __future__ import annotations

import atexit
from collections.abc import Callable
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
