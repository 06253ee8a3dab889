"""Running Alembic from code, so `watergrid migrate` works from an installed package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def revision(
    url: str, message: str, *, tables: list[str] | None = None, rev_id: str | None = None
) -> None:
    """Autogenerate a revision; `tables` limits it to those tables (and what they need)."""
    cfg = alembic_config(url)
    if tables is not None:
        cfg.attributes["only_tables"] = set(tables)
    command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
