"""Live-traffic health of the proxy (the Proxy page): request rate, latency percentiles, errors.

Read from the proxy's raw ``proxy_events`` (not the hourly usage rows), because latency and
status are per call and the rollup keeps neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from collector.proxy.models import PROXY_EVENTS, PROXY_REFUSALS


@dataclass
class ProxyStats:
    """Live-traffic health of the proxy over a recent window (from its raw ``proxy_events``)."""

    requests: int = 0
    seconds: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    errors: int = 0

    @property
    def per_second(self) -> float:
        """Requests per second over the window."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float | None:
        """Share of calls that failed: an upstream status >= 400, or no response at all."""
        return self.errors / self.requests if self.requests else None


def proxy_stats(engine: Engine, since: datetime, until: datetime) -> ProxyStats:
    """Requests, latency p50/p95 and errors of the proxy's events with ``ts`` in ``[since, until)``.

    Reads through the ``ts`` index only. Percentiles use ``ORDER BY ... LIMIT 1 OFFSET n`` so they
    work on SQLite and PostgreSQL alike and never load the events into memory. A call counts as an
    error when it ended with a status >= 400 (the proxy's own 502 when the upstream could not
    answer included) or the upstream cut or timed out a stream (``error`` ``upstream_*``,
    collector/proxy/forward.py); a client that hung up is not an error of the service.
    """
    e = PROXY_EVENTS.c
    window = (e.ts >= since, e.ts < until)
    out = ProxyStats(seconds=int((until - since).total_seconds()))
    with engine.connect() as conn:
        out.requests = int(conn.execute(select(func.count()).select_from(PROXY_EVENTS).where(*window)).scalar_one())
        if not out.requests:
            return out
        failed = or_(e.status >= 400, e.error.like("upstream%"))
        out.errors = int(
            conn.execute(select(func.count()).select_from(PROXY_EVENTS).where(*window, failed)).scalar_one()
        )
        for q, attr in ((0.5, "p50_ms"), (0.95, "p95_ms")):
            offset = min(out.requests - 1, int(q * out.requests))
            value = conn.execute(
                select(e.latency_ms).where(*window).order_by(e.latency_ms).limit(1).offset(offset)
            ).scalar()
            setattr(out, attr, float(value) if value is not None else None)
    return out


def refusal_counts(engine: Engine, since: datetime, until: datetime) -> list[dict[str, object]]:
    """Calls the proxy refused in ``[since, until)``, counted by kind, budget and team (most first).

    Refusals (rate limits, budget caps) are events of their own, never usage rows: a refused
    call was not forwarded and cost nothing.
    """
    r = PROXY_REFUSALS.c
    n = func.count().label("refused")
    stmt = (
        select(r.kind, r.budget_name, r.team, n)
        .where(r.ts >= since, r.ts < until)
        .group_by(r.kind, r.budget_name, r.team)
        .order_by(n.desc(), r.kind, r.budget_name, r.team)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


__all__ = ["ProxyStats", "proxy_stats", "refusal_counts"]
