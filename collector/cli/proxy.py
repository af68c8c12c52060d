"""``llm-usage proxy`` (serve the sidecar, ``rollup`` now) and ``llm-usage tokens`` (monitor tokens)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import typer

from collector.cli.common import database, echo_json, hooks_of, list_format
from collector.core.http import mask_url
from collector.core.settings import Settings, get_settings
from collector.db.migrate import open_database

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

tokens_app = typer.Typer(help="Monitor tokens for the proxy's X-Monitor-Token header.", no_args_is_help=True)


def sidecar_extras(settings: Settings) -> dict[str, Any]:
    """What the application adds to the sidecar: budget caps; the OTLP receiver and spend metrics when asked."""
    from collector.finance.caps import enforced_caps

    extras: dict[str, Any] = {
        "extra_routes": [],
        "extra_metrics": [],
        "extra_periodic": [],
        "cap_loader": lambda engine: enforced_caps(engine),
    }
    if settings.proxy_otel:
        from collector.otel.receiver import OtelReceiver
        from collector.otel.rollup import rollup_with

        receiver = OtelReceiver(settings, engine_factory=functools.partial(open_database, settings))
        extras["extra_routes"] += receiver.routes()
        extras["extra_metrics"].append(receiver.metrics.render)
        extras["extra_periodic"].append(
            (settings.otel_rollup_interval_seconds, lambda engine: rollup_with(engine, settings))
        )
    if settings.proxy_spend_metrics:
        from collector.cli.metrics import spend_renderer

        extras["extra_metrics"].append(spend_renderer(settings))
    return extras


proxy_app = typer.Typer(
    help="Run the proxy sidecar: forwards LLM API calls unchanged and records their usage.\n\n"
    "`llm-usage proxy` serves; `llm-usage proxy rollup` turns the recorded calls into usage rows now.",
    invoke_without_command=True,
)


@proxy_app.callback()
def proxy(
    ctx: typer.Context,
    port: int | None = typer.Option(None, help="Port to listen on (default LLM_USAGE_PROXY_PORT, 8787)."),
    host: str | None = typer.Option(None, help="Address to listen on (default LLM_USAGE_PROXY_HOST, 127.0.0.1)."),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Worker processes sharing the port (default LLM_USAGE_PROXY_WORKERS, 1); each journals to "
        "<spool>/w<k>, and rate limits are per worker unless LLM_USAGE_REDIS_URL is set.",
    ),
) -> None:
    """Run the proxy sidecar: forwards LLM API calls unchanged and records their usage."""
    if ctx.invoked_subcommand is not None:
        return
    import os

    import uvicorn

    from collector.proxy.app import ProxyApp, upstreams_from
    from collector.proxy.server import quiet_library_loggers, uvicorn_options
    from collector.proxy.spool import adopt_strays
    from collector.proxy.tokens import load_salt

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    quiet_library_loggers()
    settings = get_settings()
    settings = settings.model_copy(
        update={
            "proxy_port": settings.proxy_port if port is None else port,  # 0: any free port (logged by uvicorn)
            "proxy_host": host or settings.proxy_host,
            "proxy_workers": settings.proxy_workers if workers is None else workers,
        }
    )
    n = settings.proxy_workers
    typer.echo(
        f"proxy: http://{settings.proxy_host}:{settings.proxy_port}  routes: "
        + ", ".join(f"/{k}/v1 -> {mask_url(u.base_url)}" for k, u in upstreams_from(settings).items())
        + (f"  workers: {n}" if n > 1 else "")
    )
    # Before any worker runs: segments in journal folders no worker will claim move to one that will.
    adopt_strays(settings.resolved_spool_dir(), n)
    if n == 1:
        uvicorn.run(ProxyApp(settings, **sidecar_extras(settings)), **uvicorn_options(settings))
        return
    # Workers are spawned, not forked: they read their settings from the environment, so the count
    # goes there, and the salt file is created here, once, so that no worker reads it half-written
    # and all fingerprint a key alike.
    os.environ["LLM_USAGE_PROXY_WORKERS"] = str(n)
    load_salt(settings)
    try:  # migrate once here rather than N times at once in the workers
        open_database(settings).dispose()
    except Exception as exc:  # noqa: BLE001  (the workers serve without it and keep trying)
        log.warning("proxy database unavailable at start (%s); the workers will keep trying", type(exc).__name__)
    if settings.redis_url is None:
        log.info("proxy: %d workers count rate limits each on its own (LLM_USAGE_REDIS_URL shares them)", n)
    uvicorn.run("collector.cli.proxy:worker_app", factory=True, **uvicorn_options(settings))


def worker_app() -> Any:
    """One worker process's app (``--workers N``): settings from the environment the parent passed on."""
    from collector.proxy.app import ProxyApp
    from collector.proxy.server import WorkerHeaderTimeout, quiet_library_loggers

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    quiet_library_loggers()
    settings = get_settings()
    WorkerHeaderTimeout.header_timeout = settings.proxy_header_timeout_seconds
    return ProxyApp(settings, **sidecar_extras(settings))


@proxy_app.command("rollup")
def rollup(ctx: typer.Context) -> None:
    """Roll the recorded proxy calls (and OTLP events) up into usage rows now, then check budgets.

    The sidecar does it every LLM_USAGE_PROXY_ROLLUP_INTERVAL_SECONDS and ``llm-usage run`` every
    hour; this is for when the Proxy page or a report should show the last minutes at once.
    """
    from collector.proxy.rollup import rollup_now

    settings = get_settings()
    for line in rollup_now(database(settings), settings, hooks_of(ctx)):
        typer.echo(line)


@tokens_app.command("create")
def tokens_create(
    team: str = typer.Option(..., help="Team the token's calls are attributed to."),
    project: str = typer.Option("", help="Project within the team."),
    label: str = typer.Option("", help="Free text to recognise the token by."),
) -> None:
    """Create a monitor token; it is printed once and stored only as a hash."""
    from collector.proxy.tokens import create_token

    try:
        token_id, token = create_token(database(), team=team, project=project, label=label)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"token {token_id} for team={team!r} project={project!r} (shown once, store it now):")
    typer.echo(token)
    typer.echo("send it as the X-Monitor-Token header; the proxy strips it before forwarding")


@tokens_app.command("list")
def tokens_list(
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """List tokens (hints only; tokens cannot be shown again)."""
    from collector.proxy.tokens import list_tokens

    fmt = list_format(fmt)
    rows = list_tokens(database())
    if fmt == "json":
        fields = ("id", "hint", "team", "project", "label", "rpm_limit", "tpm_limit", "created_at", "revoked_at")
        echo_json({f: r.get(f) for f in fields} for r in rows)
        return
    if not rows:
        typer.echo("no monitor tokens; create one with: llm-usage tokens create --team T --project P")
        return
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        limits = "".join(f" {k}={r[f'{k}_limit']}/min" for k in ("rpm", "tpm") if r[f"{k}_limit"])
        typer.echo(
            f"{r['id']:>4}  {r['hint']:<12} team={r['team']!r} project={r['project']!r} {r['label']!r} {state}{limits}"
        )


@tokens_app.command("limit")
def tokens_limit(
    token_id: int = typer.Argument(..., help="Id shown by `tokens list`."),
    rpm: int | None = typer.Option(None, "--rpm", min=0, help="Requests per minute through the proxy (0 = none)."),
    tpm: int | None = typer.Option(None, "--tpm", min=0, help="Input + output tokens per minute (0 = none)."),
) -> None:
    """Set a token's rate limits; over them the proxy answers 429 with Retry-After (opt-in, none by default)."""
    from collector.proxy.tokens import set_limits

    if rpm is None and tpm is None:
        typer.echo("give --rpm and/or --tpm (0 removes a limit)", err=True)
        raise typer.Exit(2)
    if not set_limits(database(), token_id, rpm=rpm, tpm=tpm):
        typer.echo(f"no token with id {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {token_id} limits set (running proxies apply them within LLM_USAGE_PROXY_TOKEN_REFRESH_SECONDS)")


@tokens_app.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(..., help="Id shown by `tokens list`.")) -> None:
    """Revoke a token (running proxies stop attributing it within LLM_USAGE_PROXY_TOKEN_REFRESH_SECONDS)."""
    from collector.proxy.tokens import revoke_token

    if not revoke_token(database(), token_id):
        typer.echo(f"no active token with id {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {token_id} revoked")
