"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/metrics``, protobuf or JSON, gzip or not.

Served by ``llm-usage otel`` (default ``127.0.0.1:4318``, the OTLP/HTTP port) or mounted on the
proxy sidecar. Point an application's exporter at it with
``OTEL_EXPORTER_OTLP_ENDPOINT=http://collector-host:4318``.

Responses follow the OTLP/HTTP specification (opentelemetry-proto ``docs/specification.md``):

* success: ``200`` with an ``Export*ServiceResponse`` in the request's encoding; spans or points
  refused for their content (a broken token taxonomy, missing ids) are named in its
  ``partial_success`` and never retried by the client;
* a body that cannot be decoded: ``400``; a body over ``otel_max_body_bytes`` (before or after
  gzip): ``413``; another content type or encoding: ``415``; a missing or wrong bearer token
  (when ``otel_bearer_token`` is set): ``401`` — none of them retryable;
* the database unreachable: ``503`` with ``Retry-After``, so exporters retry later and nothing is
  lost (the export is written in full before ``200``, and a repeated export adds nothing).

Error bodies are a ``google.rpc.Status``. Every outcome is counted in ``/metrics``. Request bodies
are never logged.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry, Counter, generate_latest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from collector.core.settings import Settings, get_settings
from collector.otel.decode import (
    Counts,
    DecodeFailure,
    Policy,
    metric_points,
    parse_metrics,
    parse_traces,
    span_events,
)
from collector.otel.rollup import rollup_with
from collector.otel.store import store_points, store_spans

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_GRPC_INVALID_ARGUMENT, _GRPC_UNAUTHENTICATED, _GRPC_UNAVAILABLE, _GRPC_INTERNAL = 3, 16, 14, 13
RETRY_AFTER_SECONDS = 5


class Refused(Exception):
    """A request refused before decoding: HTTP status, reason label, message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class DatabaseUnavailable(RuntimeError):
    """The database could not be opened (the client is told to retry)."""


class ReceiverMetrics:
    """Counters of the receiver, on a registry of its own (the sidecar concatenates it)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_otel_requests", "OTLP export requests, by signal and HTTP status.", ["signal", "code"], registry=r
        )
        self.refused = Counter(
            "llm_otel_refused_requests",
            "OTLP requests refused whole: unauthorized, content_type, encoding, too_large, malformed, database.",
            ["signal", "reason"],
            registry=r,
        )
        self.spans = Counter(
            "llm_otel_spans",
            "Spans received: genai (kept), ignored (not a model call), rejected.",
            ["outcome"],
            registry=r,
        )
        self.points = Counter(
            "llm_otel_metric_points",
            "gen_ai.client.token.usage points: accepted, rejected, stale (a cumulative series went back).",
            ["outcome"],
            registry=r,
        )
        self.written = Counter(
            "llm_otel_events_written", "New events stored (a repeated export adds none).", ["signal"], registry=r
        )
        self.dropped = Counter(
            "llm_otel_dropped_attributes",
            "Attributes dropped on arrival: content (prompts, completions) or deny_list.",
            ["reason"],
            registry=r,
        )
        self.dropped_events = Counter(
            "llm_otel_dropped_span_events", "Span events dropped on arrival (they can carry content).", registry=r
        )

    def record(self, counts: Counts) -> None:
        """Count what one decoded export contained."""
        if counts.spans:
            self.spans.labels("genai").inc(counts.genai)
            self.spans.labels("ignored").inc(counts.ignored)
        if counts.rejected:
            (self.spans if counts.spans else self.points).labels("rejected").inc(counts.rejected)
        self.dropped.labels("content").inc(counts.dropped_content)
        self.dropped.labels("deny_list").inc(counts.dropped_denied)
        self.dropped_events.inc(counts.dropped_events)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


class OtelReceiver:
    """The receiver: its routes (to mount on another app) or a whole Starlette app.

    Args:
        settings: configuration (defaults to :func:`get_settings`).
        engine: a ready, migrated engine; or ``engine_factory`` to open one at first use (the
            application passes ``open_database``: this package depends only on ``collector.core``).
        rollup_interval: seconds between background rollups when served alone (None: none).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        engine_factory: Callable[[], Engine] | None = None,
        rollup_interval: float | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.policy = Policy.from_settings(self.settings)
        self.engine = engine
        self.engine_factory = engine_factory
        self.rollup_interval = rollup_interval
        self.metrics = ReceiverMetrics()
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()  # SQLite has one writer; PostgreSQL needs none
        token = self.settings.otel_bearer_token
        self._token = token.get_secret_value().encode() if token is not None and token.get_secret_value() else None
        self._stop = threading.Event()

    # -- assembly ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The two OTLP routes, for mounting on another Starlette app (the sidecar)."""
        return [
            Route("/v1/traces", self.traces, methods=["POST"]),
            Route("/v1/metrics", self.metrics_export, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        """A standalone app: the OTLP routes, ``/healthz`` and ``/metrics``, rolling up in the background."""
        return Starlette(
            routes=[
                *self.routes(),
                Route("/healthz", self.healthz),
                Route("/metrics", self.metrics_endpoint),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Roll events up every ``rollup_interval`` seconds in a thread, until shutdown."""
        thread = None
        if self.rollup_interval:
            self._stop.clear()
            thread = threading.Thread(target=self._rollup_loop, name="otel-rollup", daemon=True)
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            if thread is not None:
                thread.join(30)

    def _rollup_loop(self) -> None:
        assert self.rollup_interval is not None
        while not self._stop.wait(self.rollup_interval):
            self.rollup_once()

    def rollup_once(self) -> int:
        """Roll up and purge now; failures are logged (the next run catches up)."""
        try:
            with self._write_lock:
                return rollup_with(self._engine(), self.settings)
        except Exception as exc:  # noqa: BLE001  (keep serving; events stay until the next run)
            log.warning("OTLP rollup failed (%s); retrying at the next interval", type(exc).__name__)
            return 0

    def _engine(self) -> Engine:
        if self.engine is None:
            with self._open_lock:
                if self.engine is None:
                    if self.engine_factory is None:
                        raise DatabaseUnavailable("the OTLP receiver has no database")
                    try:
                        self.engine = self.engine_factory()
                    except Exception as exc:
                        raise DatabaseUnavailable(type(exc).__name__) from exc
        return self.engine

    # -- requests ---------------------------------------------------------------------------------

    async def traces(self, request: Request) -> Response:
        """``POST /v1/traces``."""
        return await self._export(request, "traces")

    async def metrics_export(self, request: Request) -> Response:
        """``POST /v1/metrics``."""
        return await self._export(request, "metrics")

    async def _export(self, request: Request, signal: str) -> Response:
        json_body = False
        try:
            self._authorize(request)
            json_body = _content_type(request)
            body = await _read_body(request, self.settings.otel_max_body_bytes)
            result = await run_in_threadpool(self._process, signal, body, json_body)
        except Refused as exc:
            self.metrics.refused.labels(signal, exc.reason).inc()
            return self._status(signal, exc.status, exc.message, json_body)
        response = _response(signal, *result)
        self.metrics.requests.labels(signal, "200").inc()
        return _encode(response, 200, json_body)

    def _status(self, signal: str, status: int, message: str, json_body: bool) -> Response:
        self.metrics.requests.labels(signal, str(status)).inc()
        code = {
            400: _GRPC_INVALID_ARGUMENT,
            401: _GRPC_UNAUTHENTICATED,
            413: _GRPC_INVALID_ARGUMENT,
            415: _GRPC_INVALID_ARGUMENT,
            503: _GRPC_UNAVAILABLE,
        }.get(status, _GRPC_INTERNAL)
        response = _encode(Status(code=code, message=message), status, json_body)
        if status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    def _authorize(self, request: Request) -> None:
        if self._token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            raise Refused(401, "unauthorized", "missing or wrong bearer token")

    def _process(self, signal: str, body: bytes, json_body: bool) -> tuple[int, str]:
        """Decode and store one export (in a worker thread); returns ``(rejected, message)``."""
        now = datetime.now(UTC)
        counts = Counts()
        try:
            if signal == "traces":
                events = list(span_events(parse_traces(body, json_body=json_body), self.policy, now, counts))
                stale = 0
                written = self._write(lambda conn: store_spans(conn, events, now)) if events else 0
            else:
                points = list(metric_points(parse_metrics(body, json_body=json_body), self.policy, now, counts))
                written, stale = self._write(lambda conn: store_points(conn, points, now)) if points else (0, 0)
        except DecodeFailure as exc:
            raise Refused(400, "malformed", str(exc)) from None
        self.metrics.record(counts)
        if signal == "metrics":
            self.metrics.points.labels("accepted").inc(counts.points - counts.rejected - stale)
            self.metrics.points.labels("stale").inc(stale)
        self.metrics.written.labels("span" if signal == "traces" else "metric").inc(written)
        if stale:
            counts.reasons["a cumulative series went back without a new start time"] = stale
        return counts.rejected + stale, counts.message()

    def _write(self, work: Callable[[Any], Any]) -> Any:
        try:
            engine = self._engine()
            lock = self._write_lock if engine.dialect.name == "sqlite" else contextlib.nullcontext()
            with lock, engine.begin() as conn:
                return work(conn)
        except (DBAPIError, OSError, DatabaseUnavailable) as exc:
            log.warning("OTLP export not stored (%s); the client will retry", type(exc).__name__)
            raise Refused(503, "database", "storage unavailable, retry later") from None

    # -- status -------------------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        """Liveness, and whether the database has been opened."""
        return JSONResponse({"status": "ok", "database": "open" if self.engine is not None else "not opened"})

    async def metrics_endpoint(self, _request: Request) -> Response:
        """Prometheus text exposition of the receiver's counters."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _content_type(request: Request) -> bool:
    """True for JSON, False for protobuf; other types or encodings are refused (415)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (PROTOBUF, JSON):
        raise Refused(415, "content_type", f"content type must be {PROTOBUF} or {JSON}")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise Refused(415, "encoding", "content encoding must be gzip or none")
    return ctype == JSON


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, un-gzipped, refused with 413 as soon as it passes ``limit`` bytes (either side)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").strip().lower() != "gzip":
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Refused(400, "malformed", "the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise Refused(413, "too_large", f"request body over {limit} bytes once decompressed")
    if not inflater.eof:
        raise Refused(400, "malformed", "the gzip body is truncated")
    return out


def _response(signal: str, rejected: int, message: str) -> Message:
    if signal == "traces":
        traces = ExportTraceServiceResponse()
        if rejected:
            traces.partial_success.rejected_spans = rejected
            traces.partial_success.error_message = message
        return traces
    metrics = ExportMetricsServiceResponse()
    if rejected:
        metrics.partial_success.rejected_data_points = rejected
        metrics.partial_success.error_message = message
    return metrics


def _encode(message: Message, status: int, json_body: bool) -> Response:
    if json_body:
        return Response(json_format.MessageToJson(message, indent=None), status_code=status, media_type=JSON)
    return Response(message.SerializeToString(), status_code=status, media_type=PROTOBUF)
