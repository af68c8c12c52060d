"""What every command group shares: the application's hooks, and the database the commands open."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from collector.core.ingest import NO_HOOKS, Hooks
from collector.core.settings import Settings, get_settings
from collector.db.migrate import open_database


def hooks_of(ctx: typer.Context) -> Hooks:
    """The hooks ``collector.app`` put on the root context (none when a group runs on its own)."""
    obj = ctx.find_object(Hooks)
    return obj if obj is not None else NO_HOOKS


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def database(settings: Settings | None = None) -> Engine:
    """The configured database, migrated; one line on stderr and exit 1 when it cannot be opened.

    Only ``run``, ``demo``, ``scheduler``, ``db upgrade`` and the servers create a SQLite file:
    any other command refuses a path that does not exist, naming it, so a mistyped path never
    answers "no usage recorded" from a fresh empty database.
    """
    settings = settings or get_settings()
    url = settings.resolved_database_url()
    shown = make_url(url).render_as_string(hide_password=True)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        typer.echo(
            f"error: no database at {path} (LLM_USAGE_DATABASE_URL / LLM_USAGE_DATA_DIR); "
            "`llm-usage run` or `llm-usage db upgrade` creates one",
            err=True,
        )
        raise typer.Exit(1)
    try:
        return open_database(settings)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"error: cannot open the database {shown}: {reason}", err=True)
        raise typer.Exit(1) from None


def currency_code(code: str, option: str = "--currency") -> str:
    """An ISO 4217 code (upper-cased), or '' for "each currency as billed"; exit 2 otherwise."""
    code = code.strip().upper()
    if code and (len(code) != 3 or not code.isalpha()):
        typer.echo(f"error: {option}: {code!r} is not a three-letter ISO 4217 code such as EUR", err=True)
        raise typer.Exit(2)
    return code


#: ``--format`` of every listing: ``table`` for people, ``json`` for scripts.
LIST_FORMATS = ("table", "json")


def list_format(value: str) -> str:
    """The checked ``--format`` value (exit 2 naming the accepted ones otherwise)."""
    if value not in LIST_FORMATS:
        typer.echo(f"error: --format: {value!r} is not one of {', '.join(LIST_FORMATS)}", err=True)
        raise typer.Exit(2)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    return value


def echo_json(rows: Iterable[Mapping[str, Any]]) -> None:
    """A JSON array of the rows: ISO 8601 UTC times, exact decimal strings."""
    typer.echo(json.dumps([{k: _jsonable(v) for k, v in row.items()} for row in rows], indent=2))
