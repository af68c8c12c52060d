"""Writing decoded OTLP events: priced per call, inserted exactly once, cumulative series turned into increments.

Spans are priced here, one call at a time, through :func:`collector.core.pricing.estimate_request`
(long-context tiers apply to a single request, design.md "Pricing"). Metric increments are sums
of many calls, so they are left unpriced here and priced at base rates by the one ingest path
when they are rolled up.

A cumulative point (the OpenTelemetry SDKs' default) repeats everything since its start time.
``otel_series`` keeps each series' last point, so an export adds only what grew since then; a
point no newer than the last one (a retried or reordered export) adds nothing. Delta points are
increments already. Either way the event's id is derived from the point, and inserts are
``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from collector.core.pricing import PRICE_VERSION, estimate_request
from collector.otel.decode import Point, event_id, hour_of, time_of
from collector.otel.models import NEW, OTEL_EVENTS, OTEL_SERIES

log = logging.getLogger(__name__)

_EVENT_COLUMNS = frozenset(c.name for c in OTEL_EVENTS.columns)
#: What an event that does not say otherwise holds (metric increments carry no cache or reasoning split).
_DEFAULTS: dict[str, Any] = {
    c.name: (0 if c.type.python_type is int else "") for c in OTEL_EVENTS.columns if c.name != "cost"
} | {"cost": None}


def price(event: dict[str, Any]) -> tuple[Decimal | None, str, str]:
    """``(cost, basis, price_version)`` of one model call; unknown model or usage is ``unpriced``."""
    if not event.get("usage_known") or not event.get("model"):
        return None, "unpriced", ""
    try:
        cost = estimate_request(
            event["provider"],
            event["model"],
            event["ts"],
            input_tokens=event["input_tokens"],
            cache_read_tokens=event["cache_read_tokens"],
            cache_write_5m_tokens=event["cache_write_5m_tokens"],
            cache_write_1h_tokens=event["cache_write_1h_tokens"],
            output_tokens=event["output_tokens"],
        )
    except Exception:  # noqa: BLE001  (a pricing bug must not lose the call)
        log.warning("pricing failed for an OTLP span's model; recorded unpriced")
        cost = None
    if cost is None:
        return None, "unpriced", ""
    return cost, "estimated", PRICE_VERSION


class _Inserter:
    """``INSERT ... ON CONFLICT (id) DO NOTHING`` compiled once per dialect, run through the driver.

    Plain tuples through the driver's ``executemany`` (as the proxy's recorder does): SQLAlchemy's
    per-row processing cost more than decoding the spans (the receiver benchmark). Values are
    converted by the column types' own ``fast_bind`` converters; both drivers report the rows
    each execution inserted, and a duplicate id inserts none.
    """

    def __init__(self, dialect: Dialect) -> None:
        insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
        columns = [c.name for c in OTEL_EVENTS.columns]
        stmt = insert(OTEL_EVENTS).values({c: bindparam(c) for c in columns})
        compiled = stmt.on_conflict_do_nothing(index_elements=["id"]).compile(dialect=dialect)
        self.sql = str(compiled)
        self.names = [str(p) for p in (compiled.positiontup or [])] if compiled.positional else columns
        self.positional = compiled.positional
        fast = {c.name: getattr(c.type, "fast_bind", lambda _d: None)(dialect) for c in OTEL_EVENTS.columns}
        self.converters = [(n, fast[n]) for n in self.names]

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            values = [row[n] if f is None or row[n] is None else f(row[n]) for n, f in self.converters]
            out.append(tuple(values) if self.positional else dict(zip(self.names, values, strict=True)))
        return out


_INSERTERS: dict[str, _Inserter] = {}


def insert_events(conn: Connection, events: Iterable[dict[str, Any]], now: datetime) -> int:
    """Insert events (duplicates by id are skipped); returns how many were new."""
    rows = [
        _DEFAULTS
        | {c: v for c, v in e.items() if c in _EVENT_COLUMNS and v is not None}
        | {"state": NEW, "ingested_at": now}
        for e in events
    ]
    if not rows:
        return 0
    inserter = _INSERTERS.get(conn.dialect.name)
    if inserter is None:
        inserter = _INSERTERS[conn.dialect.name] = _Inserter(conn.dialect)
    result = conn.exec_driver_sql(inserter.sql, inserter.params(rows))
    return max(result.rowcount or 0, 0)


def priced_spans(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Span events with their estimate (or ``unpriced``)."""
    out = []
    for event in events:
        cost, basis, version = price(event)
        out.append({**event, "cost": cost, "basis": basis, "price_version": version})
    return out


def store_spans(conn: Connection, events: Iterable[dict[str, Any]], now: datetime | None = None) -> int:
    """Price and insert span events in the caller's transaction; returns the new ones' count."""
    return insert_events(conn, priced_spans(events), now or datetime.now(UTC))


# -- metric points --------------------------------------------------------------------------------


@dataclass
class _Last:
    time_ns: int
    total: int
    calls: int


def _load_series(conn: Connection, keys: list[str]) -> dict[str, _Last]:
    s = OTEL_SERIES.c
    stmt = select(s.key, s.last_time_ns, s.total, s.calls).where(s.key.in_(bindparam("keys", expanding=True)))
    out: dict[str, _Last] = {}
    for i in range(0, len(keys), 500):
        for r in conn.execute(stmt, {"keys": keys[i : i + 500]}):
            out[r.key] = _Last(int(r.last_time_ns), int(r.total), int(r.calls))
    return out


def _save_series(conn: Connection, changed: dict[str, _Last], now: datetime) -> None:
    if not changed:
        return
    insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    stmt = insert(OTEL_SERIES)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "last_time_ns": stmt.excluded.last_time_ns,
            "total": stmt.excluded.total,
            "calls": stmt.excluded.calls,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    conn.execute(
        stmt,
        [
            {"key": k, "last_time_ns": v.time_ns, "total": v.total, "calls": v.calls, "updated_at": now}
            for k, v in changed.items()
        ],
    )


def increments(conn: Connection, points: list[Point], now: datetime) -> tuple[list[dict[str, Any]], int]:
    """Events for what each point adds, and how many cumulative points were out of order or shrank.

    Points of one group (the same calls' input and output series) at one time become one event:
    ``requests`` is the number of calls of the input series (else of the output series).
    """
    if conn.dialect.name == "postgresql":  # replicas: one series update at a time
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('otel_series'))"))
    cumulative = sorted({p.series for p in points if p.cumulative})
    last = _load_series(conn, cumulative)
    changed: dict[str, _Last] = {}
    grouped: dict[tuple[str, int], dict[str, Any]] = {}
    stale = 0
    for p in sorted(points, key=lambda p: p.time_ns):
        if p.cumulative:
            prev = changed.get(p.series) or last.get(p.series)
            if prev is not None and p.time_ns <= prev.time_ns:
                continue  # already counted (a retry), or older than what was counted
            base = prev or _Last(p.start_ns, 0, 0)
            added, calls = p.total - base.total, p.calls - base.calls
            if added < 0 or calls < 0:
                stale += 1  # a cumulative series never shrinks without a new start time
                continue
            window_start = base.time_ns or p.start_ns or p.time_ns
            changed[p.series] = _Last(p.time_ns, p.total, p.calls)
        else:
            added, calls, window_start = p.total, p.calls, p.start_ns or p.time_ns
        if added == 0 and calls == 0:
            continue
        key = (p.group, p.time_ns)
        event = grouped.get(key)
        if event is None:
            ts = time_of(p.time_ns)
            event = grouped[key] = {
                **p.event,
                "id": event_id(ts, f"m{p.group}{p.time_ns:016x}"),
                "ts": ts,
                "window_start": time_of(window_start),
                "hour": hour_of(ts),
                "input_tokens": 0,
                "output_tokens": 0,
                "requests": 0,
                "_calls": {},
            }
        event[f"{p.token_type}_tokens"] += added
        event["_calls"][p.token_type] = calls
        event["window_start"] = min(event["window_start"], time_of(window_start))
    _save_series(conn, changed, now)
    events = []
    for event in grouped.values():
        calls = event.pop("_calls")
        event["requests"] = calls.get("input", calls.get("output", 0))
        event["errors"] = event["requests"] if event.get("errors") else 0
        events.append(event)
    return events, stale


def store_points(conn: Connection, points: list[Point], now: datetime | None = None) -> tuple[int, int]:
    """Turn points into increments and insert them; returns ``(new events, refused points)``."""
    now = now or datetime.now(UTC)
    events, stale = increments(conn, points, now)
    return insert_events(conn, events, now), stale
