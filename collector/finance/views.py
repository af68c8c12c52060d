"""The dashboard's heavy figures, each computed once per data change and kept for every process.

Budget statuses, the forecast table, the anomaly scan, the month's chargeback and the
reconciliation read weeks of the daily rollup: seconds at tens of millions of rows. Each function
here takes the data version it is asked at (``collector.core.store.data_version``) and goes through
:func:`collector.core.figures.cached`, so the first process to need a figure after a sync or an
import computes it and every other process (a restarted dashboard, a second replica, the
dashboard's background warmer) reads it back.

A figure's key is everything its value depends on besides the usage data: the budget's
definition, the day, the display currency, the exchange rates (:func:`rates_mark`), the team
rules' version and the anomaly settings. Billing preferences bump the data version themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from collector.core import figures
from collector.core.settings import Settings
from collector.finance import budgets, chargeback, fx
from collector.finance.anomaly import SCOPE_DIMENSIONS, Anomaly, Driver, NewSpend, Params, scan
from collector.finance.anomaly import drivers as anomaly_drivers
from collector.finance.budgets import Budget, BudgetStatus
from collector.finance.chargeback import Chargeback, ChargebackLine
from collector.finance.forecast import Forecast
from collector.query.billing import BillingSource, Overlap
from collector.query.reconcile import AccountLine, Contributor, DayLine, Reconciliation, reconcile
from collector.query.report import Filters, ReportResult, ReportRow, report


@dataclass(frozen=True)
class AnomalyScan:
    """The Anomalies view: configured scopes, anomalous days (no drivers yet) and new-spend notices."""

    scopes: tuple[str, ...]
    anomalies: list[Anomaly]
    notices: list[NewSpend]


#: The only classes a kept figure may be rebuilt as (see :mod:`collector.core.figures`).
TYPES = figures.type_map(
    [
        Budget,
        BudgetStatus,
        Forecast,
        Anomaly,
        Driver,
        NewSpend,
        AnomalyScan,
        Chargeback,
        ChargebackLine,
        Params,
        Reconciliation,
        DayLine,
        AccountLine,
        Contributor,
        Filters,
        ReportResult,
        ReportRow,
        Overlap,
        BillingSource,
    ]
)


def rates_mark(rates: list[fx.Rate]) -> str:
    """A digest of the stored exchange rates, the same in every process."""
    return figures.digest([(r.day, r.base, r.quote, r.rate, r.source) for r in rates])


def anomaly_setup(settings: Settings) -> tuple[tuple[str, ...], Params]:
    """The configured anomaly scopes (``LLM_USAGE_ANOMALY_SCOPES``) and detection parameters."""
    scopes = tuple(s.strip() for s in settings.anomaly_scopes.split(",") if s.strip() in SCOPE_DIMENSIONS)
    return scopes, budgets.anomaly_params(settings)


def budget_view(
    engine: Engine, version: int, budget: Budget, day: datetime, display: str, rates: str
) -> BudgetStatus | None:
    """One budget's status on ``day``, its spend also in ``display`` (each day at its rate)."""

    def compute() -> BudgetStatus | None:
        return budgets.budget_status(engine, budget, day, fx.RateBook.load(engine), display=display)

    return figures.cached(engine, "budget", (budget, day, display, rates), version, compute, types=TYPES)


def forecast_rows(
    engine: Engine, version: int, day: datetime, currency: str, rates: str
) -> list[tuple[str, BudgetStatus]]:
    """This month's spend and forecast of all spend, then of each provider (``(label, status)``)."""

    def compute() -> list[tuple[str, BudgetStatus]]:
        book = fx.RateBook.load(engine)
        everything = budgets.budget_status(engine, budgets.forecast_probe("all", "", currency), day, book)
        rows = [("all spend", everything)] if everything is not None else []
        rows += list(budgets.provider_forecasts(engine, day, currency=currency, rates=book).items())
        return rows

    return figures.cached(engine, "forecasts", (day, currency, rates), version, compute, types=TYPES)


def scope_status(
    engine: Engine, version: int, scope: str, value: str, day: datetime, currency: str, rates: str
) -> BudgetStatus:
    """A scope's month so far and month-end forecast in ``currency`` (a budget of one unit on it).

    A status depends only on the UTC date of the moment asked (spend is read by whole days), so
    it is kept per day.
    """

    def compute() -> BudgetStatus:
        status = budgets.budget_status(engine, budgets.forecast_probe(scope, value, currency), day)
        if status is None:  # pragma: no cover - a monthly period always contains the day
            raise budgets.BudgetError("no period contains the day")
        return status

    return figures.cached(engine, "scope", (scope, value, day, currency, rates), version, compute, types=TYPES)


def anomaly_scan(
    engine: Engine, version: int, settings: Settings, since: datetime, until: datetime, rates: str
) -> AnomalyScan:
    """Anomalous days and new-spend notices of ``[since, until)``, in the display currency."""
    scopes, params = anomaly_setup(settings)
    display = settings.display_currency

    def compute() -> AnomalyScan:
        money = budgets.display_money(display, fx.RateBook.load(engine))
        found, notices = scan(engine, since=since, until=until, scopes=scopes, params=params, money=money)
        return AnomalyScan(scopes, found, notices)

    key = (scopes, params, display, since, until, rates)
    return figures.cached(engine, "anomalies", key, version, compute, types=TYPES)


def drivers(engine: Engine, version: int, settings: Settings, anomaly: Anomaly, rates: str) -> list[Driver]:
    """What drove one anomaly (model, project, API key)."""
    _scopes, params = anomaly_setup(settings)
    display = settings.display_currency

    def compute() -> list[Driver]:
        money = budgets.display_money(display, fx.RateBook.load(engine))
        return anomaly_drivers(engine, anomaly, params, money=money)

    return figures.cached(engine, "drivers", (anomaly, params, display, rates), version, compute, types=TYPES)


def chargeback_month(
    engine: Engine, version: int, month: date, rules_version: int, display: str, rates: str
) -> Chargeback:
    """The month's chargeback under the current team rules, in ``display`` when set."""

    def compute() -> Chargeback:
        rules = chargeback.load_rules(engine)
        if not display.strip():
            return chargeback.monthly_chargeback(engine, month, rules=rules)
        book = fx.RateBook.load(engine)
        return chargeback.monthly_chargeback(
            engine, month, rules=rules, currency=display.strip(), converter=book.day_rate
        )

    key: Any = (month, rules_version, display, rates)
    return figures.cached(engine, "chargeback", key, version, compute, types=TYPES)


def reconciliation(
    engine: Engine, version: int, since: datetime, until: datetime, threshold: Decimal
) -> Reconciliation:
    """:func:`collector.query.reconcile.reconcile` of ``[since, until)``: billed, estimated, proxy, causes."""

    def compute() -> Reconciliation:
        return reconcile(engine, Filters(since=since, until=until), threshold=threshold)

    return figures.cached(engine, "reconcile", (since, until, threshold), version, compute, types=TYPES)


def kept_report(
    engine: Engine,
    version: int,
    filters: Filters,
    options: dict[str, Any],
    display: str,
    rates: str,
    converter: Any = None,
) -> ReportResult:
    """:func:`collector.query.report.report` with ``options`` (by, grain, basis, top), kept per data version.

    For the dashboard's charts: their windows are whole days (or hours), so the same question
    is asked again until the next write. ``display`` and ``converter`` convert the money
    (each day at its own rate); ``rates`` names the rates the converter holds.
    """

    def compute() -> ReportResult:
        return report(engine, filters, currency=display or None, converter=converter, **options)

    key = (filters, sorted(options.items()), display, rates)
    return figures.cached(engine, "report", key, version, compute, types=TYPES)


__all__ = [
    "TYPES",
    "AnomalyScan",
    "anomaly_scan",
    "anomaly_setup",
    "budget_view",
    "chargeback_month",
    "drivers",
    "forecast_rows",
    "kept_report",
    "rates_mark",
    "reconciliation",
    "scope_status",
]
