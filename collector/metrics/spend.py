"""Prometheus spend metrics: the usage table as gauges, through the same query layer as ``report``.

Every value is read through :func:`collector.query.report.report` (money on the *preferred*
basis, exactly as ``llm-usage report`` prints it), :func:`collector.finance.budgets.statuses`
and :func:`collector.query.health.status`, so Grafana and the CLI never disagree.

Families (all gauges; ``window`` is ``today`` = the current UTC day, ``month`` = the UTC month
to date, today included; ``section`` is ``provider``, ``proxy`` or ``otel``, which are never
added together):

* ``llm_usage_cost{window,section,provider,account,model,project,basis,currency}``
* ``llm_usage_tokens{window,section,provider,account,model,project,basis,token_type}``
* ``llm_usage_requests{window,section,provider,account,model,project,basis}``
* ``llm_usage_budget_spent|amount|forecast{budget_id,budget,scope,currency}``
* ``llm_usage_connection_data_age_seconds{connection,provider}`` (since the newest complete
  bucket), ``llm_usage_import_data_age_seconds{importer,account}``,
  ``llm_usage_source_data_age_seconds{source,provider}``
* ``llm_usage_sync_status{connection,provider,status}`` (1 for the current status),
  ``llm_usage_sync_last_success_timestamp_seconds{connection,provider}``
* ``llm_usage_metrics_part_ok{part}``: 0 when one part could not be read (it is left out).

Cardinality is bounded: per provider (and section) only the ``metrics_top_models`` models and
``metrics_top_projects`` projects with most money (then tokens) keep their names; the rest are
summed under ``other``. A scrape is computed at most once per ``metrics_cache_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from collector.core.schema import SOURCES
from collector.core.settings import Settings
from collector.core.windows import floor_day
from collector.finance.budgets import statuses
from collector.query.health import freshness, status
from collector.query.report import Filters, ReportRow, report

log = logging.getLogger(__name__)

OTHER = "other"
DAY = timedelta(days=1)
TOKEN_TYPES = (
    ("input", "input_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write_5m", "cache_write_5m_tokens"),
    ("cache_write_1h", "cache_write_1h_tokens"),
    ("output", "output_tokens"),
    ("reasoning", "reasoning_tokens"),
)
USAGE_LABELS = ("window", "section", "provider", "account", "model", "project", "basis")
BY = ("provider", "account", "model", "project")


@dataclass
class _Sums:
    cost: Decimal | None = None
    tokens: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    requests: int = 0


def windows(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """``today`` and ``month`` (to date) as half-open UTC windows ending at tomorrow's midnight."""
    today = floor_day(now.astimezone(UTC))
    return {"today": (today, today + DAY), "month": (today.replace(day=1), today + DAY)}


def _top(rows: list[ReportRow], dim: str, n: int) -> set[tuple[str, str, str]]:
    """``(section, provider, value)`` of the ``n`` heaviest values of ``dim`` per section and provider."""
    weight: dict[tuple[str, str, str], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    for r in rows:
        w = weight[(r.section, r.dims["provider"], r.dims[dim])]
        w[0] += r.cost or Decimal(0)
        w[1] += r.input_tokens + r.output_tokens
    keep: set[tuple[str, str, str]] = set()
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for key in weight:
        groups[key[:2]].append(key)
    for keys in groups.values():
        keys.sort(key=lambda k: (weight[k][0], weight[k][1], k[2]), reverse=True)
        keep.update(keys[:n])
    return keep


def usage_samples(
    engine: Engine, now: datetime, top_models: int, top_projects: int
) -> dict[tuple[tuple[str, ...], str], _Sums]:
    """Sums per (usage labels, currency), top-N folded: what the usage families export."""
    out: dict[tuple[tuple[str, ...], str], _Sums] = {}
    for window, (since, until) in windows(now).items():
        result = report(engine, Filters(since, until, sources=SOURCES), by=BY, basis="preferred")
        models = _top(result.rows, "model", top_models)
        projects = _top(result.rows, "project", top_projects)
        for r in result.rows:
            provider = r.dims["provider"]
            model = r.dims["model"] if (r.section, provider, r.dims["model"]) in models else OTHER
            project = r.dims["project"] if (r.section, provider, r.dims["project"]) in projects else OTHER
            labels = (window, r.section, provider, r.dims["account"], model, project, r.basis)
            sums = out.setdefault((labels, r.currency), _Sums())
            if r.cost is not None:
                sums.cost = r.cost if sums.cost is None else sums.cost + r.cost
            sums.tokens = tuple(a + getattr(r, f) for a, (_, f) in zip(sums.tokens, TOKEN_TYPES, strict=True))
            sums.requests += r.requests
    return out


def _usage_families(engine: Engine, now: datetime, settings: Settings) -> Iterator[Metric]:
    samples = usage_samples(engine, now, settings.metrics_top_models, settings.metrics_top_projects)
    cost = GaugeMetricFamily(
        "llm_usage_cost",
        "Spend on the preferred basis (billed where billed, else estimated).",
        labels=[*USAGE_LABELS, "currency"],
    )
    tokens = GaugeMetricFamily(
        "llm_usage_tokens",
        "Tokens by type (input includes cache reads and writes).",
        labels=[*USAGE_LABELS, "token_type"],
    )
    requests = GaugeMetricFamily("llm_usage_requests", "Requests.", labels=list(USAGE_LABELS))
    token_sums: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * len(TOKEN_TYPES))
    request_sums: dict[tuple[str, ...], int] = defaultdict(int)
    for (labels, currency), s in sorted(samples.items()):
        if s.cost is not None:
            cost.add_metric([*labels, currency], float(s.cost))
        acc = token_sums[labels]
        for i, v in enumerate(s.tokens):
            acc[i] += v
        request_sums[labels] += s.requests
    for labels, values in sorted(token_sums.items()):
        for (name, _), v in zip(TOKEN_TYPES, values, strict=True):
            if v:
                tokens.add_metric([*labels, name], v)
    for labels, n in sorted(request_sums.items()):
        if n:
            requests.add_metric(list(labels), n)
    yield from (cost, tokens, requests)


def _budget_families(engine: Engine, now: datetime) -> Iterator[Metric]:
    labels = ["budget_id", "budget", "scope", "currency"]
    spent = GaugeMetricFamily("llm_usage_budget_spent", "Spend in the budget's current period.", labels=labels)
    amount = GaugeMetricFamily("llm_usage_budget_amount", "The budget's amount for its period.", labels=labels)
    forecast = GaugeMetricFamily("llm_usage_budget_forecast", "Forecast spend at the period's end.", labels=labels)
    for st in statuses(engine, now):
        b = st.budget
        values = [str(b.id), b.name, b.scope_label, b.currency]
        spent.add_metric(values, float(st.spent))
        amount.add_metric(values, float(b.amount))
        forecast.add_metric(values, float(st.forecast.projected))
    yield from (spent, amount, forecast)


def _health_families(engine: Engine, now: datetime, settings: Settings) -> Iterator[Metric]:
    state = status(engine, settings, now=now)
    conn_labels = ["connection", "provider"]
    age = GaugeMetricFamily(
        "llm_usage_connection_data_age_seconds", "Seconds since the newest complete bucket synced.", labels=conn_labels
    )
    sync = GaugeMetricFamily(
        "llm_usage_sync_status", "1 for each connection's current status.", labels=[*conn_labels, "status"]
    )
    success = GaugeMetricFamily(
        "llm_usage_sync_last_success_timestamp_seconds", "Time of the last successful sync.", labels=conn_labels
    )
    for c in state.connections or []:
        if not c.active:
            continue
        name = [c.label or str(c.id), c.provider]
        sync.add_metric([*name, c.status or "unknown"], 1)
        if c.newest_complete is not None:
            age.add_metric(name, (now - c.newest_complete).total_seconds())
        if c.last_success is not None:
            success.add_metric(name, c.last_success.timestamp())
    imports = GaugeMetricFamily(
        "llm_usage_import_data_age_seconds",
        "Seconds since the end of the newest imported period.",
        labels=["importer", "account"],
    )
    for i in state.imports or []:
        if i.newest_period_end is not None:
            imports.add_metric([i.importer, i.account], (now - i.newest_period_end).total_seconds())
    yield from (age, sync, success, imports)


def _source_families(engine: Engine, now: datetime) -> Iterator[Metric]:
    newest: dict[tuple[str, str], datetime] = {}
    for f in freshness(engine):
        key = (f.source, f.provider)
        if key not in newest or f.newest_bucket_end > newest[key]:
            newest[key] = f.newest_bucket_end
    age = GaugeMetricFamily(
        "llm_usage_source_data_age_seconds",
        "Seconds since the newest bucket end, per source and provider.",
        labels=["source", "provider"],
    )
    for (source, provider), end in sorted(newest.items()):
        age.add_metric([source, provider], max((now - end).total_seconds(), 0.0))
    yield age


class SpendCollector:
    """A ``prometheus_client`` collector over the database, cached for ``metrics_cache_seconds``.

    Args:
        engine_factory: returns the (migrated) engine; called at the first scrape.
        settings: top-N and cache settings.
        clock: the current time (tests).
    """

    def __init__(
        self,
        engine_factory: Callable[[], Engine],
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine_factory = engine_factory
        self.settings = settings
        self.clock = clock
        self._engine: Engine | None = None
        self._cache: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """Every family (from the cache when it is fresh)."""
        with self._lock:
            cached = self._cache
            if cached is None or time.monotonic() - cached[0] >= self.settings.metrics_cache_seconds:
                cached = (time.monotonic(), self._compute())
                self._cache = cached
        yield from cached[1]

    def _compute(self) -> list[Metric]:
        now = self.clock()
        parts: list[tuple[str, Callable[[Engine], Iterator[Metric]]]] = [
            ("usage", lambda e: _usage_families(e, now, self.settings)),
            ("budgets", lambda e: _budget_families(e, now)),
            ("health", lambda e: _health_families(e, now, self.settings)),
            ("sources", lambda e: _source_families(e, now)),
        ]
        ok = GaugeMetricFamily("llm_usage_metrics_part_ok", "1 when this part of the scrape was read.", labels=["part"])
        out: list[Metric] = []
        for name, part in parts:
            try:
                if self._engine is None:
                    self._engine = self.engine_factory()
                out += list(part(self._engine))
                ok.add_metric([name], 1)
            except Exception as exc:  # noqa: BLE001  (one failing part must not hide the others)
                log.warning("spend metrics: %s not read (%s)", name, type(exc).__name__)
                ok.add_metric([name], 0)
        return [*out, ok]


def registry_for(collector: SpendCollector) -> CollectorRegistry:
    """A registry holding only the spend collector (for the server and the sidecar)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)
