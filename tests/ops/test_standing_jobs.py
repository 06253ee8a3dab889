"""A deployment set up with `watergrid migrate` and its own registry (no demo) must still
run the flood response sweep (rain against the warning criteria, public waterlogging
reports to pump crews): the criteria come with the reference data, and a worker arms the
sweep when it starts, once however many workers start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import create_database

from watergrid import db as dbmod
from watergrid.flood.warning_models import WarningCriterion
from watergrid.flood.wiring import KIND_SWEEP
from watergrid.migrate import upgrade
from watergrid.ops import worker as worker_mod
from watergrid.reference import seed_reference
from watergrid.timers import service as timers
from watergrid.timers.models import DueItem


@pytest.fixture
def migrated_only(backend: str, tmp_path: Path) -> Iterator[str]:
    """What `watergrid migrate` leaves: the schema and the reference data, nothing else."""
    before = dbmod._configured_url
    url, drop = create_database(backend, tmp_path)
    upgrade(url)
    dbmod.configure(url)
    with dbmod.session_scope() as s:
        seed_reference(s)
    yield url
    dbmod.get_engine().dispose()
    if before is not None:
        dbmod.configure(before)
    drop()  # type: ignore[operator]


def _open_sweeps() -> int:
    with dbmod.session_scope(write=False) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(DueItem)
                .where(DueItem.kind == KIND_SWEEP, DueItem.state.in_(timers.OPEN_STATES))
            )
            or 0
        )


def test_reference_data_holds_the_active_warning_criteria(migrated_only: str) -> None:
    with dbmod.session_scope(write=False) as s:
        levels = set(
            s.scalars(select(WarningCriterion.level).where(WarningCriterion.active.is_(True)))
        )
    assert levels == {"yellow", "orange", "red"}


def test_a_starting_worker_arms_the_sweep_once(migrated_only: str) -> None:
    assert _open_sweeps() == 0
    modules = worker_mod.register_handlers()
    assert "watergrid.flood.wiring" in modules
    worker_mod._arm_standing_jobs(modules)
    assert _open_sweeps() == 1
    worker_mod._arm_standing_jobs(modules)  # a second worker starting
    assert _open_sweeps() == 1
