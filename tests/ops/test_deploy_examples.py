"""The files in deploy/ agree with the code they configure: the environment example names only
real settings (a misspelt one would be ignored silently) and they validate; nginx accepts
the largest upload each part of the app accepts; the systemd units start what exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watergrid.docs_config import settings_classes
from watergrid.ops.worker import LOOPS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MIB = 1024 * 1024


def _env_example() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "watergrid.env.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _setting_names() -> set[str]:
    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in settings_classes()
        for name in cls.model_fields
    }


def test_env_example_names_only_real_settings() -> None:
    names = {k for k in _env_example() if k.startswith("WATERGRID_")}
    assert names - _setting_names() == set()
    required = {
        "WATERGRID_DATABASE_URL",
        "WATERGRID_SECRET_KEY",
        "WATERGRID_COOKIE_SECURE",
        "WATERGRID_PUBLIC_BASE_URL",
    }
    assert required <= names


def test_env_example_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env_example().items():
        monkeypatch.setenv(key, value)
    for cls in settings_classes():
        s = cls(_env_file=None)  # type: ignore[call-arg]
        assert s is not None
    from watergrid.settings import Settings

    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.cookie_secure is True and s.embedded_worker is False
    assert s.database_url.startswith("postgresql+psycopg://")


def _body_limits() -> dict[str, int]:
    """client_max_body_size per location ('' for the server's own), in bytes."""
    text = (DEPLOY / "nginx" / "watergrid.conf").read_text(encoding="utf-8")
    limits: dict[str, int] = {}
    location = ""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if m := re.match(r"location\s+(?:=\s*)?(\S+)\s*\{", line):
            location = m.group(1)
        elif line == "}":
            location = ""
        elif m := re.match(r"client_max_body_size\s+(\d+)([km]?);", line):
            limits[location] = int(m.group(1)) * {"": 1, "k": 1024, "m": MIB}[m.group(2)]
    return limits


def test_nginx_takes_the_largest_upload_of_each_part() -> None:
    from watergrid.inspections import service as inspections
    from watergrid.permits import documents
    from watergrid.workorders.config import WorkOrderSettings

    limits = _body_limits()
    wo = WorkOrderSettings(_env_file=None)  # type: ignore[call-arg]
    # Every form carries text fields beside its files: at least 1 MiB of room for them.
    assert limits[""] >= wo.photo_max_count * wo.photo_max_bytes + MIB
    for loc in ("/inspections/", "/api/v1/inspections/"):
        assert limits[loc] >= inspections.PHOTO_MAX_COUNT * inspections.PHOTO_MAX_BYTES + MIB
    for loc in ("/permits/", "/api/v1/permits/"):
        assert limits[loc] >= documents.MAX_FILES * documents.MAX_BYTES + MIB


def test_nginx_serves_the_folders_the_app_mounts() -> None:
    from watergrid.app import WEB_DIR

    text = (DEPLOY / "nginx" / "watergrid.conf").read_text(encoding="utf-8")
    static = re.search(r"location /static/ \{\s*alias (\S+);", text)
    assert static is not None
    assert static.group(1).endswith(str((WEB_DIR / "static").relative_to(ROOT)) + "/")
    assert (WEB_DIR / "static" / "app.css").is_file()


def _unit(name: str) -> str:
    return (DEPLOY / "systemd" / name).read_text(encoding="utf-8")


def test_worker_unit_runs_known_loops() -> None:
    unit = _unit("watergrid-worker@.service")
    default = re.search(r"^Environment=LOOPS=(\S+)$", unit, re.M)
    assert default is not None
    assert set(default.group(1).split(",")) <= set(LOOPS)
    # Without the mqtt loop by default: only one process per client id may run it.
    assert "mqtt" not in default.group(1).split(",")
    assert re.search(r"^ExecStart=\S+/watergrid worker .*--loops \$\{LOOPS\}", unit, re.M)


def test_web_unit_gives_each_start_an_empty_metrics_directory() -> None:
    unit = _unit("watergrid-web.service")
    runtime = re.search(r"^RuntimeDirectory=(\S+)$", unit, re.M)
    assert runtime is not None
    assert f"Environment=PROMETHEUS_MULTIPROC_DIR=/run/{runtime.group(1)}" in unit
    assert re.search(r"^ExecStart=\S+/watergrid serve .*--workers \$\{WEB_WORKERS\}", unit, re.M)
