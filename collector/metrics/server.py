"""The small ``/metrics`` server of ``llm-usage metrics``: spend gauges, an optional bearer token.

It runs beside the dashboard (default ``127.0.0.1:9464``), separate from it so a Prometheus
scrape never waits behind a page render. Scrapes are computed in a worker thread and cached
(:class:`collector.metrics.spend.SpendCollector`).
"""

from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from collector.core.settings import Settings
from collector.metrics.spend import render


def metrics_app(registry: CollectorRegistry, settings: Settings) -> Starlette:
    """``/metrics`` (Prometheus text) and ``/healthz``."""
    secret = settings.metrics_bearer_token
    token = secret.get_secret_value().encode() if secret is not None and secret.get_secret_value() else None

    async def metrics(request: Request) -> Response:
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
                return PlainTextResponse("unauthorized\n", status_code=401, headers={"WWW-Authenticate": "Bearer"})
        body = await run_in_threadpool(render, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])
