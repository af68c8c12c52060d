"""The application, assembled in one place: command groups, scheduler jobs and after-ingest hooks.

Every feature module exposes plain functions, Typer groups and job installers; nothing registers
itself by being imported. This module lists them explicitly:

* :data:`app`, the ``llm-usage`` command line, with one line per command group;
* :data:`SCHEDULER_JOBS`, the installers :func:`build_scheduler` runs (API sync, proxy and OTLP
  rollups, hourly budget evaluation);
* :data:`AFTER_INGEST`, what runs after a sync or an import stored rows (budget evaluation and
  its alerts). Ingest code never imports finance: the hooks are handed to it by its callers
  (the commands below through the Typer context, the scheduler's sync jobs, the dashboard's
  actions);
* :data:`RUN_HOOKS`, what ``llm-usage run`` does before serving (the first admin account).

``run``, ``demo`` and ``scheduler`` live here too, since they are assembly: they start the
scheduler and the dashboard together.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import typer
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.engine import Engine

from collector import __version__
from collector.cli import billing as billing_commands
from collector.cli import budgets as budget_commands
from collector.cli import connections as connection_commands
from collector.cli import imports as import_commands
from collector.cli import metrics as metrics_commands
from collector.cli import otel as otel_commands
from collector.cli import proxy as proxy_commands
from collector.cli import reconcile as reconcile_commands
from collector.cli import report as report_commands
from collector.cli import users as user_commands
from collector.cli.db import db_app
from collector.core.ingest import Hooks
from collector.core.settings import Settings, get_settings
from collector.db.migrate import open_database
from collector.finance import budgets
from collector.otel.rollup import install_rollup as install_otel_rollup
from collector.proxy.rollup import install_rollup
from collector.sync.jobs import install_sync_jobs

log = logging.getLogger(__name__)

Installer = Callable[[BaseScheduler, Engine, Settings], None]

#: What ``streamlit run`` serves: ``st.App`` around ``dashboard/streamlit_app.py`` with security headers.
DASHBOARD_APP = Path(__file__).resolve().parent.parent / "dashboard" / "server.py"


# -- after-ingest hooks ---------------------------------------------------------------------------

#: Run, in order, after a sync or an import stored new rows.
AFTER_INGEST: tuple[Callable[[Engine, Settings], None], ...] = (budgets.after_ingest,)


def after_ingest(engine: Engine, settings: Settings) -> None:
    """Run every after-ingest hook; a failing hook is logged and never fails the ingest."""
    for hook in AFTER_INGEST:
        try:
            hook(engine, settings)
        except Exception:
            log.exception("after-ingest hook %s failed", getattr(hook, "__name__", hook))


#: What syncs and imports started by this application run after storing rows.
HOOKS = Hooks(after_ingest=after_ingest)


# -- scheduler ------------------------------------------------------------------------------------

#: The jobs ``llm-usage run`` and ``llm-usage scheduler`` install (code-anchors §11.12).
SCHEDULER_JOBS: tuple[Installer, ...] = (
    functools.partial(install_sync_jobs, hooks=HOOKS),
    install_rollup,
    install_otel_rollup,
    budgets.install_jobs,
)


def build_scheduler(engine: Engine, settings: Settings, scheduler: BaseScheduler | None = None) -> BaseScheduler:
    """A UTC scheduler with every job of :data:`SCHEDULER_JOBS` added (not started)."""
    scheduler = scheduler or BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
    )
    for install in SCHEDULER_JOBS:
        install(scheduler, engine, settings)
    log.info("scheduler ready with %d job(s)", len(scheduler.get_jobs()))
    return scheduler


# -- the command line -----------------------------------------------------------------------------

#: Called by ``run`` and ``demo`` before serving.
RUN_HOOKS: tuple[Callable[[Settings], None], ...] = (user_commands.first_admin_hook,)

app = typer.Typer(help="LLM usage and cost collector.", no_args_is_help=True, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """Collect LLM usage and cost from provider APIs, CSV exports and the proxy."""
    ctx.obj = HOOKS


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def dashboard_command(settings: Settings) -> list[str]:
    """``streamlit run`` with the dashboard's settings as flags (they travel with the package).

    Loopback only by default (``LLM_USAGE_DASHBOARD_HOST``); no visitor ever sees a stack trace
    (``client.showErrorDetails none``: the page shows that something failed, the console logs why).
    """
    flags = {
        "server.address": settings.dashboard_host,
        "server.port": str(settings.dashboard_port),
        "server.headless": "true",
        "browser.gatherUsageStats": "false",
        "client.showErrorDetails": "none",
        "client.toolbarMode": "minimal",
        "server.runOnSave": "false",
    }
    cmd = [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_APP)]
    for name, value in flags.items():
        cmd += [f"--{name}", value]
    return cmd


def _start_dashboard(settings: Settings, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(extra_env or {})}
    return subprocess.Popen(dashboard_command(settings), env=env)  # noqa: S603  (our own interpreter and app)


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM (systemd, ``docker stop``, ``kill``) stops like Ctrl-C: the dashboard child goes too."""
    raise KeyboardInterrupt


def _serve(settings: Settings, *, with_scheduler: bool, extra_env: dict[str, str] | None = None) -> None:
    """Run the dashboard (and the scheduler) until Ctrl-C, SIGTERM, or until the dashboard exits.

    SIGINT gets Python's own handler explicitly: a process started in the background by a
    non-interactive shell (CI, ``cmd &`` in a script) inherits SIGINT as ignored, and Python
    then installs no handler, so a ``kill -INT`` would leave it running.
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    engine = open_database(settings)
    scheduler = build_scheduler(engine, settings) if with_scheduler else None
    if scheduler is not None:
        scheduler.start()
    dashboard = _start_dashboard(settings, extra_env)
    host = "localhost" if settings.dashboard_host in ("127.0.0.1", "::1", "localhost") else settings.dashboard_host
    typer.echo(f"dashboard: http://{host}:{settings.dashboard_port}  (Ctrl-C stops everything)")
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
    """Build a clearly labelled demo dataset ending now in data/demo.db and open the dashboard on it.

    The demo database is rebuilt from scratch on every run, so its history always ends at the
    current hour; your real database is never touched.
    """
    from collector.demo.seed import build_demo

    settings = get_settings()
    path = settings.data_dir / "demo.db"
    for stale in (path, path.with_name("demo.db-wal"), path.with_name("demo.db-shm")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{path.as_posix()}"
    engine = open_database(settings, url=url)
    result = build_demo(engine, now=datetime.now(UTC), days=days, rows_per_hour=rows_per_hour)
    engine.dispose()
    typer.echo(
        f"DEMO DATA (not real spend): {path}, {days} days up to {result.end:%Y-%m-%d %H:00} UTC: "
        f"{result.usage_rows:,} usage rows, {result.bill_rows:,} cost-API bill rows, "
        f"{result.proxy_events:,} proxy calls, {result.budgets} budgets, one anomaly (yesterday), team rules"
    )
    demo_settings = settings.model_copy(update={"database_url": url, "demo": True})
    for hook in RUN_HOOKS:  # e.g. the demo database's own first admin, so the newcomer can sign in
        hook(demo_settings)
    if serve:
        _serve(
            demo_settings,
            with_scheduler=False,
            extra_env={"LLM_USAGE_DATABASE_URL": url, "LLM_USAGE_DEMO": "true"},
        )


@app.command()
def scheduler() -> None:
    """Run the sync scheduler in the foreground (Ctrl-C stops it)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

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


# Command groups: one line each.
app.add_typer(db_app, name="db")
app.command("import")(import_commands.import_command)
app.add_typer(import_commands.imports_app, name="imports")
app.add_typer(billing_commands.billing_app, name="billing")
app.add_typer(connection_commands.connections_app, name="connections")
app.add_typer(connection_commands.secrets_app, name="secrets")
app.add_typer(proxy_commands.proxy_app, name="proxy")
app.add_typer(proxy_commands.tokens_app, name="tokens")
app.command("otel")(otel_commands.otel)
app.command("metrics")(metrics_commands.metrics)
app.add_typer(user_commands.users_app, name="users")
app.command("report")(report_commands.report_command)
app.command("status")(report_commands.status_command)
app.command("reconcile")(reconcile_commands.reconcile_command)
app.command("reprice")(reconcile_commands.reprice_command)
app.add_typer(budget_commands.budgets_app, name="budgets")
app.add_typer(budget_commands.alerts_app, name="alerts")
app.add_typer(budget_commands.teams_app, name="teams")
app.add_typer(budget_commands.fx_app, name="fx")
app.command("export")(budget_commands.export_command)
app.command("anomalies")(budget_commands.anomalies_command)
