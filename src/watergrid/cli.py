"""The `watergrid` command."""

from __future__ import annotations

import typer

from watergrid.settings import get_settings

app = typer.Typer(help="watergrid: district water-affairs bureau", no_args_is_help=True)


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to date."""
    from watergrid.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo("schema up to date")


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


def _register_subcommands() -> None:
    from watergrid.demo.cli import demo
    from watergrid.registry.cli import app as registry_app

    app.command(name="demo")(demo)
    app.add_typer(registry_app, name="registry", help="Import and export the registry")


_register_subcommands()

if __name__ == "__main__":
    app()
