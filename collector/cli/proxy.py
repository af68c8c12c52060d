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
) -> None:
    """Run the proxy sidecar: forwards LLM API calls unchanged and records their usage."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from collector.proxy.app import ProxyApp
    from collector.proxy.server import quiet_library_loggers, uvicorn_options

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_library_loggers()
    settings = get_settings()
    settings = settings.model_copy(
        update={
            "proxy_port": settings.proxy_port if port is None else port,  # 0: any free port (logged by uvicorn)
            "proxy_host": host or settings.proxy_host,
        }
    )
    app = ProxyApp(settings, **sidecar_extras(settings))
    typer.echo(
        f"proxy: http://{settings.proxy_host}:{settings.proxy_port}  routes: "
        + ", ".join(f"/{k}/v1 -> {mask_url(u.base_url)}" for k, u in app.routes.items())
    )
    uvicorn.run(app, **uvicorn_options(settings))


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
