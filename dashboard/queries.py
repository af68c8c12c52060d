"""What the dashboard reads: a thin ``st.cache_data`` layer over :mod:`collector.query`.

The usage numbers come from :func:`collector.query.report` and friends, the same functions the
``llm-usage report`` command prints, so the dashboard and the CLI give the same answer (issue 9);
this module only turns their rows into DataFrames and caches them for :data:`TTL`. Every cached
function gets the database URL as its first argument (added by :func:`_cached`), so two
databases never share a cache entry.

Tables that other features add (``connections``, ``sync_runs``, ``import_files``,
``proxy_events``, ``monitor_tokens``) are found with SQLAlchemy's inspector and read through the
small functions at the end, which list safe columns only (never an encrypted key) and mask
anything key-shaped; a page shows its empty state while a table is absent.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy import MetaData, Table, func, inspect, select, type_coerce
from sqlalchemy.engine import Engine
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from collector import query, query_extra
from collector.http import redact
from collector.migrate import current_revision, open_database
from collector.query import Filters
from collector.settings import get_settings
from collector.sqltypes import UTCDateTime
from collector.store import USAGE_DAILY

TTL = "5m"
P = ParamSpec("P")
R = TypeVar("R")
DAY = timedelta(days=1)
TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
)


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


def floor_day(ts: datetime) -> datetime:
    """UTC midnight at or before ``ts``."""
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


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
        for name in TOKEN_COLUMNS:
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
        *TOKEN_COLUMNS,
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
    return query_extra.dimension_values(_engine(url), since, until)


@_cached
def has_source(url: str, source: str, since: datetime, until: datetime) -> bool:
    """True when ``source`` has any usage in the window."""
    return query_extra.has_source(_engine(url), source, since, until)


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
    rows = query_extra.freshness_since(_engine(url), since)
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


# -- tables of other features (connections, sync runs, imports, proxy) ----------------------------

#: Column names that could hold a secret: never selected, whatever the owning feature calls them.
_SECRET_COLUMN = re.compile(r"secret|encrypt|cipher|password|token_hash|salt|(^|_)key$|^key_|admin_key", re.I)
_SAFE_OVERRIDES = frozenset({"key_hint", "api_key_id"})


def safe_columns(columns: list[str]) -> list[str]:
    """The columns a page may show: anything that could hold a secret is dropped."""
    return [c for c in columns if c in _SAFE_OVERRIDES or not _SECRET_COLUMN.search(c)]


@_cached
def table_columns(url: str, name: str) -> list[str] | None:
    """The columns of table ``name``, or None while the feature that owns it is not installed."""
    insp = inspect(_engine(url))
    if not insp.has_table(name):
        return None
    return [c["name"] for c in insp.get_columns(name)]


def table_exists(name: str) -> bool:
    """True when another feature's table is present in this database."""
    return table_columns(name) is not None


def _scrub(df: pd.DataFrame) -> pd.DataFrame:
    """Mask anything key-shaped left in text cells (an error message quoting a key, say)."""
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].map(lambda v: redact(v) if isinstance(v, str) else v)
    return df


def _read_table(url: str, name: str, order_by: tuple[str, ...] = (), limit: int = 200) -> pd.DataFrame | None:
    columns = table_columns(name)
    if columns is None:
        return None
    eng = _engine(url)
    table = Table(name, MetaData(), autoload_with=eng)
    keep = safe_columns(columns)
    stmt = select(*(table.c[c] for c in keep))
    for col in order_by:
        if col in table.c:
            stmt = stmt.order_by(table.c[col].desc())
            break
    with eng.connect() as conn:
        rows = conn.execute(stmt.limit(limit)).mappings().all()
    return _times(_scrub(pd.DataFrame([dict(r) for r in rows], columns=keep)))


def _times(df: pd.DataFrame) -> pd.DataFrame:
    """Show epoch-second time columns (``UTCDateTime`` reflected on SQLite) as UTC times."""
    for col in df.columns:
        if col.endswith(("_at", "_start", "_end", "_until")) and pd.api.types.is_integer_dtype(df[col]):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    return df


@_cached
def connections_frame(url: str) -> pd.DataFrame | None:
    """Registered provider connections (issue 3's ``connections``), safe columns only."""
    return _read_table(url, "connections", order_by=("id",), limit=1000)


@_cached
def sync_runs_frame(url: str, limit: int = 200) -> pd.DataFrame | None:
    """Newest sync runs first (issue 3's ``sync_runs``)."""
    return _read_table(url, "sync_runs", order_by=("started_at", "id"), limit=limit)


@_cached
def import_files_frame(url: str, limit: int = 200) -> pd.DataFrame | None:
    """Newest imported files first (issue 4's ``import_files``)."""
    return _read_table(url, "import_files", order_by=("imported_at", "created_at", "id"), limit=limit)


@_cached
def monitor_tokens_frame(url: str) -> pd.DataFrame | None:
    """Proxy monitor tokens (issue 5), without their hashes."""
    return _read_table(url, "monitor_tokens", order_by=("created_at", "id"), limit=1000)


_TIME_COLUMNS = ("started_at", "ts", "created_at", "time", "timestamp")
_LATENCY_COLUMNS = ("latency_ms", "total_ms", "duration_ms", "latency")
_STATUS_COLUMNS = ("status_code", "status", "http_status")


@dataclass
class ProxyStats:
    """Live-traffic health of the proxy over a recent window."""

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
        """Share of requests with status >= 400."""
        return self.errors / self.requests if self.requests else None


@_cached
def proxy_stats(url: str, since: datetime, until: datetime) -> ProxyStats | None:
    """Requests/s, latency p50/p95 and error rate from issue 5's ``proxy_events``; None if absent.

    Percentiles are read with ``ORDER BY ... LIMIT 1 OFFSET n`` so they work on SQLite and
    PostgreSQL alike and never load the events into memory.
    """
    columns = table_columns("proxy_events")
    if columns is None:
        return None
    pick = {
        kind: next((c for c in cands if c in columns), None)
        for kind, cands in (("time", _TIME_COLUMNS), ("latency", _LATENCY_COLUMNS), ("status", _STATUS_COLUMNS))
    }
    if pick["time"] is None:
        return ProxyStats(seconds=int((until - since).total_seconds()))
    eng = _engine(url)
    t = Table("proxy_events", MetaData(), autoload_with=eng)
    # Reflected, a UTC time column is a plain integer on SQLite: compare through the product's type.
    ts = type_coerce(t.c[pick["time"]], UTCDateTime())
    window = [ts >= since, ts < until]
    out = ProxyStats(seconds=int((until - since).total_seconds()))
    with eng.connect() as conn:
        out.requests = int(conn.execute(select(func.count()).select_from(t).where(*window)).scalar_one())
        if pick["status"] is not None and out.requests:
            status = t.c[pick["status"]]
            out.errors = int(
                conn.execute(select(func.count()).select_from(t).where(*window, status >= 400)).scalar_one()
            )
        if pick["latency"] is not None and out.requests:
            lat = t.c[pick["latency"]]
            for q, attr in ((0.5, "p50_ms"), (0.95, "p95_ms")):
                offset = min(out.requests - 1, int(q * out.requests))
                value = conn.execute(select(lat).where(*window).order_by(lat).limit(1).offset(offset)).scalar()
                setattr(out, attr, float(value) if value is not None else None)
    return out


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
    result = query.status(_engine(url), get_settings())
    return [redact(p) for p in result.problems], list(result.notes)
