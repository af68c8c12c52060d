"""The ``llm-usage`` command line (typer). Commands are thin: they call library functions."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from collector import __version__
from collector.migrate import current_revision, head_revision, open_database, upgrade
from collector.settings import Settings, get_settings
from collector.store import make_engine

app = typer.Typer(help="LLM usage and cost collector.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DASHBOARD_APP = Path(__file__).resolve().parent.parent / "dashboard" / "streamlit_app.py"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.callback()
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    """Collect LLM usage and cost from provider APIs, CSV exports and the proxy."""
    if version:
        typer.echo(__version__)
        raise typer.Exit()


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


def _start_dashboard(settings: Settings, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(extra_env or {})}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(DASHBOARD_APP),
        "--server.port",
        str(settings.dashboard_port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    return subprocess.Popen(cmd, env=env)  # noqa: S603  (our own interpreter and app path)


def _serve(settings: Settings, *, with_scheduler: bool, extra_env: dict[str, str] | None = None) -> None:
    """Run the dashboard (and the scheduler) until Ctrl-C or until the dashboard exits."""
    from collector.scheduler import build_scheduler

    engine = open_database(settings)
    scheduler = build_scheduler(engine, settings) if with_scheduler else None
    if scheduler is not None:
        scheduler.start()
    dashboard = _start_dashboard(settings, extra_env)
    typer.echo(f"dashboard: http://localhost:{settings.dashboard_port}  (Ctrl-C stops everything)")
    try:
        while dashboard.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo("stopping…")
    finally:
        if dashboard.poll() is None:
            dashboard.send_signal(signal.SIGINT)
            try:
                dashboard.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dashboard.kill()
        if scheduler is not None:
            scheduler.shutdown(wait=False)


@app.command()
def run() -> None:
    """Start the scheduler and the dashboard together (Ctrl-C stops both)."""
    _setup_logging()
    settings = get_settings()
    for hook in RUN_HOOKS:
        hook(settings)
    _serve(settings, with_scheduler=True)


@app.command()
def demo(
    days: int = typer.Option(120, help="Days of synthetic history to generate."),
    rows_per_hour: int = typer.Option(40, help="Usage rows per hour (groups active in an hour)."),
    serve: bool = typer.Option(True, help="Open the dashboard on the demo database afterwards."),
) -> None:
    """Load a clearly labelled demo dataset into data/demo.db and open the dashboard on it."""
    from collector.synthetic import GeneratorConfig, generate_demo

    settings = get_settings()
    path = settings.data_dir / "demo.db"
    url = f"sqlite:///{path.as_posix()}"
    engine = open_database(settings, url=url)
    result = generate_demo(engine, GeneratorConfig(days=days, rows_per_hour=rows_per_hour))
    typer.echo(f"DEMO DATA: wrote {result.records:,} synthetic usage rows to {path} (not real spend)")
    demo_settings = settings.model_copy(update={"database_url": url, "demo": True})
    for hook in RUN_HOOKS:  # e.g. the demo database's own first admin, so the newcomer can sign in
        hook(demo_settings)
    if serve:
        _serve(
            demo_settings,
            with_scheduler=False,
            extra_env={"LLM_USAGE_DATABASE_URL": url, "LLM_USAGE_DEMO": "true"},
        )


#: Called by ``run`` before serving (e.g. creating the first admin account).
RUN_HOOKS: list = []


@app.command()
def scheduler() -> None:
    """Run the sync scheduler in the foreground (Ctrl-C stops it)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    from collector.scheduler import build_scheduler

    _setup_logging()
    settings = get_settings()
    engine = open_database(settings)
    sched = build_scheduler(
        engine,
        settings,
        BlockingScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}),
    )
    try:
        sched.start()
    except KeyboardInterrupt:
        typer.echo("scheduler stopped")


# --- feature command groups: one import and one add_typer line per feature module ---------------
# (e.g. ``from collector.cli_connections import connections_app`` then
#  ``app.add_typer(connections_app, name="connections")``)
from collector.cli_import import import_command  # noqa: E402  (issue 4)

app.command("import")(import_command)
from collector.cli_connections import connections_app, secrets_app  # noqa: E402

app.add_typer(connections_app, name="connections")
app.add_typer(secrets_app, name="secrets")
from collector.cli_proxy import proxy, tokens_app  # noqa: E402  (issue 5: proxy sidecar)

app.command("proxy")(proxy)
app.add_typer(tokens_app, name="tokens")
from collector.cli_users import first_admin_hook, users_app  # noqa: E402

app.add_typer(users_app, name="users")
RUN_HOOKS.append(first_admin_hook)
from collector.cli_report import register as register_report_commands  # noqa: E402

register_report_commands(app)
from collector.cli_budgets import register as register_budget_commands  # noqa: E402

register_budget_commands(app)
