"""``llm-usage metrics``: serve the Prometheus spend metrics (cost, tokens, budgets, freshness)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import typer

from collector.core.settings import Settings, get_settings
from collector.db.migrate import open_database


def spend_renderer(settings: Settings) -> Callable[[], bytes]:
    """A callable returning the spend metrics' exposition (for the sidecar's ``/metrics``)."""
    from collector.metrics.spend import SpendCollector, registry_for, render

    registry = registry_for(SpendCollector(functools.partial(open_database, settings), settings))
    return functools.partial(render, registry)


def metrics(
    port: int | None = typer.Option(None, help="Port to listen on (default LLM_USAGE_METRICS_PORT, 9464)."),
    host: str | None = typer.Option(None, help="Address to listen on (default LLM_USAGE_METRICS_HOST, 127.0.0.1)."),
) -> None:
    """Serve /metrics for Prometheus: spend and tokens today and month to date, budgets, data freshness."""
    import uvicorn

    from collector.metrics.server import metrics_app
    from collector.metrics.spend import SpendCollector, registry_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings = settings.model_copy(
        update={"metrics_port": port or settings.metrics_port, "metrics_host": host or settings.metrics_host}
    )
    engine = open_database(settings)
    registry = registry_for(SpendCollector(lambda: engine, settings))
    typer.echo(f"metrics: http://{settings.metrics_host}:{settings.metrics_port}/metrics")
    uvicorn.run(
        metrics_app(registry, settings),
        host=settings.metrics_host,
        port=settings.metrics_port,
        access_log=False,
        server_header=False,
        log_level="info",
    )
