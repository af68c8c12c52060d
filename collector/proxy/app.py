"""The sidecar's ASGI app: Starlette for ``/healthz``, ``/metrics`` and the lifespan.

Proxied routes are dispatched ahead of Starlette's router, straight to
:class:`~collector.proxy.forward.Forwarder` (its routing and request objects cost more than the
whole forwarding budget).

Routes:

* ``/openai/v1/*`` -> ``proxy_openai_url`` (default ``https://api.openai.com/v1``)
* ``/anthropic/v1/*`` -> ``proxy_anthropic_url``
* ``/u/<name>/v1/*`` -> ``proxy_upstreams[name]``, any OpenAI-compatible API (OpenRouter, Groq,
  xAI, a local vLLM ...), recorded with provider ``<name>``.
* ``/google/v1beta/*``, ``/google/v1/*`` (and ``v1alpha``) -> ``proxy_google_url``, the native
  Gemini API; ``/vertex/v1/*``, ``/vertex/v1beta1/*`` -> ``proxy_vertex_url``, Vertex AI (OAuth
  bearer passed through). Both are recorded with provider ``google``; the version stays in the
  forwarded path, so the upstream setting is a bare host.

Clients keep their own API keys: set ``OPENAI_BASE_URL=http://sidecar:8787/openai/v1``,
``Anthropic(base_url="http://sidecar:8787/anthropic")`` (the Anthropic SDK adds ``/v1``) or
``genai.Client(http_options={"base_url": "http://sidecar:8787/google"})`` (it adds the version).

The database is optional at run time: if it cannot be opened at start, the sidecar serves
traffic anyway, spooling events, and keeps trying.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from http.cookiejar import CookieJar
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from collector.core.http import NODELAY, make_async_client
from collector.core.settings import Settings, get_settings
from collector.db.migrate import upgrade
from collector.proxy.committer import WriterProcess, writer_engine
from collector.proxy.forward import Forwarder, Upstream, UpstreamCut, check_path
from collector.proxy.limits import BudgetGate, CapLoader, Limiter, RefusalLog
from collector.proxy.metrics import CONTENT_TYPE, ProxyMetrics
from collector.proxy.recorder import Recorder
from collector.proxy.rollup import rollup_and_purge
from collector.proxy.server import quiet_library_loggers
from collector.proxy.spool import Spool
from collector.proxy.tokens import Fingerprinter, TokenInfo, load_active, load_salt
from collector.proxy.transport import FastTransport

log = logging.getLogger(__name__)


class _NoCookies(CookieJar):
    """A cookie jar that stores and sends nothing: the sidecar is shared by many callers."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return

    def add_cookie_header(self, request: Any) -> None:
        return


def upstreams_from(settings: Settings) -> dict[str, Upstream]:
    """The routing table: built-in OpenAI and Anthropic, plus named OpenAI-compatible upstreams."""
    table = {
        "openai": Upstream("openai", "openai", "openai", settings.proxy_openai_url.rstrip("/")),
        "anthropic": Upstream("anthropic", "anthropic", "anthropic", settings.proxy_anthropic_url.rstrip("/")),
        "google": Upstream("google", "google", "google", settings.proxy_google_url.rstrip("/")),
        "vertex": Upstream("vertex", "google", "google", settings.proxy_vertex_url.rstrip("/")),
    }
    for name, url in settings.proxy_upstreams.items():
        table[f"u/{name}"] = Upstream(name, name, "openai", url.rstrip("/"))
    return table


#: The cycle collector's thresholds while the sidecar serves. Calls free what they allocate by
#: reference counting, but journaled events wait in memory for the writer's round and its batches
#: build thousands of rows, so with Python's default 700 a young-generation pass came every few
#: hundred calls, each a pause of up to several milliseconds on the event loop (same-run count
#: over ~7,000 calls at 16 connections: 19 young and 2 middle passes; none at 10,000).
GC_THRESHOLD = (10_000, 10, 10)

#: Versioned prefixes of the Google routes: ``(route prefix, routing key, API versions)``.
_GOOGLE_ROUTES = (
    ("/google/", "google", ("v1beta", "v1", "v1alpha")),
    ("/vertex/", "vertex", ("v1", "v1beta1")),
)


class ProxyApp:
    """The ASGI callable served by uvicorn.

    Args:
        settings: configuration (defaults to :func:`get_settings`).
        engine: a ready engine (tests); default opens and migrates the configured database.
        transport: an httpx transport for the upstream client (tests); default is the network.
        retry_seconds: how often a failed database is probed again.
        extra_routes: more Starlette routes (the application mounts the OTLP receiver here; the
            sidecar itself imports nothing but ``collector.core``).
        extra_metrics: more Prometheus expositions appended to ``/metrics`` (spend metrics, the
            receiver's counters); they run in a worker thread, never on the event loop.
        extra_periodic: more ``(seconds, fn(engine))`` jobs for the recorder's writer thread.
        cap_loader: reads the enforced budgets and their spend (the application's finance layer
            supplies it); None = no budget caps.
        clock: the rate limiter's clock (tests); default ``time.time``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        engine: Engine | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_seconds: float = 5.0,
        extra_routes: Sequence[BaseRoute] = (),
        extra_metrics: Sequence[Callable[[], bytes]] = (),
        extra_periodic: Sequence[tuple[float, Callable[[Engine], Any]]] = (),
        cap_loader: CapLoader | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.routes = upstreams_from(self.settings)
        self.engine = engine
        self.transport = transport
        self.retry_seconds = retry_seconds
        self.token_map: dict[str, TokenInfo] = {}
        self.spool = Spool(
            self.settings.resolved_spool_dir(),
            fsync_seconds=self.settings.proxy_spool_fsync_seconds,
            slotted=self.settings.proxy_workers > 1,  # one of several workers: a w<k> folder of its own
        )
        self.recorder: Recorder | None = None
        self.forwarder: Forwarder | None = None
        self.metrics = ProxyMetrics(self._queue_depth, self.spool.size_bytes)
        self.fingerprint = Fingerprinter(load_salt(self.settings))
        self.extra_metrics = tuple(extra_metrics)
        self.extra_periodic = list(extra_periodic)
        self.gate = BudgetGate(cap_loader)
        self.refusals = RefusalLog()
        self.clock = clock
        self.limiter: Limiter | None = None
        self.starlette = Starlette(
            routes=[Route("/healthz", self.healthz), Route("/metrics", self.metrics_endpoint), *extra_routes],
            lifespan=self.lifespan,
        )

    def _queue_depth(self) -> float:
        return float(self.recorder.depth()) if self.recorder else 0.0

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.forwarder is not None:
            path: str = scope["path"]
            match = self.match(path)
            if match is not None:
                if problem := check_path(path, scope.get("raw_path")):
                    await self.forwarder.refuse(send, 400, "invalid_path", problem)
                    return
                upstream, rest = match
                if upstream is None:
                    await self.forwarder.refuse(
                        send, 404, "unknown_upstream", "no upstream with that name (see LLM_USAGE_PROXY_UPSTREAMS)"
                    )
                    return
                await self._forward(scope, receive, send, upstream, rest)
                return
        await self.starlette(scope, receive, send)

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any, upstream: Upstream, rest: str) -> None:
        """Forward, logging an unexpected failure by its type and path only (never query, headers, body)."""
        assert self.forwarder is not None
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.forwarder.handle(scope, receive, tracked, upstream, rest)
        except UpstreamCut:
            raise  # uvicorn drops the client's connection, as the upstream dropped ours
        except Exception as exc:  # noqa: BLE001  (logged by type and path only; the client gets a 502)
            log.error("proxy: %s while forwarding %s %s", type(exc).__name__, scope["method"], scope["path"][:200])
            if started:
                raise UpstreamCut("forwarding failed mid-response") from None
            await self.forwarder.refuse(send, 502, "proxy_error", "the request could not be forwarded")

    def match(self, path: str) -> tuple[Upstream | None, str] | None:
        """``(upstream, rest-after-/v1)`` for a proxied path; ``(None, name)`` for an unknown name."""
        if path.startswith("/openai/v1"):
            key, rest = "openai", path[10:]
        elif path.startswith("/anthropic/v1"):
            key, rest = "anthropic", path[13:]
        elif path.startswith(("/google/", "/vertex/")):
            return self._match_google(path)
        elif path.startswith("/u/"):
            name, _, tail = path[3:].partition("/")
            if not (tail == "v1" or tail.startswith("v1/")):
                return None
            key, rest = f"u/{name}", tail[2:]
            if key not in self.routes:
                return None, name
        else:
            return None
        if rest and rest[0] != "/":
            return None
        return self.routes[key], rest

    def _match_google(self, path: str) -> tuple[Upstream | None, str] | None:
        """Google routes keep their API version in the forwarded path (``/v1beta/models/...``)."""
        for prefix, key, versions in _GOOGLE_ROUTES:
            if path.startswith(prefix):
                rest = path[len(prefix) - 1 :]
                version = rest[1:].partition("/")[0]
                if version in versions:
                    return self.routes[key], rest
        return None

    # -- lifespan ------------------------------------------------------------------------------

    def _open_engine(self) -> Engine:
        """The configured database, migrated; SQLite without a pool, so every batch reopens the file.

        A batch every half second costs nothing to reopen, and a replaced or repaired database
        file is picked up at once instead of through a stale pooled handle.
        """
        engine = writer_engine(self.settings.resolved_database_url())
        upgrade(engine)
        return engine

    def _committer(self) -> WriterProcess | None:
        """The writer's child process, when enabled and the database is one another process can open.

        An injected engine (tests, embedding) is reached through its URL; an in-memory SQLite
        database exists only in this process, so it keeps the writer thread.
        """
        if not self.settings.proxy_writer_process:
            return None
        if self.engine is not None:
            url = self.engine.url
            if url.get_backend_name() == "sqlite" and (
                url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
            ):
                return None
            target = url.render_as_string(hide_password=False)
        else:
            target = self.settings.resolved_database_url()
        return WriterProcess(target, self.settings.proxy_batch_size)

    def _reload_tokens(self, engine: Engine) -> None:
        self.token_map = load_active(engine)

    def _rollup(self, engine: Engine) -> None:
        rollup_and_purge(engine, self.settings.proxy_retention_days)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Start the recorder and the upstream client; on shutdown commit every recorded event.

        uvicorn runs the shutdown half only after in-flight requests finished (SIGTERM, Ctrl-C),
        so every call that got a response has been journaled by then; ``Recorder.stop`` commits
        them, or leaves them in the spool for the next start if the database is down.
        """
        s = self.settings
        quiet_library_loggers()  # the HTTP client logs full URLs, query strings (keys) included
        # The recorder's writer thread shares the GIL with the event loop. With the default 5 ms
        # switch interval a database batch could hold a request up to 5 ms; 0.5 ms bounds that.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        if self.engine is None:
            try:
                self.engine = self._open_engine()
            except Exception as exc:  # noqa: BLE001  (serve traffic without a database)
                log.warning("proxy database unavailable at start (%s); spooling until it is back", type(exc).__name__)
        if self.engine is not None:
            try:
                self._reload_tokens(self.engine)
            except Exception as exc:  # noqa: BLE001
                log.warning("monitor tokens not loaded (%s)", type(exc).__name__)
        committer = self._committer()
        # The rollup and purge are database work only: with a writer process they run there too.
        rollup_job = committer.offloaded_rollup(s.proxy_retention_days) if committer is not None else self._rollup
        self.recorder = Recorder(
            self.engine,
            self.spool,
            queue_size=s.proxy_queue_size,
            batch_size=s.proxy_batch_size,
            interval=s.proxy_batch_interval_seconds,
            retry_seconds=self.retry_seconds,
            periodic=[
                (s.proxy_token_refresh_seconds, self._reload_tokens),
                (s.proxy_rollup_interval_seconds, rollup_job),
                (s.proxy_budget_refresh_seconds, self.gate.refresh),
                (s.proxy_batch_interval_seconds, self.refusals.store),
                *self.extra_periodic,
            ],
            engine_factory=self._open_engine,
            on_costs=self.gate.spent,
            committer=committer,
        )
        if self.engine is not None and self.gate.loader is not None:
            try:
                self.gate.refresh(self.engine)  # caps hold from the first call, not the first refresh
            except Exception as exc:  # noqa: BLE001
                log.warning("enforced budgets not loaded (%s)", type(exc).__name__)
        self.recorder.start()  # raises SpoolBusyError if another process holds the spool folder
        transport = self.transport
        if transport is None and s.proxy_fast_transport:
            limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
            fallback = httpx.AsyncHTTPTransport(limits=limits, socket_options=NODELAY)
            transport = FastTransport(read_timeout=s.proxy_upstream_timeout_seconds, fallback=fallback)
        client = make_async_client(
            s.model_copy(update={"http_timeout_seconds": s.proxy_upstream_timeout_seconds}), transport=transport
        )
        client.headers = httpx.Headers()  # forward the caller's headers only, add none of ours
        client.cookies = _NoCookies()  # never keep one caller's cookies and send them for another
        self.limiter = Limiter(
            self.metrics,
            redis_url=s.redis_url.get_secret_value() if s.redis_url else None,
            prefix=s.redis_key_prefix,
            clock=self.clock or time.time,
        )
        self.forwarder = Forwarder(
            client,
            self.recorder,
            self.metrics,
            lambda: self.token_map,
            self.fingerprint,
            include_usage=s.proxy_include_usage,
            require_token=s.proxy_require_monitor_token,
            body_timeout=s.proxy_body_timeout_seconds or None,
            buffer_budget=s.proxy_max_buffered_bytes,
            limiter=self.limiter,
            gate=self.gate,
            refusals=self.refusals,
            fast=transport if isinstance(transport, FastTransport) else None,
        )
        # Long-lived start-up objects (price table, SQLAlchemy, SDK-sized imports) never become
        # garbage; freezing them keeps the collector's full passes, and their pauses, short.
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLD)
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            self.forwarder = None
            await client.aclose()
            await self.limiter.aclose()
            self.recorder.stop()
            self._store_refusals()

    def _store_refusals(self) -> None:
        """Store the refusals noted since the writer's last round (on shutdown)."""
        if self.engine is None or not self.refusals.pending:
            return
        try:
            self.refusals.store(self.engine)
        except Exception as exc:  # noqa: BLE001
            log.warning("%d proxy refusal(s) not stored (%s)", len(self.refusals.pending), type(exc).__name__)

    # -- Starlette routes -----------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        """Liveness plus the recorder's state (database up, queue depth, spooled bytes)."""
        recorder = self.recorder
        return JSONResponse(
            {
                "status": "ok",
                "database": "up" if recorder is not None and recorder.db_ok else "down",
                "queue_depth": recorder.depth() if recorder else 0,
                "spool_bytes": self.spool.size_bytes(),
                # With --workers each process answers for itself: its slot (journal w<k>) and pid.
                "worker": self.spool.slot,
                "pid": os.getpid(),
                # Names only: an upstream URL may carry credentials, and this page needs no sign-in.
                "upstreams": sorted(u.name for u in self.routes.values()),
            }
        )

    async def metrics_endpoint(self, _request: Request) -> Response:
        """Prometheus text exposition: the sidecar's own metrics, then the extra ones (in a thread)."""
        body = self.metrics.render()
        if self.extra_metrics:
            body += await run_in_threadpool(lambda: b"".join(render() for render in self.extra_metrics))
        return Response(body, media_type=CONTENT_TYPE)


def create_app() -> ProxyApp:
    """Factory for ``uvicorn --factory collector.proxy.app:create_app``."""
    return ProxyApp()
