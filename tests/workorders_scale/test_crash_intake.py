"""The server killed with SIGKILL during a burst of creates that retry with their
Idempotency-Key: afterwards every acknowledged order exists exactly once.

The scenario is bench/crash_intake.py's (uvicorn with 2 workers in a process group of its
own, SIGKILL to the group once a third of the burst is acknowledged, restart, every request
sent again unchanged); this test gives it a fresh demo database per backend and turns its
findings into assertions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench.crash_intake import scenario
from tests.conftest import backends
from tests.workorders_scale.conftest import demo_database

pytestmark = pytest.mark.slow

REQUESTS = 300
KILL_AFTER = 100


@pytest.mark.parametrize("backend", backends())
def test_sigkill_mid_burst_keeps_every_acknowledged_order_exactly_once(
    backend: str, tmp_path: Path
) -> None:
    url, drop = demo_database(backend, tmp_path)
    try:
        r = scenario(url, workdir=tmp_path, requests=REQUESTS, kill_after=KILL_AFTER)
    finally:
        drop()  # type: ignore[operator]
    print(json.dumps({backend: r}, ensure_ascii=False), file=sys.stderr)
    burst = r["burst"]
    # The kill must have landed inside the burst, or nothing was tested.
    assert KILL_AFTER <= burst["acknowledged"] < REQUESTS, burst
    assert burst["unanswered"] > 0, burst
    violations = r["violations"]
    assert not violations["lost_acknowledged"], violations["lost_acknowledged"][:5]
    assert not violations["number_changed"], violations["number_changed"][:5]
    assert not violations["duplicate_orders"], violations["duplicate_orders"][:5]
    assert not violations["retry_mismatch"], violations["retry_mismatch"][:5]
    assert not violations["retry_failed"], violations["retry_failed"][:5]
    assert not violations["partial"], violations["partial"][:5]
    # After the retries every request of the burst is an order, once.
    assert r["orders"] == REQUESTS
