"""What the dashboard reads: a thin ``st.cache_data`` layer over :mod:`collector.query.report`.

The usage numbers come from :func:`collector.query.report` and friends, the same functions the
``llm-usage report`` command prints, so the dashboard and the CLI give the same answer;
this module only turns their rows into DataFrames and caches them for :data:`TTL`. Every cached
function gets the database URL as its first argument (added by :func:`_cached`), so two
databases never share a cache entry.

The other features' tables (``connections``, ``sync_runs``, ``import_files``, ``proxy_events``,
``monitor_tokens``) are read through their own SQLModel tables by the small functions at the
end, which select named columns only (never ``connections.key_encrypted``, never a token hash)
and mask anything key-shaped in the text they return.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from collector.core.http import redact
from collector.core.schema import TOKEN_FIELDS
from collector.core.settings import get_settings
from collector.core.store import USAGE_DAILY
from collector.db.migrate import current_revision, open_database
from collector.finance import budgets
from collector.proxy.tokens import list_tokens
from collector.query import health, traffic
from collector.query import report as query
from collector.query.report import Filters
from collector.sync.tables import Connection, SyncRun
from importers.log import IMPORT_FILES

TTL = "5m"
CONNECTIONS: Table = Connection.__table__  # type: ignore[attr-defined]
SYNC_RUNS: Table = SyncRun.__table__  # type: ignore[attr-defined]
P = ParamSpec("P")
R = TypeVar("R")
DAY = timedelta(days=1)


def db_url() -> str:
    """The configured database URL (read per call so tests can point it elsewhere)."""
    return get_settings().resolved_database_url()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return open_database(url=url)


def engine() -> Engine:
    """The one engine per database URL, migrated on first use (no database work at import)."""
    return _engine(db_url())


def _cached(fn: Callable[Concatenate[str, P], R]) -> Callable[P, R]:
    """``st.cache_data(ttl=TTL)`` keyed by the database URL as well as the arguments."""
    inner = st.cache_data(ttl=TTL, show_spinner=False)(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return inner(db_url(), *args, **kwargs)

    return wrapper


def clear_caches() -> None:
    """Forget every cached result (after an import, a sync or a sign-in change)."""
    st.cache_data.clear()


# -- time -----------------------------------------------------------------------------------------


@_cached
def newest_day(url: str) -> datetime | None:
    """The newest UTC day with any usage (from the daily rollup's index)."""
    with _engine(url).connect() as conn:
        return conn.execute(select(func.max(USAGE_DAILY.c.day))).scalar_one_or_none()


def as_of() -> datetime:
    """Now for the pages: the wall clock, or the end of the newest data day in demo mode.

    The demo dataset ends on a fixed date, so in demo mode "today" is its last day and the
    Overview still has a month to show.
    """
    now = datetime.now(UTC)
    if get_settings().demo:
        newest = newest_day()
        if newest is not None:
            return min(now, newest + DAY - timedelta(seconds=1))
    return now


# -- usage reports --------------------------------------------------------------------------------


def _rows_frame(result: query.ReportResult) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for r in result.rows:
        rec: dict[str, Any] = dict(r.dims)
        rec.update(
            period=r.period,
            section=r.section,
            basis=r.basis,
            currency=r.currency,
            cost=float(r.cost) if r.cost is not None else float("nan"),
            cost_exact=r.cost,
            cache_write_tokens=r.cache_write_tokens,
            uncached_input_tokens=r.input_tokens - r.cache_read_tokens - r.cache_write_tokens,
            quantity=float(r.quantity),
            quantity_unit=r.quantity_unit,
        )
        for name in TOKEN_FIELDS:
            rec[name] = getattr(r, name)
        records.append(rec)
    columns = [
        *result.by,
        "period",
        "section",
        "basis",
        "currency",
        "cost",
        "cost_exact",
        *TOKEN_FIELDS,
        "cache_write_tokens",
        "uncached_input_tokens",
        "quantity",
        "quantity_unit",
    ]
    return pd.DataFrame.from_records(records, columns=columns)


@_cached
def report_frame(
    url: str,
    filters: Filters,
    by: tuple[str, ...] = (),
    grain: str | None = None,
    basis: str = "preferred",
    top: int | None = None,
) -> pd.DataFrame:
    """:func:`collector.query.report` as a DataFrame, one row per report row.

    ``cost`` is a float for charts (NaN when there is no amount); ``cost_exact`` keeps the
    Decimal for totals people check.
    """
    result = query.report(_engine(url), filters, by=by, grain=grain, basis=basis, top=top)
    frame = _rows_frame(result)
    frame.attrs["notes"] = list(result.notes)
    return frame


def frame_totals(df: pd.DataFrame, currency: str = "USD", section: str = "provider") -> Decimal:
    """Exact money of a report frame's rows in ``currency`` (billed and estimated parts together)."""
    part = df[(df["currency"] == currency) & (df["section"] == section)]
    return sum((v for v in part["cost_exact"] if v is not None), Decimal(0))


@dataclass
class SpendTotals:
    """Money of a window per (currency, basis), with the usage that has no price."""

    money: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    unpriced_tokens: int = 0
    uncharged_rows: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    notes: list[str] = field(default_factory=list)
    price_versions: tuple[str, ...] = ()

    def total(self, currency: str = "USD") -> Decimal:
        """Spend in ``currency`` on the preferred basis: billed where billed, estimated elsewhere."""
        return sum((v for (c, _b), v in self.money.items() if c == currency), Decimal(0))

    def by_basis(self, currency: str = "USD") -> dict[str, Decimal]:
        """The parts of :meth:`total` by basis (billed, estimated)."""
        return {b: v for (c, b), v in self.money.items() if c == currency}

    def currencies(self) -> list[str]:
        """Currencies with money in the window, USD first."""
        found = sorted({c for c, _ in self.money if c})
        return sorted(found, key=lambda c: c != "USD")


@_cached
def spend_totals(url: str, filters: Filters, basis: str = "preferred", section: str = "provider") -> SpendTotals:
    """Exact totals of a window (no grouping) of the providers' rows, or of the proxy's own."""
    result = query.report(_engine(url), filters, basis=basis)
    out = SpendTotals(notes=list(result.notes), price_versions=result.price_versions)
    for (currency, row_basis), sums in result.totals(section).items():
        out.input_tokens += sums.input_tokens
        out.output_tokens += sums.output_tokens
        out.requests += sums.requests
        if row_basis == "unpriced":
            out.unpriced_tokens += sums.input_tokens + sums.output_tokens
        elif sums.cost is not None and currency:
            out.money[(currency, row_basis)] = out.money.get((currency, row_basis), Decimal(0)) + sums.cost
        elif row_basis == "billed":
            out.uncharged_rows += sums.rows
    return out


#: Filterable dimensions (Explore): report dimension -> Filters field.
FILTER_FIELDS: dict[str, str] = {
    "provider": "providers",
    "account": "accounts",
    "model": "models",
    "project": "projects",
    "api_key": "api_keys",
    "team": "teams",
}


@_cached
def dimension_values(url: str, since: datetime, until: datetime) -> dict[str, list[str]]:
    """The values each filterable dimension takes in the window (one cheap grouped read)."""
    return query.dimension_values(_engine(url), since, until)


@_cached
def has_source(url: str, source: str, since: datetime, until: datetime) -> bool:
    """True when ``source`` has any usage in the window."""
    return query.has_source(_engine(url), source, since, until)


def prefetch(*calls: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
    """Run independent cached reads in parallel threads; the page's own calls then hit the cache.

    SQLite (WAL) and PostgreSQL both serve concurrent readers, and the drivers release the GIL
    while a statement runs, so a page with three reads waits for the slowest, not for the sum.
    Call each function afterwards exactly as it was passed here (same positional and keyword
    arguments), so the cache key matches. A read that fails here simply runs again on the page.
    """
    engine()  # create (and migrate) the shared engine once, before the threads use it
    ctx = get_script_run_ctx()
    threads = []
    for fn, args, kwargs in calls:
        thread = threading.Thread(target=_quietly, args=(fn, args, kwargs), daemon=True)
        if ctx is not None:
            add_script_run_ctx(thread, ctx)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def _quietly(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # A failure is not lost: the page repeats the call and shows the error there.
    with contextlib.suppress(Exception):
        fn(*args, **kwargs)


#: How far back the pages look for each source's newest data (older counts as stale).
FRESHNESS_WINDOW = timedelta(days=35)


@_cached
def freshness_frame(url: str, since: datetime) -> pd.DataFrame:
    """Newest data per source, provider account and kind with data on or after ``since``."""
    rows = health.freshness(_engine(url), since)
    cols = ["source", "provider", "account", "kind", "newest_bucket_end", "last_ingested"]
    return pd.DataFrame([{c: getattr(f, c) for c in cols} for f in rows], columns=cols)


@dataclass
class Reconciliation:
    """Billed vs usage x price table vs proxy, per provider account and day, with contributors."""

    daily: pd.DataFrame
    estimated_by_model: pd.DataFrame
    billed_by_line: pd.DataFrame


@_cached
def reconciliation(url: str, since: datetime, until: datetime) -> Reconciliation:
    """Per provider account and UTC day: billed cost, usage x price table, proxy-recorded.

    Two calls of the shared report: ``basis="billed"`` gives the provider's bill (by line item
    and model), and ``basis="estimated"`` with the proxy source gives the price-table view of the
    usage rows (section ``provider``) and of the proxy's own rows (section ``proxy``), by model;
    the three are compared, never summed. The same rows give the largest contributors.
    """
    eng = _engine(url)
    billed = query.report(
        eng,
        Filters(since=since, until=until),
        by=("provider", "account", "line_item", "model"),
        grain="day",
        basis="billed",
    )
    est = query.report(
        eng,
        Filters(since=since, until=until, sources=("api", "csv", "proxy")),
        by=("provider", "account", "model"),
        grain="day",
        basis="estimated",
    )
    cells: dict[tuple[datetime, str, str], dict[str, Any]] = {}
    by_model: dict[tuple[str, str, str], Decimal] = {}
    by_line: dict[tuple[str, str, str], Decimal] = {}

    def cell(row: query.ReportRow) -> dict[str, Any]:
        assert row.period is not None
        key = (row.period, row.dims["provider"], row.dims["account"])
        return cells.setdefault(key, {"billed": None, "estimated": None, "proxy": None, "unpriced_tokens": 0})

    for row in billed.rows:
        if row.cost is not None and row.section == "provider":
            c = cell(row)
            c["billed"] = (c["billed"] or Decimal(0)) + row.cost
            label = row.dims["line_item"] or row.dims["model"] or "(no breakdown)"
            key = (row.dims["provider"], row.dims["account"], label)
            by_line[key] = by_line.get(key, Decimal(0)) + row.cost
    for row in est.rows:
        c = cell(row)
        column = "proxy" if row.section == "proxy" else "estimated"
        if row.basis == "unpriced":
            c["unpriced_tokens"] += row.input_tokens + row.output_tokens
        elif row.cost is not None:
            c[column] = (c[column] or Decimal(0)) + row.cost
            if column == "estimated":
                key = (row.dims["provider"], row.dims["account"], row.dims["model"])
                by_model[key] = by_model.get(key, Decimal(0)) + row.cost
    records = [{"day": k[0], "provider": k[1], "account": k[2], **c} for k, c in sorted(cells.items())]
    daily = pd.DataFrame(
        records, columns=["day", "provider", "account", "billed", "estimated", "proxy", "unpriced_tokens"]
    )

    def contributors(sums: dict[tuple[str, str, str], Decimal], label: str) -> pd.DataFrame:
        rows = [{"provider": p, "account": a, label: x, "cost": float(v)} for (p, a, x), v in sums.items()]
        return pd.DataFrame(rows, columns=["provider", "account", label, "cost"])

    return Reconciliation(daily, contributors(by_model, "model"), contributors(by_line, "line_item"))


# -- tables of the other features (connections, sync runs, imports, proxy) -----------------------

#: The ``connections`` columns a page shows: never ``key_encrypted``, only the masked ``key_hint``.
CONNECTION_COLUMNS = (
    "id",
    "provider",
    "label",
    "account",
    "key_hint",
    "base_url",
    "active",
    "status",
    "last_error",
    "last_synced_at",
    "last_tested_at",
    "created_at",
)
SYNC_RUN_COLUMNS = (
    "id",
    "connection_id",
    "provider",
    "endpoint",
    "status",
    "started_at",
    "finished_at",
    "window_start",
    "window_end",
    "through",
    "pages",
    "rows",
    "duration_seconds",
    "error",
    "runner",
)
IMPORT_FILE_COLUMNS = (
    "id",
    "name",
    "importer",
    "status",
    "rows",
    "rows_read",
    "period_start",
    "period_end",
    "account",
    "imported_by",
    "imported_at",
    "size",
    "message",
)


def _scrub(df: pd.DataFrame) -> pd.DataFrame:
    """Mask anything key-shaped left in text cells (a provider error quoting a key, say)."""
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].map(lambda v: redact(v) if isinstance(v, str) else v)
    return df


def _select_frame(url: str, table: Table, columns: tuple[str, ...], order: Any, limit: int) -> pd.DataFrame:
    stmt = select(*(table.c[c] for c in columns)).order_by(order).limit(limit)
    with _engine(url).connect() as conn:
        rows = conn.execute(stmt).all()
    return _scrub(pd.DataFrame([tuple(r) for r in rows], columns=list(columns)))


@_cached
def connections_frame(url: str) -> pd.DataFrame:
    """Registered provider connections, oldest first (hint only, errors masked)."""
    return _select_frame(url, CONNECTIONS, CONNECTION_COLUMNS, CONNECTIONS.c.id, 1000)


@_cached
def sync_runs_frame(url: str, limit: int = 200) -> pd.DataFrame:
    """Newest sync runs first (one row per connection endpoint and sync)."""
    return _select_frame(url, SYNC_RUNS, SYNC_RUN_COLUMNS, SYNC_RUNS.c.id.desc(), limit)


@_cached
def import_files_frame(url: str, limit: int = 200) -> pd.DataFrame:
    """Newest imported (or refused) billing files first."""
    return _select_frame(url, IMPORT_FILES, IMPORT_FILE_COLUMNS, IMPORT_FILES.c.id.desc(), limit)


@_cached
def monitor_tokens_frame(url: str) -> pd.DataFrame:
    """Proxy monitor tokens by hint (the token is shown once at creation, only its hash is kept)."""
    cols = ["id", "hint", "team", "project", "label", "created_at", "revoked_at"]
    return pd.DataFrame(list_tokens(_engine(url)), columns=cols)


@_cached
def proxy_stats(url: str, since: datetime, until: datetime) -> traffic.ProxyStats:
    """Requests/s, latency p50/p95 and error rate of the proxy's raw events in the window."""
    return traffic.proxy_stats(_engine(url), since, until)


@dataclass
class DatabaseInfo:
    """What the Data & health page says about the database itself."""

    backend: str
    url: str
    revision: str | None
    usage_rows: int
    daily_rows: int


@_cached
def database_info(url: str) -> DatabaseInfo:
    """Backend, migration revision and row counts (from the rollup: no scan of ``usage``)."""
    eng = _engine(url)
    with eng.connect() as conn:
        usage_rows, daily_rows = conn.execute(
            select(func.coalesce(func.sum(USAGE_DAILY.c.rows), 0), func.count()).select_from(USAGE_DAILY)
        ).one()
    return DatabaseInfo(
        backend=eng.dialect.name,
        url=eng.url.render_as_string(hide_password=True),
        revision=current_revision(eng),
        usage_rows=int(usage_rows),
        daily_rows=int(daily_rows),
    )


@_cached
def status_problems(url: str) -> tuple[list[str], list[str]]:
    """``llm-usage status --check``'s problems and notes (the same function; counts every row)."""
    result = health.status(_engine(url), get_settings())
    return [redact(p) for p in result.problems], list(result.notes)


@_cached
def budget_frame(url: str, now: datetime) -> pd.DataFrame:
    """Every active budget's spend, share and month-end forecast at ``now`` (``budgets.statuses``)."""
    cols = ["budget", "scope", "period", "spent", "amount", "used", "forecast", "forecast used", "currency"]
    rows = [
        {
            "budget": s.budget.name,
            "scope": s.budget.scope_label,
            "period": f"{s.period_start:%Y-%m-%d} → {(s.period_end - DAY):%Y-%m-%d}",
            "spent": s.spent,
            "amount": s.budget.amount,
            "used": float(s.percent) / 100,
            "forecast": s.forecast.projected,
            "forecast used": float(s.forecast_percent) / 100,
            "currency": s.budget.currency,
        }
        for s in budgets.statuses(_engine(url), now)
    ]
    return pd.DataFrame(rows, columns=cols)
