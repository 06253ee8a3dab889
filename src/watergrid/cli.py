"""The `watergrid` command."""

from __future__ import annotations

import typer

from watergrid.settings import get_settings

app = typer.Typer(help="watergrid: district water-affairs bureau", no_args_is_help=True)


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to date."""
    from watergrid import db as dbmod
    from watergrid.migrate import upgrade
    from watergrid.reference import seed_reference

    url = get_settings().database_url
    upgrade(url, revision)
    dbmod.configure(url)
    with dbmod.session_scope() as db:
        seed_reference(db)
    typer.echo("schema up to date; calendar and categories seeded")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = typer.Option(1, help="uvicorn worker processes (production: 2+)"),
    reload: bool = False,
) -> None:
    """Serve the web app and API."""
    import uvicorn

    uvicorn.run(
        "watergrid.asgi:app",
        host=host,
        port=port,
        workers=workers,
        reload=reload,
        proxy_headers=True,
        log_config=None,
    )


@app.command()
def worker(
    worker_id: str = typer.Option("", help="Name in logs and claims; default host:pid"),
    loops: str = typer.Option(
        "timers,notify,mqtt",
        help="Comma-separated loops to run: timers, notify, mqtt. Only one process per MQTT "
        "client id may run mqtt; the others run timers,notify.",
    ),
) -> None:
    """Run deadlines, escalations, outbox delivery and sensor ingestion until SIGTERM."""
    import os
    import signal
    import socket

    from watergrid import db as dbmod
    from watergrid.ops import worker as worker_mod
    from watergrid.ops.logs import setup_logging

    chosen = tuple(x.strip() for x in loops.split(",") if x.strip())
    # A misspelt loop would otherwise be skipped without a word, and a worker meant to run
    # deadlines would sit idle while they pass.
    unknown = [x for x in chosen if x not in worker_mod.LOOPS]
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown loop(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(worker_mod.LOOPS)}",
            param_hint="--loops",
        )
    s = get_settings()
    setup_logging(level=s.log_level, as_json=s.log_json)
    dbmod.configure()
    w = worker_mod.start(
        worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
        loops=chosen,
    )
    # SIGTERM lets every loop finish the item in hand and hand the rest back.
    signal.signal(signal.SIGTERM, lambda *_: w.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: w.stop_event.set())
    crashed = w.join()
    if crashed:
        typer.echo(f"worker loops crashed: {', '.join(crashed)}", err=True)
        raise typer.Exit(1)


def _register_subcommands() -> None:
    from watergrid.demo.cli import demo
    from watergrid.registry.cli import app as registry_app

    app.command(name="demo")(demo)
    app.add_typer(registry_app, name="registry", help="Import and export the registry")
    try:
        from watergrid.kpi.cli import app as kpi_app
    except ModuleNotFoundError:
        return
    app.add_typer(kpi_app, name="kpi", help="KPI rollups and demo history")


_register_subcommands()

if __name__ == "__main__":
    app()
