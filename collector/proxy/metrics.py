"""Prometheus metrics of the sidecar (``/metrics``), on a registry of its own per app.

Counters are updated once per request on the request path (a few microseconds); queue depth and
spool size are read when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Seconds; LLM calls range from milliseconds (embeddings) to minutes (long streams).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ProxyMetrics:
    """The sidecar's counters, histogram and gauges."""

    def __init__(self, queue_depth: Callable[[], float], spool_bytes: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: Label children per ``(upstream, status class, error)`` (see :meth:`observe`).
        self._children: dict[tuple[str, int, str], tuple[Any, Any, Any, Any]] = {}
        self.requests = Counter(
            "llm_proxy_requests",
            "Requests forwarded, by upstream and HTTP status class.",
            ["upstream", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "llm_proxy_errors",
            "Requests that failed: upstream 4xx/5xx, unreachable upstream, timeouts, cut streams, client gone.",
            ["upstream", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llm_proxy_request_duration_seconds",
            "Time from request to last response byte, by upstream.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttfb = Histogram(
            "llm_proxy_time_to_first_byte_seconds",
            "Time from request to the first response body byte, by upstream.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "llm_proxy_refusals",
            "Calls the proxy refused (never forwarded, never usage), by upstream and kind: "
            "rate_requests, rate_tokens, budget.",
            ["upstream", "kind"],
            registry=self.registry,
        )
        self.limit_fallbacks = Counter(
            "llm_proxy_limit_store_fallbacks",
            "Calls forwarded without a rate-limit check because the shared limit store (Redis) was unreachable.",
            registry=self.registry,
        )
        depth = Gauge("llm_proxy_queue_depth", "Events waiting in memory to be written.", registry=self.registry)
        depth.set_function(queue_depth)
        spool = Gauge(
            "llm_proxy_spool_bytes", "Bytes of events spooled while the database is down.", registry=self.registry
        )
        spool.set_function(spool_bytes)

    def observe(self, upstream: str, status: int, latency_s: float, ttfb_s: float, error: str) -> None:
        """Count one finished request.

        ``labels()`` validates and locks on every call; a call's children are looked up once per
        ``(upstream, status class, error)`` and kept (a small, fixed set: upstream names and error
        kinds come from the configuration and fixed lists, never from callers).
        """
        key = (upstream, status // 100, error)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(upstream, f"{status // 100}xx" if status else "none"),
                self.latency.labels(upstream),
                self.ttfb.labels(upstream),
                self.errors.labels(upstream, error) if error else None,
            )
        requests, latency, ttfb, errors = children
        requests.inc()
        latency.observe(latency_s)
        if ttfb_s:
            ttfb.observe(ttfb_s)
        if errors is not None:
            errors.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
