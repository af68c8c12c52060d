"""``llm-usage otel``: serve the OTLP/HTTP receiver (OpenTelemetry GenAI spans and token metrics)."""

from __future__ import annotations

import functools
import logging

import typer

from collector.core.settings import get_settings
from collector.db.migrate import open_database


def otel(
    port: int | None = typer.Option(None, help="Port to listen on (default LLM_USAGE_OTEL_PORT, 4318)."),
    host: str | None = typer.Option(None, help="Address to listen on (default LLM_USAGE_OTEL_HOST, 127.0.0.1)."),
    rollup_now: bool = typer.Option(
        False, "--rollup-now", help="Roll received events up into hourly usage rows now and exit (no server)."
    ),
) -> None:
    """Receive OTLP/HTTP exports (POST /v1/traces, /v1/metrics) and record their GenAI usage as source `otel`."""
    from collector.otel.receiver import OtelReceiver
    from collector.otel.rollup import rollup_with

    settings = get_settings()
    if rollup_now:
        written = rollup_with(open_database(settings), settings)
        typer.echo(f"otel: {written} usage row(s) written")
        return
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings.model_copy(
        update={"otel_port": port or settings.otel_port, "otel_host": host or settings.otel_host}
    )
    receiver = OtelReceiver(
        settings,
        engine_factory=functools.partial(open_database, settings),
        rollup_interval=settings.otel_rollup_interval_seconds,
    )
    receiver.engine = open_database(settings)  # fail at start, not at the first export
    auth = "bearer token required" if settings.otel_bearer_token else "no token (set LLM_USAGE_OTEL_BEARER_TOKEN)"
    typer.echo(
        f"otel: http://{settings.otel_host}:{settings.otel_port}/v1/traces and /v1/metrics ({auth}); "
        f"set OTEL_EXPORTER_OTLP_ENDPOINT=http://{settings.otel_host}:{settings.otel_port}"
    )
    uvicorn.run(
        receiver.app(),
        host=settings.otel_host,
        port=settings.otel_port,
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
