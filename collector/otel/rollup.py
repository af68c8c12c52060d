"""Hourly rollup of ``otel_events`` into ``usage`` (source ``otel``), the span/metric rule, and retention.

Rows are keyed like the proxy's: provider, source ``otel``, kind ``otel``, the UTC hour, team and
project (from the attribution attributes: by default ``service.namespace`` and ``service.name``),
model, and ``variant`` = ``operation=<gen_ai.operation.name> env=<deployment environment>``.
Like proxy rows they are compared with the provider's numbers, never added to them (design.md
rule 5). Span events carry their per-call estimate; metric increments reach ingest without money
and are priced there at base rates (they sum many calls).

**A span and a metric point of the same call are counted once.** An application instrumented
with ``opentelemetry-instrumentation-openai-v2`` sends both. Spans win by default
(``otel_prefer = spans``): they carry cache, reasoning and response ids that the histogram lacks.
An event of the other signal waits ``otel_settle_seconds`` after its time, then is left out
(``superseded``) if an event of the preferred signal from the same resource (process) and
provider falls in its time window (a span's end time within a metric increment's interval,
reaching back :data:`SLACK` more); otherwise it counts. Whichever was counted first also keeps a
later, overlapping event of the other signal out, so no call is ever counted twice. Services that
sample their traces should prefer metrics (``LLM_USAGE_OTEL_PREFER=metrics``): metrics are not
sampled.

Exactly once: in one transaction a chunk of events is picked, those still ``new`` are marked
(the update must touch every one of them, or the transaction is rolled back and retried), and
their sums are ingested *additively*. On PostgreSQL an advisory lock keeps two replicas apart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection, Engine

from collector.core.ingest import ingest
from collector.core.pricing import CURRENCY, PRICE_VERSION
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
from collector.otel.models import COUNTED, METRIC, NEW, OTEL_EVENTS, SPAN, SUPERSEDED

HOUR = timedelta(hours=1)
#: A metric window reaches this far back: a series' first point starts at its first measurement,
#: recorded as the call that it measures (and its span) ends.
SLACK = timedelta(seconds=60)
_E = OTEL_EVENTS.c
_GROUP = (_E.hour, _E.provider, _E.team, _E.project, _E.model, _E.operation, _E.environment)


class RollupConflict(RuntimeError):
    """Another process marked some of this chunk's events first; the chunk is retried."""


def _variant(operation: str, environment: str) -> str:
    return " ".join(f"{k}={v}" for k, v in (("operation", operation), ("env", environment)) if v)


def _records(rows: Iterable[Any]) -> list[UsageRecord]:
    out: list[UsageRecord] = []
    for r in rows:
        m = r._mapping
        hour: datetime = m["hour"]
        requests, priced, spans = int(m["requests"]), int(m["priced"]), int(m["spans"])
        cost: Decimal | None = m["cost"] if priced else None
        details = {"errors": int(m["errors"]), "spans": spans, "metric_points": int(m["points"])}
        if spans:
            details["unpriced_spans"] = spans - priced
        out.append(
            UsageRecord(
                provider=m["provider"],
                source="otel",
                kind="otel",
                bucket_start=hour,
                bucket_end=hour + HOUR,
                project=m["project"],
                team=m["team"],
                model=m["model"],
                variant=_variant(m["operation"], m["environment"]),
                input_tokens=int(m["input_tokens"]),
                cache_read_tokens=int(m["cache_read_tokens"]),
                cache_write_5m_tokens=int(m["cache_write_5m_tokens"]),
                cache_write_1h_tokens=int(m["cache_write_1h_tokens"]),
                output_tokens=int(m["output_tokens"]),
                reasoning_tokens=int(m["reasoning_tokens"]),
                requests=requests,
                cost=Decimal(cost) if cost is not None else None,
                currency=CURRENCY if cost is not None else "",
                basis="estimated" if cost is not None else "unpriced",
                price_version=PRICE_VERSION if cost is not None else "",
                source_ref="otel",
                details=json.dumps(details, sort_keys=True),
            )
        )
    return out


def _aggregate(conn: Connection, ids: list[str], signal: str) -> list[UsageRecord]:
    """Sums per usage key of one signal's events (spans priced, metric points left to ingest)."""
    is_span = case((_E.signal == SPAN, 1), else_=0)
    stmt = (
        select(
            *_GROUP,
            func.sum(_E.requests).label("requests"),
            func.sum(_E.input_tokens).label("input_tokens"),
            func.sum(_E.cache_read_tokens).label("cache_read_tokens"),
            func.sum(_E.cache_write_5m_tokens).label("cache_write_5m_tokens"),
            func.sum(_E.cache_write_1h_tokens).label("cache_write_1h_tokens"),
            func.sum(_E.output_tokens).label("output_tokens"),
            func.sum(_E.reasoning_tokens).label("reasoning_tokens"),
            func.sum(_E.cost).label("cost"),
            func.count(_E.cost).label("priced"),
            func.sum(_E.errors).label("errors"),
            func.sum(is_span).label("spans"),
            func.sum(1 - is_span).label("points"),
        )
        .where(_E.id.in_(bindparam("ids", expanding=True)), _E.signal == signal)
        .group_by(*_GROUP)
    )
    out: list[UsageRecord] = []
    for i in range(0, len(ids), 1000):
        out += _records(conn.execute(stmt, {"ids": ids[i : i + 1000]}))
    return out


# -- the span / metric rule -----------------------------------------------------------------------


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start <= b_end and b_start <= a_end


def _blocking_states(candidate_signal: str, preferred: str) -> tuple[str, ...]:
    """States of the *other* signal's events that keep a candidate out.

    A counted event always does; a preferred event not yet rolled up also keeps a
    non-preferred candidate out (it will be counted, whatever happens).
    """
    return (COUNTED,) if candidate_signal == preferred else (COUNTED, NEW)


def _superseded(conn: Connection, candidates: list[Any], preferred: str) -> set[str]:
    out: set[str] = set()
    spans = [c for c in candidates if c.signal == SPAN]
    metrics = [c for c in candidates if c.signal == METRIC]
    if spans:  # metric events are few: read those that may overlap, check in Python
        pairs = {(c.resource_fp, c.provider) for c in spans}
        lo, hi = min(c.ts for c in spans), max(c.ts for c in spans)
        stmt = select(_E.resource_fp, _E.provider, _E.window_start, _E.ts, _E.state).where(
            _E.signal == METRIC,
            _E.state != SUPERSEDED,
            _E.ts >= lo,
            _E.window_start <= hi + SLACK,
            _E.resource_fp.in_(sorted({p[0] for p in pairs})),
        )
        blocking = _blocking_states(SPAN, preferred)
        windows: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
        for r in conn.execute(stmt):
            if r.state in blocking:
                windows[(r.resource_fp, r.provider)].append((r.window_start - SLACK, r.ts))
        for c in spans:
            if any(_overlaps(c.ts, c.ts, s, e) for s, e in windows.get((c.resource_fp, c.provider), ())):
                out.add(c.id)
    if metrics:  # spans may be many: ask whether one exists in the point's window
        states = _blocking_states(METRIC, preferred)
        exists = (
            select(_E.id)
            .where(
                _E.signal == SPAN,
                _E.resource_fp == bindparam("fp"),
                _E.provider == bindparam("provider"),
                _E.ts >= bindparam("start"),
                _E.ts <= bindparam("end"),
                _E.state.in_(states),
            )
            .limit(1)
        )
        for c in metrics:
            params = {"fp": c.resource_fp, "provider": c.provider, "start": c.window_start - SLACK, "end": c.ts}
            if conn.execute(exists, params).first() is not None:
                out.add(c.id)
    return out


def _mark(conn: Connection, ids: list[str], state: str) -> None:
    stmt = update(OTEL_EVENTS).where(_E.id.in_(bindparam("ids", expanding=True)), _E.state == NEW).values(state=state)
    for i in range(0, len(ids), 1000):
        part = ids[i : i + 1000]
        if conn.execute(stmt, {"ids": part}).rowcount != len(part):
            raise RollupConflict("events were rolled up by another process meanwhile")


def _chunk(conn: Connection, preferred: str, cutoff: datetime, chunk: int) -> list[Any]:
    """Events ready to roll up: the preferred signal at once, the other after the settle time."""
    stmt = (
        select(_E.id, _E.signal, _E.ts, _E.window_start, _E.resource_fp, _E.provider)
        .where(_E.state == NEW, or_(_E.signal == preferred, and_(_E.signal != preferred, _E.ts <= cutoff)))
        .order_by(_E.ts)
        .limit(chunk)
    )
    return list(conn.execute(stmt))


def rollup(
    engine: Engine,
    *,
    prefer: str = "spans",
    settle_seconds: float = 600,
    now: datetime | None = None,
    chunk: int = 5000,
    batch_size: int = 5000,
) -> int:
    """Roll every ready event into ``usage``; returns how many usage rows were written."""
    preferred = SPAN if prefer == "spans" else METRIC
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=settle_seconds)
    written = 0
    for _attempt in range(1000):  # each pass takes one chunk (or retries one after a conflict)
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('otel_rollup'))"))
                candidates = _chunk(conn, preferred, cutoff, chunk)
                if not candidates:
                    return written
                out = _superseded(conn, candidates, preferred)
                counted = [c.id for c in candidates if c.id not in out]
                _mark(conn, sorted(out), SUPERSEDED)
                _mark(conn, counted, COUNTED)
                records = _aggregate(conn, counted, SPAN) + _aggregate(conn, counted, METRIC)
                written += ingest(conn, records, additive=True, batch_size=batch_size).records
        except RollupConflict:
            continue
        if len(candidates) < chunk:
            return written
    return written


def purge(engine: Engine, retention_days: int, *, now: datetime | None = None) -> int:
    """Delete rolled-up (or superseded) events and idle series older than ``retention_days``."""
    from collector.otel.models import OTEL_SERIES

    if retention_days <= 0:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    with engine.begin() as conn:
        result = conn.execute(delete(OTEL_EVENTS).where(_E.ts < cutoff, _E.state != NEW))
        conn.execute(delete(OTEL_SERIES).where(OTEL_SERIES.c.updated_at < cutoff))
    return max(result.rowcount or 0, 0)


def rollup_with(engine: Engine, settings: Settings, *, now: datetime | None = None) -> int:
    """:func:`rollup` and :func:`purge` as the settings say (scheduler job, receiver, sidecar)."""
    written = rollup(engine, prefer=settings.otel_prefer, settle_seconds=settings.otel_settle_seconds, now=now)
    purge(engine, settings.otel_retention_days, now=now)
    return written


def waiting(engine: Engine) -> int:
    """OTLP events not yet counted or superseded (the other signal waits for the settle time)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OTEL_EVENTS).where(_E.state == NEW)).scalar() or 0)


def install_rollup(scheduler: Any, engine: Engine, settings: Settings) -> None:
    """Hourly OTLP rollup and retention purge in ``llm-usage run`` (a no-op without OTLP events)."""
    scheduler.add_job(
        lambda: rollup_with(engine, settings), "interval", hours=1, id="otel:rollup", replace_existing=True
    )
