"""Browser fixtures for the work-order pages: the same live server and Chromium as the map and
card pages (tests/web/conftest.py), plus a folder for this walk's screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.web.conftest import artifacts, browser_context, live_server, page  # noqa: F401


@pytest.fixture(scope="session")
def shots(artifacts: Path) -> Path:  # noqa: F811
    out = artifacts / "orders"
    out.mkdir(exist_ok=True)
    return out
