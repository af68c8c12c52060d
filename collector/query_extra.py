"""Dashboard queries that :mod:`collector.query` does not offer, in the same Core-expression style.

Kept apart from ``query.py`` (which the CLI's ``report``/``status`` own) so the two never edit
one file; the dashboard's ``queries`` module caches these like the shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Engine

from collector.proxy.models import PROXY_EVENTS
from collector.query import Freshness
from collector.store import USAGE, USAGE_DAILY


def freshness_since(engine: Engine, since: datetime) -> list[Freshness]:
    """:func:`collector.query.freshness` limited to groups with data on or after ``since``.

    The full version groups the whole daily rollup (a scan of every day ever recorded); pages that
    render on every visit read only the recent days through the ``day`` index. A source whose
    newest data is older than ``since`` is simply absent, which the page reports as stale.
    """
    d = USAGE_DAILY.c
    u = USAGE.c
    keys_d = (d.source, d.provider, d.account, d.kind)
    with engine.connect() as conn:
        newest = conn.execute(
            select(*keys_d, func.max(d.day).label("day")).where(d.day >= since).group_by(*keys_d)
        ).all()
        if not newest:
            return []
        oldest = min(r.day for r in newest)
        keys_u = (u.source, u.provider, u.account, u.kind)
        rows = conn.execute(
            select(*keys_u, func.max(u.bucket_end).label("end"), func.max(u.updated_at).label("ingested"))
            .where(u.bucket_start >= oldest)
            .group_by(*keys_u)
        ).all()
    out = [Freshness(r.source, r.provider, r.account, r.kind, r.end, r.ingested) for r in rows]
    out.sort(key=lambda f: (f.source, f.provider, f.account, f.kind))
    return out


#: Report dimension -> column, for :func:`dimension_values` (the filterable ones).
FILTER_COLUMNS: dict[str, str] = {
    "provider": "provider",
    "account": "account",
    "model": "model",
    "project": "project",
    "api_key": "api_key_id",
    "team": "team",
}


def dimension_values(engine: Engine, since: datetime, until: datetime) -> dict[str, list[str]]:
    """The values each filterable dimension takes in ``[since, until)`` (for filter pickers).

    One ``GROUP BY`` of the key columns over the window's days in the daily rollup, with no sums
    and no money basis: much cheaper than a report grouped by the same columns.
    """
    d = USAGE_DAILY.c
    cols = [d[c] for c in FILTER_COLUMNS.values()]
    stmt = select(*cols).where(d.day >= since, d.day < until).group_by(*cols)
    values: dict[str, set[str]] = {name: set() for name in FILTER_COLUMNS}
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            for name, value in zip(FILTER_COLUMNS, row, strict=True):
                values[name].add(value)
    return {name: sorted(v) for name, v in values.items()}


def has_source(engine: Engine, source: str, since: datetime, until: datetime) -> bool:
    """True when any usage row of ``source`` falls in ``[since, until)`` (an index range, stops early)."""
    d = USAGE_DAILY.c
    stmt = select(d.day).where(d.day >= since, d.day < until, d.source == source).limit(1)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


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
