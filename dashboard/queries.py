"""What the dashboard reads: thin ``st.cache_data`` wrappers over :mod:`collector.query` and finance.

The usage numbers come from :func:`collector.query.report.report` and friends, the same
functions the ``llm-usage`` commands print, so the dashboard and the CLI give the same answer;
reconciliation comes from :func:`collector.query.reconcile.reconcile`, the admin tables from the
listings of :mod:`collector.query.health`, and budgets, forecasts, anomalies, chargeback, alerts
and exchange rates from the read functions of :mod:`collector.finance`. This module holds no SQL
and no business logic: it calls those functions with the dashboard's engine, turns their results
into DataFrames and caches them for :data:`TTL`. Every cached function gets the database URL as
its first argument (added by :func:`_cached`), so two databases never share a cache entry.

Pages read only through here and write only through :mod:`dashboard.actions`, which clears the
caches after every write so the next run shows it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit import runtime
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from collector.auth.users import Account, get_user, list_users
from collector.core.http import redact
from collector.core.rollups import SLIM, RollupUnavailable, refresh, refresh_hourly
from collector.core.schema import TOKEN_FIELDS
from collector.core.settings import get_settings
from collector.core.store import data_version as _data_version
from collector.db.migrate import open_database
from collector.finance import alerts, budgets, chargeback, fx, views
from collector.finance.anomaly import SCOPE_DIMENSIONS, Anomaly, Driver, find_anomalies
from collector.finance.export import export
from collector.finance.forecast import Forecast
from collector.finance.views import AnomalyScan
from collector.proxy.tokens import list_tokens
from collector.query import billing, health, traffic
from collector.query import report as query
from collector.query.health import DatabaseInfo, Listing
from collector.query.reconcile import CAUSES, PARTS, Contributor, DayLine, Summary, summarise
from collector.query.report import Filters
from providers import REGISTRY
from providers.base import ConnField

TTL = "5m"
log = logging.getLogger(__name__)
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
    """The one engine per database URL, migrated on first use (no database work at import).

    For this module and :mod:`dashboard.actions` only: pages never hold the engine.
    """
    return _engine(db_url())


def _cached(fn: Callable[Concatenate[str, P], R]) -> Callable[P, R]:
    """``st.cache_data(ttl=TTL)`` keyed by the database URL as well as the arguments."""
    inner = st.cache_data(ttl=TTL, show_spinner=False)(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return inner(db_url(), *args, **kwargs)

    return wrapper


def clear_caches() -> None:
    """Forget every cached result (after an import, a sync, any write or a sign-in change)."""
    st.cache_data.clear()


# -- time -----------------------------------------------------------------------------------------


@_cached
def newest_day(url: str) -> datetime | None:
    """The newest UTC day with any usage."""
    return health.newest_day(_engine(url))


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


def display_currency() -> str:
    """``LLM_USAGE_DISPLAY_CURRENCY`` (upper-cased), or '' for "each amount in its billing currency"."""
    code = get_settings().display_currency.strip().upper()
    return code if len(code) == 3 and code.isalpha() else ""


@dataclass(frozen=True)
class Conversion:
    """How a view's money was put into the display currency: which days were converted, which had no rate.

    Every report read of a page carries one; :meth:`merge` joins them so the page says it once.
    """

    to: str = ""
    converted: dict[str, frozenset[date]] = field(default_factory=dict)
    missing: dict[str, frozenset[date]] = field(default_factory=dict)

    @classmethod
    def of(cls, result: query.ReportResult, to: str) -> Conversion:
        return cls(
            to,
            {c: frozenset(d) for c, d in result.converted_days.items()},
            {c: frozenset(d) for c, d in result.missing_rates.items()},
        )

    def merge(self, other: Conversion) -> Conversion:
        def join(a: dict[str, frozenset[date]], b: dict[str, frozenset[date]]) -> dict[str, frozenset[date]]:
            return {c: a.get(c, frozenset()) | b.get(c, frozenset()) for c in a.keys() | b.keys()}

        return Conversion(self.to or other.to, join(self.converted, other.converted), join(self.missing, other.missing))


def _is_conversion_note(note: str) -> bool:
    # The report's own conversion notes; a page says the same once for all its reads (ui.currency_notes).
    return note.startswith("money converted to ") or (note.startswith("no ") and "rate for" in note[:24])


def _report(url: str, filters: Filters, **kwargs: Any) -> tuple[query.ReportResult, Conversion]:
    """:func:`collector.query.report.report` in the display currency, each day at its own rate.

    A window of whole hours is asked again until the next write, so its result is kept per data
    version (:func:`collector.finance.views.kept_report`) for every dashboard process.
    """
    to = display_currency()
    eng = _engine(url)
    converter = fx.RateBook.load(eng).day_rate if to else None
    if _whole_hours(filters):
        rates = _rates_mark() if to else ""  # the cached rates list, as the kept figures use
        result = views.kept_report(eng, _data_version(eng), filters, kwargs, to, rates, converter)
    else:
        result = query.report(eng, filters, currency=to or None, converter=converter, **kwargs)
    return result, Conversion.of(result, to)


def _whole_hours(filters: Filters) -> bool:
    return all(int(t.timestamp()) % 3600 == 0 for t in (filters.since, filters.until))


@_cached
def report_frame(
    url: str,
    filters: Filters,
    by: tuple[str, ...] = (),
    grain: str | None = None,
    basis: str = "preferred",
    top: int | None = None,
) -> pd.DataFrame:
    """:func:`collector.query.report.report` as a DataFrame, one row per report row.

    ``cost`` is a float for charts (NaN when there is no amount); ``cost_exact`` keeps the
    Decimal for totals people check. ``top`` is the report's (``llm-usage report --top``):
    the heaviest groups by money, then tokens, the rest folded into ``(other)``. Money is in the
    display currency where a rate exists (each day at its rate), else in its own; the frame's
    ``attrs["conversion"]`` says which days were converted and which had no rate.
    """
    result, conversion = _report(url, filters, by=by, grain=grain, basis=basis, top=top)
    frame = _rows_frame(result)
    frame.attrs["notes"] = [n for n in result.notes if not _is_conversion_note(n)]
    frame.attrs["conversion"] = conversion
    return frame


def overview_windows(today: datetime) -> tuple[Filters, Filters]:
    """Overview's two windows: this and last month (at least 30 days) by day, and this month."""
    tomorrow = today + DAY
    month_start = today.replace(day=1)
    prev_start = (month_start - DAY).replace(day=1)
    span = Filters(since=min(prev_start, today - 29 * DAY), until=tomorrow)
    return span, Filters(since=month_start, until=tomorrow)


def overview_reads(today: datetime) -> list[tuple[Filters, dict[str, Any]]]:
    """The reports Overview draws (its windows and ``report_frame`` options); the warmer reads them too."""
    span, month = overview_windows(today)
    return [
        (span, {"by": ("provider",), "grain": "day"}),
        (month, {"by": ("model",), "top": 10}),
        (month, {"by": ("project",), "top": 10}),
    ]


def currencies(values: Any) -> list[str]:
    """The currencies among ``values``, the display currency first, then USD, then the rest."""
    found = sorted({str(c) for c in values if c})
    to = display_currency()
    return sorted(found, key=lambda c: (c != to, c != "USD", c))


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
    conversion: Conversion = field(default_factory=Conversion)

    def total(self, currency: str = "USD") -> Decimal:
        """Spend in ``currency`` on the preferred basis: billed where billed, estimated elsewhere."""
        return sum((v for (c, _b), v in self.money.items() if c == currency), Decimal(0))

    def by_basis(self, currency: str = "USD") -> dict[str, Decimal]:
        """The parts of :meth:`total` by basis (billed, estimated)."""
        return {b: v for (c, b), v in self.money.items() if c == currency}

    def currencies(self) -> list[str]:
        """Currencies with money in the window, the display currency first, then USD."""
        return currencies(c for c, _ in self.money)


@_cached
def spend_totals(url: str, filters: Filters, basis: str = "preferred", section: str = "provider") -> SpendTotals:
    """Exact totals of a window (no grouping) of the providers' rows, or of the proxy's own."""
    result, conversion = _report(url, filters, basis=basis)
    notes = [n for n in result.notes if not _is_conversion_note(n)]
    out = SpendTotals(notes=notes, price_versions=result.price_versions, conversion=conversion)
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


# -- forecasts (collector.finance.forecast through budgets.scope_forecast) ------------------------


@dataclass(frozen=True)
class ScopeForecast:
    """A scope's spend this month so far and its month-end forecast, in one currency."""

    spent: Decimal
    forecast: Forecast
    notes: tuple[str, ...]


# -- reconciliation -------------------------------------------------------------------------------

DAY_COLUMNS = [
    "day",
    "provider",
    "account",
    "currency",
    "billed",
    "estimated",
    "proxy",
    "otel",
    "unpriced_tokens",
    "gap",
    "gap %",
    "proxy gap %",
    "otel gap %",
    "residual",
    "flagged",
    "status",
]
ACCOUNT_COLUMNS = ["provider", "account", "currency", "billed", "estimated", "proxy", "otel", "gap % (days with both)"]
CONTRIBUTOR_COLUMNS = ["provider", "account", "currency", "label", "cost"]


@dataclass
class Reconciliation:
    """:class:`collector.query.reconcile.Reconciliation` as frames: money as floats (NaN = none)."""

    daily: pd.DataFrame
    accounts: pd.DataFrame
    largest_gaps: pd.DataFrame
    estimated_by_model: pd.DataFrame
    billed_by_line: pd.DataFrame


def _num(value: Decimal | None) -> float:
    return float(value) if value is not None else float("nan")


def _days_frame(lines: list[DayLine] | tuple[DayLine, ...]) -> pd.DataFrame:
    rows = [
        [
            d.day,
            d.provider,
            d.account,
            d.currency,
            _num(d.billed),
            _num(d.estimated),
            _num(d.proxy),
            _num(d.otel),
            d.unpriced_tokens,
            _num(d.gap),
            _num(d.gap_ratio),
            _num(d.proxy_gap_ratio),
            _num(d.otel_gap_ratio),
            _num(d.causes.get("residual")),
            d.flagged,
            d.status,
        ]
        for d in lines
    ]
    return pd.DataFrame(rows, columns=DAY_COLUMNS)


def _contributors_frame(items: tuple[Contributor, ...]) -> pd.DataFrame:
    rows = [[c.provider, c.account, c.currency, c.label, float(c.cost)] for c in items]
    return pd.DataFrame(rows, columns=CONTRIBUTOR_COLUMNS)


def _threshold() -> Decimal:
    return Decimal(str(get_settings().reconcile_residual_percent)) / 100


def in_display_currency(
    daily: pd.DataFrame, columns: tuple[str, ...] = ("billed", "estimated")
) -> tuple[pd.DataFrame, Conversion]:
    """``daily`` (a ``day`` and a ``currency`` per row) with ``<column> (<display currency>)`` columns added.

    Each row is converted at its own day's rate (NaN without one); the :class:`Conversion` says
    which days were converted and which had no rate. Without a display currency, unchanged.
    """
    to = display_currency()
    if not to or daily.empty:
        return daily, Conversion()
    book = rate_book()
    converted: dict[str, set[date]] = {}
    missing: dict[str, set[date]] = {}
    out = daily.copy()
    days = [pd.Timestamp(d).date() for d in out["day"]]
    for col in columns:
        values: list[float] = []
        for day, currency, value in zip(days, out["currency"], out[col], strict=True):
            done = None
            if pd.notna(value) and currency != to:
                done = book.day_rate(Decimal(str(value)), currency, to, day)
                (converted if done is not None else missing).setdefault(currency, set()).add(day)
            values.append(value if pd.isna(value) or currency == to else (float(done[0]) if done else float("nan")))
        out[f"{col} ({to})"] = values
    freeze = lambda found: {c: frozenset(d) for c, d in found.items()}  # noqa: E731
    return out, Conversion(to, freeze(converted), freeze(missing))


#: Columns of :func:`reconciliation_summary` after its ``by`` dimensions.
SUMMARY_COLUMNS = [
    "currency",
    "billed",
    "estimated",
    "proxy",
    "otel",
    "outside proxy",
    "unpriced_tokens",
    *PARTS,
    *CAUSES,
    "residual %",
    "gap before",
    "days",
    "flagged days",
]


def _summary_row(s: Summary, by: tuple[str, ...]) -> list[Any]:
    return [
        *(getattr(s, name) for name in by),
        s.currency,
        *map(_num, (s.billed, s.estimated, s.proxy, s.otel, s.outside_proxy)),
        s.unpriced_tokens,
        *(_num(s.parts[name]) for name in PARTS),
        *(_num(s.causes[name]) for name in CAUSES),
        _num(s.ratio(s.residual)),
        _num(s.gap_before),
        s.days,
        s.flagged_days,
    ]


@_cached
def reconciliation_summary(
    url: str, since: datetime, until: datetime, by: tuple[str, ...] = ("provider", "account")
) -> pd.DataFrame:
    """:func:`collector.query.reconcile.summarise` over ``[since, until)``, as a frame.

    The estimate's parts and the gap's causes per ``by`` group and currency: what
    ``llm-usage reconcile --by ...`` prints.
    """
    eng = _engine(url)
    result = views.reconciliation(eng, _data_version(eng), since, until, _threshold())  # the page's own, kept
    rows = [_summary_row(s, by) for s in summarise(result, by)]
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


# -- tables of the other features (connections, sync runs, imports, proxy) -----------------------


def _listing_frame(listing: Listing) -> pd.DataFrame:
    return pd.DataFrame(list(listing.rows), columns=list(listing.columns))


@_cached
def connections_frame(url: str) -> pd.DataFrame:
    """Registered provider connections, oldest first (hint only, errors masked)."""
    return _listing_frame(health.connection_listing(_engine(url)))


@_cached
def sync_runs_frame(url: str, limit: int = 200) -> pd.DataFrame:
    """Newest sync runs first (one row per connection endpoint and sync)."""
    return _listing_frame(health.sync_run_listing(_engine(url), limit))


@_cached
def import_files_frame(url: str, limit: int = 200) -> pd.DataFrame:
    """Newest imported (or refused) billing files first."""
    return _listing_frame(health.import_file_listing(_engine(url), limit))


def connectable_providers() -> list[str]:
    """Providers a connection (admin key) can be added for: the provider registry, in its order."""
    return list(REGISTRY)


def connection_fields(provider: str) -> tuple[ConnField, ...]:
    """What the add form asks for a provider: its credential parts and settings (empty: one admin key)."""
    return REGISTRY[provider].fields


@_cached
def monitor_tokens_frame(url: str) -> pd.DataFrame:
    """Proxy monitor tokens by hint (the token is shown once at creation, only its hash is kept)."""
    cols = ["id", "hint", "team", "project", "label", "rpm_limit", "tpm_limit", "created_at", "revoked_at"]
    return pd.DataFrame(list_tokens(_engine(url)), columns=cols)


@_cached
def proxy_refusals(url: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Calls the proxy refused (rate limits, budget caps) by kind, budget and team."""
    cols = ["kind", "budget_name", "team", "refused"]
    return pd.DataFrame(traffic.refusal_counts(_engine(url), since, until), columns=cols)


@_cached
def proxy_stats(url: str, since: datetime, until: datetime) -> traffic.ProxyStats:
    """Requests/s, latency p50/p95 and error rate of the proxy's raw events in the window."""
    return traffic.proxy_stats(_engine(url), since, until)


@_cached
def database_info(url: str) -> DatabaseInfo:
    """Backend, migration revision and row counts (from the rollup: no scan of ``usage``)."""
    return health.database_info(_engine(url))


@_cached
def billing_overlaps(url: str, since: datetime, until: datetime) -> list[billing.Overlap]:
    """Account-days several billed sources bill in ``[since, until)``, and which one counts."""
    return billing.overlaps(billing.read_coverage(_engine(url), since, until))


@_cached
def billing_preferences(url: str) -> dict[tuple[str, str], billing.BillingSource]:
    """The billed sources admins chose per provider account."""
    return billing.preferences(_engine(url))


@_cached
def status_problems(url: str) -> tuple[list[str], list[str]]:
    """``llm-usage status --check``'s problems and notes (the same function; counts every row)."""
    result = health.status(_engine(url), get_settings())
    return [redact(p) for p in result.problems], list(result.notes)


# -- accounts ------------------------------------------------------------------------------------
#
# Never cached: a removed account or a changed role applies at the next click, and a sign-in
# (which stamps the account) must not have to clear everyone's cached reports.


def account(name: str) -> Account | None:
    """The account called ``name``, straight from the database."""
    return get_user(engine(), name)


def accounts() -> list[Account]:
    """Every dashboard account, by name (the Users page's table)."""
    return list_users(engine())


# -- budgets, anomalies, chargeback, alerts, exports and exchange rates ---------------------------


def budget_frame(now: datetime) -> pd.DataFrame:
    """Every active budget's spend, share and month-end forecast at ``now`` (the Budgets page's kept statuses)."""
    cols = ["budget", "scope", "period", "spent", "amount", "used", "forecast", "forecast used", "currency"]
    day = floor_day_of(now)
    statuses = [budget_view(b, day) for b in budget_list() if b.active]
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
        for s in statuses
        if s is not None
    ]
    return pd.DataFrame(rows, columns=cols)


@_cached
def rate_book(url: str) -> fx.RateBook:
    """Every stored exchange rate, for converting figures into the display currency."""
    return fx.RateBook.load(_engine(url))


def rates_used(conversion: Conversion) -> pd.DataFrame:
    """Each converted day's rate and where it came from (a rate of an earlier day when that day had none)."""
    book = rate_book()
    rows = []
    for currency, days in sorted(conversion.converted.items()):
        for day in sorted(days):
            with contextlib.suppress(fx.FxError):
                rate, rate_day, source = book.rate(currency, conversion.to, day)
                rows.append([day, f"{conversion.to}/{currency}", float(rate), rate_day, source])
    return pd.DataFrame(rows, columns=["day", "rate", "value", "rate of", "source"])


@_cached
def fx_rates(url: str) -> list[fx.Rate]:
    """Every stored exchange rate, oldest first."""
    return fx.list_rates(_engine(url))


@_cached
def budget_statuses(url: str, now: datetime) -> list[tuple[budgets.Budget, budgets.BudgetStatus | None]]:
    """Every budget by id with its status at ``now`` (None when paused or outside its period)."""
    eng = _engine(url)
    book = fx.RateBook.load(eng)
    return [(b, budgets.budget_status(eng, b, now, book) if b.active else None) for b in budgets.list_budgets(eng)]


@_cached
def anomalies(url: str, since: datetime, until: datetime) -> tuple[tuple[str, ...], list[Anomaly]]:
    """The configured scopes (``LLM_USAGE_ANOMALY_SCOPES``) and their anomalous days in the window."""
    settings = get_settings()
    scopes = tuple(s.strip() for s in settings.anomaly_scopes.split(",") if s.strip() in SCOPE_DIMENSIONS)
    found = find_anomalies(
        _engine(url), since=since, until=until, scopes=scopes, params=budgets.anomaly_params(settings)
    )
    return scopes, found


@_cached
def team_rules(url: str) -> chargeback.RuleSet:
    """The current version of the chargeback team rules."""
    return chargeback.load_rules(_engine(url))


@_cached
def rule_versions(url: str) -> list[chargeback.RuleSet]:
    """Every saved version of the team rules."""
    return chargeback.rule_versions(_engine(url))


@_cached
def monthly_chargeback(url: str, month: date) -> chargeback.Chargeback:
    """The month's spend per team and cost centre under the current rules."""
    eng = _engine(url)
    return chargeback.monthly_chargeback(eng, month, rules=chargeback.load_rules(eng))


@_cached
def recent_alerts(url: str, limit: int = 100) -> list[alerts.AlertRecord]:
    """The newest alerts first."""
    return alerts.recent_alerts(_engine(url), limit)


def export_file(fmt: str, since: datetime, until: datetime) -> tuple[bytes, int]:
    """An export (``llm-usage export``'s formats) of ``[since, until)`` as bytes, and its row count.

    Not cached: a month of rows can be large, and it is prepared only on request.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"export.{fmt}"
        result = export(engine(), fmt, since, until, path)
        return path.read_bytes(), result.rows


# -- cached until the data changes (the Budgets page) ---------------------------------------------
#
# Forecasts, budget statuses and anomaly baselines read weeks of the daily rollup and cost seconds
# at tens of millions of rows, yet change only when usage is written. These are keyed by
# ``data_version`` (one primary-key read that every rollup rebuild bumps) and by the UTC day, not
# by the minute, so they are computed once per data change and day. The TTL only bounds memory and
# catches budget, rule or rate edits made outside the dashboard (the dashboard's own clear the cache).

VERSIONED_TTL = "1h"


def data_version() -> int:
    """The usage data's change counter (``collector.core.store.data_version``); never cached."""
    return _data_version(engine())


def _versioned(fn: Callable[Concatenate[str, int, P], R]) -> Callable[P, R]:
    """``st.cache_data`` keyed by the database URL and :func:`data_version` as well as the arguments."""
    inner = st.cache_data(ttl=VERSIONED_TTL, max_entries=512, show_spinner=False)(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return inner(db_url(), data_version(), *args, **kwargs)

    return wrapper


def _rates_mark() -> str:
    """Changes whenever a stored exchange rate does; the same digest in every process."""
    return views.rates_mark(fx_rates())


def budget_list() -> list[budgets.Budget]:
    """Every budget by id, straight from the (small) budgets table: an edit shows at once."""
    return budgets.list_budgets(engine())


def budget_view(budget: budgets.Budget, day: datetime) -> budgets.BudgetStatus | None:
    """One budget's status on ``day`` (its UTC midnight), with its spend in the display currency.

    Computed once per data change, budget definition, day and set of exchange rates.
    """
    return _budget_view(budget, day, get_settings().display_currency, _rates_mark())


@_versioned
def _budget_view(
    url: str, version: int, budget: budgets.Budget, day: datetime, display: str, rates: str
) -> budgets.BudgetStatus | None:
    return views.budget_view(_engine(url), version, budget, day, display, rates)


def forecast_rows(day: datetime, currency: str = "USD") -> list[tuple[str, budgets.BudgetStatus]]:
    """This month's spend and forecast of all spend, then of each provider (``(label, status)``)."""
    return _forecast_rows(day, currency, _rates_mark())


@_versioned
def _forecast_rows(
    url: str, version: int, day: datetime, currency: str, rates: str
) -> list[tuple[str, budgets.BudgetStatus]]:
    return views.forecast_rows(_engine(url), version, day, currency, rates)


def anomaly_scan(since: datetime, until: datetime) -> AnomalyScan:
    """:func:`collector.finance.anomaly.scan` of ``[since, until)`` in the display currency."""
    return _anomaly_scan(since, until, _rates_mark())


@_versioned
def _anomaly_scan(url: str, version: int, since: datetime, until: datetime, rates: str) -> AnomalyScan:
    return views.anomaly_scan(_engine(url), version, get_settings(), since, until, rates)


def anomaly_drivers(anomaly: Anomaly) -> list[Driver]:
    """What drove one anomaly (model, project, API key): read only when someone asks."""
    return _anomaly_drivers(anomaly, _rates_mark())


@_versioned
def _anomaly_drivers(url: str, version: int, anomaly: Anomaly, rates: str) -> list[Driver]:
    return views.drivers(_engine(url), version, get_settings(), anomaly, rates)


def chargeback_month(month: date) -> chargeback.Chargeback:
    """The month's chargeback under the current rules, once per data change and rules version.

    In the display currency, each day at its own rate; days without one keep their currency and
    are named in one note per currency.
    """
    return _chargeback_month(month, team_rules().version, get_settings().display_currency, _rates_mark())


@_versioned
def _chargeback_month(
    url: str, version: int, month: date, rules_version: int, display: str, rates: str
) -> chargeback.Chargeback:
    return views.chargeback_month(_engine(url), version, month, rules_version, display, rates)


def scope_forecast(scope: str, value: str, now: datetime, currency: str = "USD") -> ScopeForecast:
    """:func:`collector.finance.budgets.scope_forecast`: the method the Budgets page and alerts use.

    Kept per data version and UTC day (:func:`collector.finance.views.scope_status`).
    """
    return _scope_forecast(scope, value, floor_day_of(now), currency, _rates_mark())


@_versioned
def _scope_forecast(
    url: str, version: int, scope: str, value: str, day: datetime, currency: str, rates: str
) -> ScopeForecast:
    status = views.scope_status(_engine(url), version, scope, value, day, currency, rates)
    return ScopeForecast(status.spent, status.forecast, tuple(status.notes))


def reconciliation(since: datetime, until: datetime, gaps: int = 10) -> Reconciliation:
    """:func:`collector.query.reconcile.reconcile` over ``[since, until)``, as frames.

    The reconciliation itself is kept per data version (:func:`collector.finance.views.reconciliation`).
    """
    return _reconciliation(since, until, _threshold(), gaps)


@_versioned
def _reconciliation(
    url: str, version: int, since: datetime, until: datetime, threshold: Decimal, gaps: int
) -> Reconciliation:
    result = views.reconciliation(_engine(url), version, since, until, threshold)
    accounts = pd.DataFrame(
        [
            [
                a.provider,
                a.account,
                a.currency,
                *map(_num, (a.billed, a.estimated, a.proxy, a.otel, a.paired_gap_ratio)),
            ]
            for a in result.accounts
        ],
        columns=ACCOUNT_COLUMNS,
    )
    return Reconciliation(
        daily=_days_frame(result.days),
        accounts=accounts,
        largest_gaps=_days_frame(result.largest_gaps(gaps)),
        estimated_by_model=_contributors_frame(result.estimated_by_model),
        billed_by_line=_contributors_frame(result.billed_by_line),
    )


#: Days an hourly Explore can show (its window's maximum), kept built by the warmer.
HOURLY_DAYS = 7

#: Seconds between the warmer's looks at :func:`data_version` (one primary-key read each).
WARM_EVERY = 30.0


def warm_budget_views() -> None:
    """Compute what the Budgets page's first views show, so a visitor finds them cached.

    Also rebuilds what a write only marks: the hourly rollup of the days an hourly Explore can
    show (the last ``HOURLY_DAYS``) and every marked day of the slim daily rollup (summed from
    ``usage_daily``, so even a year's import costs well under a second).
    """
    day = floor_day_of(as_of())
    with contextlib.suppress(RollupUnavailable):  # behind an import's transaction: the next visitor or round does it
        refresh_hourly(engine(), day - DAY * HOURLY_DAYS, day + DAY, wait=False)
        refresh(engine(), SLIM, datetime(1970, 1, 1, tzinfo=UTC), day + DAY * 366, wait=False)
    for b in budget_list():
        if b.active:
            budget_view(b, day)
    forecast_rows(day)
    scope_forecast("all", "", day, display_currency() or "USD")  # Overview's projection
    reconciliation(day - DAY * 29, day + DAY)  # the Reconciliation page's default 30 days
    for window, kwargs in overview_reads(day):
        report_frame(window, **kwargs)
    anomaly_scan(day - DAY * 30, day)
    chargeback_month(day.date().replace(day=1))


def floor_day_of(ts: datetime) -> datetime:
    """UTC midnight of ``ts``: the day the versioned reads are keyed by."""
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _warm_loop(stop: threading.Event) -> None:
    seen: tuple[int, datetime] | None = None
    while not stop.wait(0 if seen is None else WARM_EVERY):
        try:
            now = (data_version(), floor_day_of(as_of()))
            if now != seen:
                warm_budget_views()
                seen = now
        except Exception:
            log.exception("warming the Budgets page's cache failed; visitors compute it instead")
            seen = seen or (-1, datetime.min.replace(tzinfo=UTC))


@st.cache_resource(show_spinner=False)
def _warmer(url: str) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=_warm_loop, args=(stop,), daemon=True, name="budgets-warmer").start()
    return stop


#: Set by :mod:`dashboard.server` (what ``llm-usage run`` serves); never under ``AppTest``, which
#: has a runtime too but runs test after test in one process on changing databases.
WARM_WHEN_SERVED = {"on": False}


def start_warmer() -> None:
    """Once per server and database: recompute the Budgets page's figures after every data change.

    Forecasts and budget statuses cost seconds at tens of millions of rows; computed here when
    :func:`data_version` or the day changes, the first visitor after a sync does not wait for them.
    Only in the served dashboard (``dashboard/server.py`` turns it on) with its runtime up, so
    the thread fills the same caches the sessions read.
    """
    if WARM_WHEN_SERVED["on"] and runtime.exists():
        _warmer(db_url())
