"""`watergrid demo`: migrate the database, then load the Guangming demo."""

from __future__ import annotations

import typer


def demo(
    database_url: str | None = typer.Option(
        None, "--database-url", help="Database to load into (default: WATERGRID_DATABASE_URL)."
    ),
    migrate: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Bring the schema up to date first."
    ),
) -> None:
    """Load the Guangming demo: 6 subdistricts, 37 grids, 7 zones, the bureau, its people,
    37 party groups and demo users (password demo1234). Safe to run again."""
    from watergrid import db as dbmod
    from watergrid.demo.load import DEMO_PASSWORD, DEMO_USERS, apply_demo, load_domain_demos
    from watergrid.errors import AppError
    from watergrid.registry.cli import EXIT_INVALID, print_errors
    from watergrid.settings import get_settings

    url = database_url or get_settings().database_url
    if migrate:
        from watergrid.migrate import upgrade

        upgrade(url)
    dbmod.configure(url)
    try:
        with dbmod.session_scope() as db:
            report, created = apply_demo(db)
        with dbmod.session_scope() as db:
            domains = load_domain_demos(db)
    except AppError as exc:
        print_errors(exc)
        raise typer.Exit(EXIT_INVALID) from None
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"domain demos: {', '.join(domains)}")
    typer.echo(f"users created: {', '.join(created) if created else 'none (already there)'}")
    typer.echo(f"demo users (password {DEMO_PASSWORD}):")
    for u in DEMO_USERS:
        scope = u.scope_kind + (f" {u.scope_code}" if u.scope_code else "")
        typer.echo(f"  {u.username:<10} {u.role:<14} {scope}")
