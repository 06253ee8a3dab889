"""`watergrid kpi …`: rebuild the figures from history, catch up, make demo history.

Registered in watergrid/cli.py as `app.add_typer(kpi_app, name="kpi")`; also runnable as
`python -m watergrid.kpi.cli`."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

app = typer.Typer(help="KPIs: rebuild rollups, catch up, demo history", no_args_is_help=True)


def _configure(database_url: str | None) -> None:
    from watergrid import db as dbmod
    from watergrid.settings import get_settings

    dbmod.configure(database_url or get_settings().database_url)


DB_OPTION = typer.Option(None, "--database-url", help="Default: WATERGRID_DATABASE_URL.")


@app.command()
def recompute(database_url: str | None = DB_OPTION) -> None:
    """Rebuild every KPI fact and daily rollup from the orders and their history."""
    from watergrid import db as dbmod
    from watergrid.kpi import jobs, rollups

    _configure(database_url)
    now = datetime.now(UTC)
    with dbmod.session_scope() as db:
        out = rollups.rebuild(db, now=now)
        jobs.ensure_scheduled(db, now=now)
    typer.echo(
        f"facts: {out['facts']}, rollup rows: {out['rollup_rows']}, "
        f"event watermark: {out['watermark']}"
    )


@app.command("catch-up")
def catch_up(database_url: str | None = DB_OPTION) -> None:
    """Carry order changes since the last run into the rollups (the worker does this
    every 30 s on its own)."""
    from watergrid import db as dbmod
    from watergrid.kpi import rollups

    _configure(database_url)
    with dbmod.session_scope() as db:
        n = rollups.catch_up(db, now=datetime.now(UTC))
    typer.echo(f"facts changed: {n}")


@app.command()
def history(
    days: int = typer.Option(365, "--days", min=1, max=3 * 366, help="Days of history."),
    per_day: float = typer.Option(32.0, "--per-day", min=0.1, help="Mean orders per day."),
    seed: int = typer.Option(20240705, "--seed", help="Random seed (same seed, same history)."),
    force: bool = typer.Option(False, "--force", help="Add history even if some is there."),
    database_url: str | None = DB_OPTION,
) -> None:
    """Make synthetic but lifelike history for the demo: orders with their events, leader
    field visits, the year's KPI attack map; then rebuild the figures."""
    from watergrid import db as dbmod
    from watergrid.kpi import history as hist
    from watergrid.kpi import jobs

    _configure(database_url)
    now = datetime.now(UTC)
    with dbmod.session_scope() as db:
        report = hist.generate(db, days=days, end=now, seed=seed, per_day=per_day, force=force)
        jobs.ensure_scheduled(db, now=now)
    for line in report.lines():
        typer.echo(line)


if __name__ == "__main__":
    app()
