"""`watergrid registry import DIR` and `watergrid registry export DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from watergrid.errors import AppError

app = typer.Typer(help="Import and export the registry as GeoJSON and CSV", no_args_is_help=True)

# Exit code for "your files are wrong" as opposed to a crash (1) or a usage error (also 2
# in click, which is fine: both mean "fix the input").
EXIT_INVALID = 2


def print_errors(exc: AppError) -> None:
    typer.echo(f"{exc.message_zh} / {exc.message}", err=True)
    for f in exc.fields:
        where = ":".join(str(p) for p in (f.file, f.line) if p)
        field = f" [{f.field}]" if f.field else ""
        typer.echo(f"  {where}{field} {f.message_zh} / {f.message}", err=True)


@app.command("import")
def import_command(
    directory: Path = typer.Argument(..., help="Folder holding the registry files"),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Make the database equal to the files: every file required; rows missing from "
        "them are deleted. Without it, rows missing from the files are kept.",
    ),
    datum: str | None = typer.Option(
        None,
        "--datum",
        help="Datum of areas.geojson when the file does not say: wgs84 (default) or gcj02 "
        "(AMap/Tencent coordinates, converted to WGS84 on import).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and count, then roll back: nothing is written."
    ),
) -> None:
    """Check the registry files and upsert them by code, all or nothing."""
    from watergrid.db import session_scope
    from watergrid.registry.service import import_dir

    class _DryRun(Exception):
        pass

    try:
        with session_scope() as db:
            report = import_dir(db, path=directory, replace=replace, datum=datum)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except AppError as exc:
        print_errors(exc)
        raise typer.Exit(EXIT_INVALID) from None
    for line in report.lines():
        typer.echo(line)
    if dry_run:
        typer.echo("dry run: nothing written")
    elif not report.changed:
        typer.echo("no changes")


@app.command("export")
def export_command(
    directory: Path = typer.Argument(..., help="Folder to write the registry files into"),
    bom: bool = typer.Option(
        False, "--bom", help="Start each CSV with a UTF-8 BOM, for Excel on Windows."
    ),
) -> None:
    """Write the registry as areas.geojson and six CSV files (overwriting them)."""
    from watergrid.db import session_scope
    from watergrid.registry.service import export_dir

    with session_scope(write=False) as db:
        written = export_dir(db, path=directory, bom=bom)
    for path in written:
        typer.echo(str(path))
