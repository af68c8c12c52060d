"""Hourly rollup of ``proxy_events`` into ``usage`` (source ``proxy``), and retention.

Dashboards read ``usage``/``usage_daily`` and never scan raw events (market-anchors §12.7).
Rows are keyed like every other source: provider (``openai``, ``anthropic`` or the named
upstream), source ``proxy``, kind ``proxy``, the UTC hour, team and project from the monitor
token, ``api_key_id`` = the salted key fingerprint, model, service tier, and ``variant`` =
``endpoint=<endpoint>``. Proxy rows are compared with the provider's numbers, never added to
them (design.md rule 5).

The rollup is incremental and exactly once: in one transaction it picks a chunk of events not
yet rolled up (by id), ingests their sums *additively* (added to the usage rows already stored
under the same keys, :func:`collector.core.ingest.ingest`), and marks exactly those ids. Events
that arrive later (a spool replay, another replica) are picked up by the next run and added to
their hour, however old, and purged events never make an hour shrink (a whole-hour recompute
would). On PostgreSQL an advisory lock keeps two replicas from rolling up at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, text, update
from sqlalchemy.engine import Connection, Engine

from collector.core.ingest import NO_HOOKS, Hooks, ingest
from collector.core.pricing import CURRENCY, PRICE_VERSION
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
from collector.proxy.models import PROXY_EVENTS

HOUR = timedelta(hours=1)
_E = PROXY_EVENTS.c
_GROUP = (_E.hour, _E.provider, _E.team, _E.project, _E.api_key_fp, _E.model, _E.service_tier, _E.endpoint)


def _records(rows: Iterable[Any]) -> list[UsageRecord]:
    out: list[UsageRecord] = []
    for r in rows:
        m = r._mapping
        hour: datetime = m["hour"]
        priced, requests = int(m["priced"]), int(m["requests"])
        cost: Decimal | None = m["cost"] if priced else None
        details = {
            "errors": int(m["errors"]),
            "partial": int(m["partial"]),
            "client_gone": int(m["client_gone"]),
            "streamed": int(m["streamed"]),
            "usage_unknown": requests - int(m["usage_known"]),
            "unpriced": requests - priced,
            "latency_ms_sum": round(float(m["latency"] or 0), 3),
            "ttfb_ms_sum": round(float(m["ttfb"] or 0), 3),
        }
        out.append(
            UsageRecord(
                provider=m["provider"],
                source="proxy",
                kind="proxy",
                bucket_start=hour,
                bucket_end=hour + HOUR,
                project=m["project"],
                api_key_id=m["api_key_fp"],
                model=m["model"],
                service_tier=m["service_tier"],
                variant=f"endpoint={m['endpoint']}" if m["endpoint"] else "",
                team=m["team"],
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
                source_ref="proxy",
                details=json.dumps(details, sort_keys=True),
            )
        )
    return out


def _aggregate(conn: Connection, ids: list[str]) -> list[UsageRecord]:
    stmt = (
        select(
            *_GROUP,
            func.count().label("requests"),
            func.sum(_E.input_tokens).label("input_tokens"),
            func.sum(_E.cache_read_tokens).label("cache_read_tokens"),
            func.sum(_E.cache_write_5m_tokens).label("cache_write_5m_tokens"),
            func.sum(_E.cache_write_1h_tokens).label("cache_write_1h_tokens"),
            func.sum(_E.output_tokens).label("output_tokens"),
            func.sum(_E.reasoning_tokens).label("reasoning_tokens"),
            func.sum(_E.cost).label("cost"),
            func.count(_E.cost).label("priced"),
            func.sum(case((_E.status >= 400, 1), else_=0)).label("errors"),
            func.sum(case((_E.partial.is_(True), 1), else_=0)).label("partial"),
            func.sum(case((_E.client_gone.is_(True), 1), else_=0)).label("client_gone"),
            func.sum(case((_E.stream.is_(True), 1), else_=0)).label("streamed"),
            func.sum(case((_E.usage_known.is_(True), 1), else_=0)).label("usage_known"),
            func.sum(_E.latency_ms).label("latency"),
            func.sum(_E.ttfb_ms).label("ttfb"),
        )
        .where(_E.id.in_(bindparam("ids", expanding=True)))
        .group_by(*_GROUP)
    )
    return _records(conn.execute(stmt, {"ids": ids}))


@dataclass(frozen=True)
class Rolled:
    """What one rollup did: events taken, usage rows written (added to)."""

    events: int = 0
    rows: int = 0


def rollup(engine: Engine, *, chunk: int = 5000, batch_size: int = 5000) -> int:
    """Roll every event not yet rolled up into ``usage``; returns how many usage rows were written."""
    return rollup_counted(engine, chunk=chunk, batch_size=batch_size).rows


def rollup_counted(engine: Engine, *, chunk: int = 5000, batch_size: int = 5000) -> Rolled:
    """:func:`rollup`, also counting the events it took (``llm-usage proxy rollup`` says both)."""
    events = written = 0
    while True:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('proxy_rollup'))"))
            ids = [r[0] for r in conn.execute(select(_E.id).where(_E.rolled_up.is_(False)).limit(chunk))]
            if not ids:
                return Rolled(events, written)
            records = _aggregate(conn, ids)
            conn.execute(
                update(PROXY_EVENTS).where(_E.id.in_(bindparam("ids", expanding=True))).values(rolled_up=True),
                {"ids": ids},
            )
            written += ingest(conn, records, additive=True, batch_size=batch_size).records
        events += len(ids)
        if len(ids) < chunk:
            return Rolled(events, written)


def rollup_now(engine: Engine, settings: Settings, hooks: Hooks = NO_HOOKS) -> list[str]:
    """Roll up proxy calls and OTLP events at once, then run the after-ingest hooks; one line per source.

    The sidecar rolls up every LLM_USAGE_PROXY_ROLLUP_INTERVAL_SECONDS and ``llm-usage run`` every
    hour; ``llm-usage proxy rollup`` and the Proxy page's button call this when the last minutes
    should show now. Budgets and anomalies are evaluated afterwards, as after a sync.
    """
    from collector.otel import rollup as otel_rollup

    done = rollup_counted(engine)
    otel_rows = otel_rollup.rollup_with(engine, settings)
    left = otel_rollup.waiting(engine)
    wait = f"; {left:,} wait for the {settings.otel_settle_seconds:g} s settle time" if left else ""
    if done.rows or otel_rows:
        hooks.ingested(engine, settings)
    return [
        f"proxy: {done.events:,} calls rolled up into {done.rows:,} usage rows",
        f"otlp: {otel_rows:,} usage rows written{wait}",
    ]


def purge(engine: Engine, retention_days: int, *, now: datetime | None = None) -> int:
    """Delete rolled-up events older than ``retention_days``; returns how many were deleted.

    Events not yet rolled up are kept whatever their age, so retention never loses usage.
    """
    if retention_days <= 0:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    with engine.begin() as conn:
        result = conn.execute(delete(PROXY_EVENTS).where(_E.ts < cutoff, _E.rolled_up.is_(True)))
    return max(result.rowcount or 0, 0)


def rollup_and_purge(engine: Engine, retention_days: int) -> None:
    """The sidecar's periodic job: roll events up, then purge the rolled-up ones past retention.

    One function for the writer thread and the writer's child process (:mod:`collector.proxy.committer`).
    """
    rollup(engine)
    purge(engine, retention_days)


def install_rollup(scheduler: Any, engine: Engine, settings: Settings) -> None:
    """Hourly proxy rollup and retention purge in ``llm-usage run`` (a no-op without proxy events)."""

    def job() -> None:
        rollup(engine)
        purge(engine, settings.proxy_retention_days)

    scheduler.add_job(job, "interval", hours=1, id="proxy:rollup", replace_existing=True)
