"""scripts/backup.sh and scripts/restore.sh, end to end on each backend: a demo database with
a work order in it is backed up and restored into a new database, which then holds the same
rows in every table, is at the head revision (`watergrid migrate` leaves it so), and serves
the order — and takes new ones, numbered after it (sequences came across too).

Under CI=true the PostgreSQL run is required (tests/conftest.py fails it when the server is
unreachable), and so are pg_dump and pg_restore."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, inspect, select, table
from sqlalchemy.orm import Session
from tests.conftest import IN_CI, create_database, login_token
from tests.workorders.helpers import grid_point, report

from watergrid import db as dbmod
from watergrid.db import make_engine, utcnow
from watergrid.migrate import alembic_config
from watergrid.settings import get_settings
from watergrid.workorders import service
from watergrid.workorders.schemas import OrderCreate

ROOT = Path(__file__).resolve().parents[2]
BACKUP = ROOT / "scripts" / "backup.sh"
RESTORE = ROOT / "scripts" / "restore.sh"


@pytest.fixture(autouse=True)
def _keep_process_engine() -> Iterator[None]:
    """The app and the loaders re-point the process-wide engine at this test's databases;
    put it back for the tests that run after this one."""
    before = dbmod._configured_url
    yield
    if before is not None:
        dbmod.configure(before)


def _need_pg_tools() -> None:
    missing = [t for t in ("pg_dump", "pg_restore", "psql", "createdb") if not shutil.which(t)]
    if missing:
        if IN_CI:
            pytest.fail(f"PostgreSQL client tools missing under CI=true: {missing}")
        pytest.skip(f"PostgreSQL client tools missing: {missing} (scripts/install-system-deps.sh)")


def _row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: int(conn.scalar(select(func.count()).select_from(table(name))) or 0)
            for name in sorted(inspect(conn).get_table_names())
        }


def _revision(engine: Engine) -> tuple[set[str], set[str]]:
    """(revisions the database is at, heads of the migration chain)."""
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    return current, heads


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{argv[:2]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def _migrate(url: str) -> None:
    """`watergrid migrate` as an operator runs it, against `url`; in this process, because a
    second interpreter importing the app would cost more than the rest of the test."""
    from typer.testing import CliRunner

    from watergrid.cli import app

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["migrate"], env={"WATERGRID_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()
        dbmod.get_engine().dispose()
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "schema up to date" in result.output


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATERGRID_")}
    env.update(PYTHON=sys.executable, WATERGRID_LOG_JSON="false", **extra)
    return env


def test_backup_restores_into_a_new_database_that_serves_the_same_data(
    backend: str, tmp_path: Path
) -> None:
    from watergrid.app import create_app
    from watergrid.demo.load import load_demo
    from watergrid.migrate import upgrade
    from watergrid.reference import seed_reference

    if backend == "postgresql":
        _need_pg_tools()
    source_url, drop_source = create_database(backend, tmp_path)
    target_url, drop_target = create_database(backend, tmp_path)
    if backend == "postgresql":
        # restore.sh creates the target itself; the name is reserved here and dropped after.
        drop_target()  # type: ignore[operator]
    else:
        # Restoring over an existing file is refused; this one was only named, never made.
        assert not Path(target_url.removeprefix("sqlite:///")).exists()
    source = make_engine(source_url)
    target: Engine | None = None
    try:
        # What an operator's database holds: the schema by migration, the reference data
        # `watergrid migrate` seeds, the demo registry, and a citizen's report.
        upgrade(source_url)
        dbmod.configure(source_url)
        with dbmod.session_scope() as s:
            seed_reference(s)
            load_demo(s)
        with Session(source) as s:
            lon, lat = grid_point(s, "W01")
        with dbmod.session_scope() as s:
            order = service.create_order(
                s,
                data=OrderCreate(**report(lon=lon, lat=lat)),
                source="public_web",
                actor=None,
                idempotency_key=f"backup-{backend}",
                now=utcnow(),
            ).receipt
        dbmod.get_engine().dispose()
        before = _row_counts(source)
        assert before["work_order"] >= 1 and before["person"] > 0

        env = _child_env()
        dump = Path(
            _run(
                ["bash", str(BACKUP), "-u", source_url, "-o", f"{tmp_path}/backups/"], env, tmp_path
            )
            .strip()
            .splitlines()[-1]
        )
        assert dump.is_file() and dump.parent == tmp_path / "backups"
        assert dump.suffix == (".dump" if backend == "postgresql" else ".sqlite3")
        # Personal data inside: nobody but the owner may read the file.
        assert dump.stat().st_mode & 0o077 == 0

        _run(["bash", str(RESTORE), str(dump), target_url], env, tmp_path)
        target = make_engine(target_url)
        assert _row_counts(target) == before

        # A restore into a database that holds data is refused and changes nothing.
        refused = subprocess.run(
            ["bash", str(RESTORE), str(dump), target_url],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0
        assert _row_counts(target) == before

        current, heads = _revision(target)
        assert current == heads
        _migrate(target_url)
        assert _revision(target)[0] == heads
        assert _row_counts(target) == before, "migrate changed an up-to-date restored database"

        with TestClient(create_app(target_url, embedded_worker=False)) as c:
            h = login_token(c, "admin")
            got = c.get(f"/api/v1/orders/{order.id}", headers=h)
            assert got.status_code == 200, got.text
            assert got.json()["number"] == order.number
            assert got.json()["description"] == report()["description"]
            assert c.get(f"/api/v1/orders/by-number/{order.number}", headers=h).status_code == 200
            nxt = c.post(
                "/api/v1/orders",
                json=report(
                    lon=lon, lat=lat, description="恢复后的新报告 / reported after restore"
                ),
                headers={"Idempotency-Key": f"after-restore-{backend}"},
            )
            assert nxt.status_code == 201, nxt.text
            assert nxt.json()["id"] > order.id
            assert nxt.json()["number"] > order.number
        dbmod.get_engine().dispose()
        # The source was not touched by any of it.
        assert _row_counts(source) == before
    finally:
        source.dispose()
        if target is not None:
            target.dispose()
        drop_source()  # type: ignore[operator]
        drop_target()  # type: ignore[operator]
