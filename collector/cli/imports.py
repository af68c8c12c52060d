"""``llm-usage import FILE...`` and ``llm-usage imports list|remove``: billing exports in and out.

Thin shells over :mod:`importers.service` (one transaction per file) and the ``import_files`` log.
Removing an import deletes the usage rows it wrote, which is how an admin lets another billed
source count for the days the file billed (design rule 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collector.cli.common import database, echo_json, hooks_of, list_format
from collector.core.settings import get_settings


def import_command(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="CSV exports (.csv or .csv.gz) to import.", show_default=False)],
    importer: str | None = typer.Option(
        None, "--importer", "-i", help="Format name (focus, gcp_billing, aws_cur, azure_cost, fireworks, generic)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and total, write nothing."),
    account: str | None = typer.Option(None, "--account", help="Account label for every row of these files."),
    all_services: bool = typer.Option(False, "--all-services", help="Keep rows of every service, not only AI."),
    force: bool = typer.Option(False, "--force", help="Import files even if the same bytes were imported before."),
) -> None:
    """Import CSV billing exports, each file whole or not at all.

    The format is detected from the header unless --importer says it. Exit code 1 when any file
    is refused (each problem is printed with file, line, column, value and rule).
    """
    from importers.service import import_file

    settings = get_settings()
    engine = database(settings)  # a dry run reads it (to show overlaps) but writes nothing
    failed = 0
    for path in files:
        if not path.is_file():
            typer.echo(f"{path}: no such file", err=True)
            failed += 1
            continue
        result = import_file(
            path,
            importer=importer,
            dry_run=dry_run,
            account=account,
            engine=engine,
            settings=settings,
            keep_all=all_services or None,
            force=force,
            hooks=hooks_of(ctx),
        )
        for line in result.summary():
            typer.echo(line, err=not result.ok)
        failed += not result.ok
    if failed:
        raise typer.Exit(1)


imports_app = typer.Typer(help="Imported files: list them, or remove one with the rows it wrote.", no_args_is_help=True)


@imports_app.command("list")
def imports_list(
    limit: int = typer.Option(50, help="Newest files first, at most this many."),
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """Imported (and refused) files, newest first."""
    from importers.log import recent_imports

    fmt = list_format(fmt)
    rows = recent_imports(database(), limit)
    if fmt == "json":
        echo_json(rows)
        return
    if not rows:
        typer.echo("no CSV imports recorded")
        return
    for r in rows:
        period = f"{r['period_start']:%Y-%m-%d} .. {r['period_end']:%Y-%m-%d}" if r["period_start"] else "-"
        typer.echo(
            f"#{r['id']:<5} {r['status']:<9} {r['importer'] or '-':<12} {r['rows']:>9,} rows  {period:<24} "
            f"{r['account'] or '-':<20} {r['name']}"
        )


@imports_app.command("remove")
def imports_remove(
    import_id: int = typer.Argument(..., metavar="ID", help="The # shown by `imports list`."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete the usage rows one imported file wrote, and mark it removed in the log."""
    from importers.log import remove_import

    engine = database()
    if not yes and not typer.confirm(f"delete the usage rows written by import #{import_id}?"):
        raise typer.Exit(1)
    deleted = remove_import(engine, import_id)
    if deleted is None:
        typer.echo(f"error: no imported file with id {import_id}", err=True)
        raise typer.Exit(2)
    typer.echo(f"import #{import_id} removed: {deleted:,} usage row(s) deleted")
