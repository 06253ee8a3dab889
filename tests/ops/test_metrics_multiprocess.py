"""/metrics under `watergrid serve --workers N`: a scrape lands on one worker process, so with
PROMETHEUS_MULTIPROC_DIR set it must report what every process counted, not its own share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from watergrid.ops import api, metrics

# An app process counting requests; run below in two interpreters of their own.
COUNT_ONE = (
    "import sys\n"
    "from watergrid.ops.metrics import REQUESTS\n"
    "REQUESTS.labels('GET', '/probe', '200').inc(int(sys.argv[1]))\n"
)


def _sample(text: str) -> float | None:
    line = 'watergrid_http_requests_total{method="GET",route="/probe",status="200"}'
    for row in text.splitlines():
        if row.startswith(line):
            return float(row.rsplit(" ", 1)[1])
    return None


def test_metrics_add_up_every_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", COUNT_ONE, str(n)], env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("*.db"))) >= 2  # each process wrote its own file

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert _sample(metrics.render().decode()) == 7.0
    # The route serves the same aggregate.
    assert _sample(api.metrics().body.decode()) == 7.0


def test_without_the_directory_a_process_reports_its_own_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.REQUESTS.labels("GET", "/probe-own", "200").inc()
    assert 'route="/probe-own"' in metrics.render().decode()
