"""``llm-usage import FILE...``: import billing exports, a thin shell over :mod:`importers.service`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collector.cli.common import hooks_of
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
    from collector.db.migrate import open_database
    from importers.service import import_file

    settings = get_settings()
    engine = open_database(settings)  # a dry run reads it (to show overlaps) but writes nothing
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
