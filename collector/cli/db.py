"""``llm-usage db``: apply or inspect schema migrations."""

from __future__ import annotations

import typer

from collector.core.settings import get_settings
from collector.db.engine import make_engine
from collector.db.migrate import current_revision, head_revision, upgrade

db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    applied = upgrade(engine)
    state = "upgraded to" if applied else "already at"
    typer.echo(f"database {engine.url.render_as_string(hide_password=True)} {state} {current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision and the newest one shipped."""
    engine = make_engine(get_settings().resolved_database_url())
    typer.echo(f"current: {current_revision(engine)}  head: {head_revision()}")
