"""Budgets: an amount per month (or custom period) per scope, with thresholds and a forecast.

A budget covers one scope: ``all`` spend, one ``provider``, ``account``, ``project``,
``api_key`` or ``team`` (teams come from :mod:`collector.finance.chargeback`'s rules). Its spend is
read through the query layer on the *preferred* basis (billed where a billed source covers the
day, estimated otherwise, design rule 5); money in another currency is converted with the
``fx_rates`` table, or left out with a note when no rate exists.

:func:`evaluate` runs after each sync or import (:func:`after_ingest`) and hourly from the
scheduler (:func:`install_jobs`). For every active budget it computes the period's spend so
far, the percentage of the amount, and the period-end forecast (:mod:`collector.finance.forecast`),
then sends one alert per crossed threshold per period (default 50 / 80 / 100 %) and one when
the forecast exceeds ``forecast_threshold`` % of the amount. It also looks for anomalies in
the last complete day (:mod:`collector.finance.anomaly`) and alerts each once. Alerts are kept once by
:func:`collector.finance.alerts.deliver_once`; a new period has new keys, so it starts afresh.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Boolean, Column, Integer, String, Table, delete, false, insert, select, true, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from collector.core.settings import Settings
from collector.core.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime
from collector.finance import alerts
from collector.finance.alerts import ALERT_EVENTS
from collector.finance.anomaly import Anomaly, Money, NewSpend, Params, find_anomalies, new_spend
from collector.finance.forecast import Forecast, forecast_period, month_bounds
from collector.finance.fx import FxError, RateBook
from collector.query.report import Filters, dimension_values, known_providers, report, scope_filters

log = logging.getLogger(__name__)


class BudgetRow(SQLModel, table=True):
    """``budgets``: an amount for one scope over each month (or one custom period)."""

    __tablename__ = "budgets"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(255), nullable=False))
    #: ``all``, ``provider``, ``account``, ``project``, ``api_key`` or ``team``.
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    #: The provider / account / project / key id / team name; ``''`` for ``all``.
    scope_value: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    amount: Decimal = Field(sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=False))
    currency: str = Field(default="USD", sa_column=Column(String(3), nullable=False, server_default="USD"))
    #: ``month`` (every calendar month, UTC) or ``custom`` (``starts_at`` .. ``ends_at``).
    period: str = Field(default="month", sa_column=Column(String(16), nullable=False, server_default="month"))
    starts_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    ends_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    #: Comma-separated percentages, e.g. ``50,80,100``.
    thresholds: str = Field(default="50,80,100", sa_column=Column(String(64), nullable=False, server_default=""))
    #: Alert when the period-end forecast exceeds this percentage of the amount (0 = never).
    forecast_threshold: int = Field(default=100, sa_column=Column(Integer, nullable=False, server_default="100"))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    #: The proxy refuses calls in scope once the period's spend reaches the amount.
    enforce: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    #: An admin lifted the cap until then (the end of the period it was lifted in).
    lifted_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


BUDGETS: Table = BudgetRow.__table__  # type: ignore[attr-defined]


SCOPES: tuple[str, ...] = ("all", "provider", "account", "project", "api_key", "team")
PERIODS: tuple[str, ...] = ("month", "custom")
DAY = timedelta(days=1)
HISTORY_DAYS = 56
ZERO = Decimal(0)


class BudgetError(ValueError):
    """A bad budget definition or an unknown budget; the message names the field."""


@dataclass(frozen=True)
class Budget:
    """A budget as stored."""

    id: int
    name: str
    scope: str
    scope_value: str
    amount: Decimal
    currency: str
    period: str
    starts_at: datetime | None
    ends_at: datetime | None
    thresholds: tuple[int, ...]
    forecast_threshold: int
    active: bool
    enforce: bool = False
    lifted_until: datetime | None = None

    @property
    def scope_label(self) -> str:
        """``provider=openai`` or ``all``."""
        return "all spend" if self.scope == "all" else f"{self.scope}={self.scope_value}"

    def period_at(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The period containing ``now`` (UTC month, or the custom window); None outside it."""
        if self.period == "month":
            start, end = month_bounds(now.astimezone(UTC).date())
            return _midnight(start), _midnight(end)
        if self.starts_at is None or self.ends_at is None or not self.starts_at <= now < self.ends_at:
            return None
        return self.starts_at, self.ends_at


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_thresholds(text: str | Any) -> tuple[int, ...]:
    """``"50, 80,100"`` -> ``(50, 80, 100)``.

    Raises:
        BudgetError: a value that is not a whole percentage between 1 and 1000.
    """
    items = [p.strip().rstrip("%") for p in str(text).split(",") if p.strip()]
    out: set[int] = set()
    for item in items:
        if not item.isdigit() or not 1 <= int(item) <= 1000:
            raise BudgetError(f"thresholds: {item!r} is not a whole percentage between 1 and 1000")
        out.add(int(item))
    return tuple(sorted(out))


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    scope = values.get("scope", "all")
    if scope not in SCOPES:
        raise BudgetError(f"scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if scope != "all" and not str(values.get("scope_value", "")).strip():
        raise BudgetError(f"scope value: a {scope} budget needs the {scope} it covers")
    if scope == "all":
        values["scope_value"] = ""
    if values.get("enforce") and scope == "account":
        raise BudgetError("enforce: an account budget cannot be enforced by the proxy (no call names its account)")
    try:
        amount = Decimal(str(values.get("amount")))
    except InvalidOperation as exc:
        raise BudgetError(f"amount: {values.get('amount')!r} is not a number") from exc
    if not amount.is_finite() or amount <= 0:
        raise BudgetError(f"amount: must be positive, got {amount}")
    values["amount"] = amount
    currency = str(values.get("currency", "USD")).upper()
    if len(currency) != 3 or not currency.isalpha():
        raise BudgetError(f"currency: {currency!r} is not an ISO 4217 code")
    values["currency"] = currency
    period = values.get("period", "month")
    if period not in PERIODS:
        raise BudgetError(f"period: {period!r} is not one of {', '.join(PERIODS)}")
    if period == "custom":
        start, end = values.get("starts_at"), values.get("ends_at")
        if start is None or end is None or start.tzinfo is None or end.tzinfo is None or end <= start:
            raise BudgetError("period: a custom period needs aware start and end datetimes, end after start")
    else:
        values["starts_at"] = values["ends_at"] = None
    values["thresholds"] = ",".join(str(t) for t in parse_thresholds(values.get("thresholds", "50,80,100")))
    forecast = int(values.get("forecast_threshold", 100))
    if not 0 <= forecast <= 1000:
        raise BudgetError(f"forecast threshold: {forecast} is not between 0 (off) and 1000 %")
    values["forecast_threshold"] = forecast
    if not str(values.get("name", "")).strip():
        raise BudgetError("name: a budget needs a name")
    return values


#: Scope -> the report dimension whose values a budget of that scope may name.
SCOPE_VALUE_DIMENSIONS = {"provider": "provider", "account": "account", "project": "project",
                          "api_key": "api_key", "team": "team"}  # fmt: skip


def known_values(engine: Engine, scope: str, now: datetime | None = None) -> list[str]:
    """The values a scope takes in the data of the last year (and team names of the team rules)."""
    now = now or datetime.now(UTC)
    if scope == "provider":
        return list(known_providers(engine))
    dim = SCOPE_VALUE_DIMENSIONS.get(scope)
    if dim is None:
        return []
    seen = set(dimension_values(engine, now - timedelta(days=366), now + timedelta(days=1)).get(dim, []))
    if scope == "team":
        from collector.finance.chargeback import load_rules

        seen |= {r.team for r in load_rules(engine).rules}
    return sorted(v for v in seen if v)


def _check_scope_value(engine: Engine, values: dict[str, Any]) -> None:
    """A scope value nobody has seen can never trip: refused, naming the known ones."""
    scope, value = values.get("scope", "all"), str(values.get("scope_value", "")).strip()
    if scope == "all" or not value:
        return
    known = known_values(engine, scope)
    if value not in known:
        listed = ", ".join(known[:20]) + (f" (and {len(known) - 20} more)" if len(known) > 20 else "")
        raise BudgetError(
            f"scope value: no {scope} {value!r} in the data of the last year; known: {listed or 'none yet'} "
            "(--allow-unknown keeps it, e.g. for a project that has not spent yet)"
        )


def create_budget(engine: Engine, *, allow_unknown: bool = False, **values: Any) -> int:
    """Store a new budget; returns its id (see :class:`Budget` for the fields).

    Raises:
        BudgetError: a bad field, or (unless ``allow_unknown``) a scope value the data never had.
    """
    now = datetime.now(UTC)
    if not allow_unknown:
        _check_scope_value(engine, values)
    row = _validate({"active": True, **values})
    row.update(created_at=now, updated_at=now)
    with engine.begin() as conn:
        return int(conn.execute(insert(BUDGETS).values(**row).returning(BUDGETS.c.id)).scalar_one())


def update_budget(engine: Engine, budget_id: int, **changes: Any) -> Budget:
    """Change some fields of a budget (validated as a whole).

    Raises:
        BudgetError: unknown id or a bad field.
    """
    current = get_budget(engine, budget_id)
    merged = {
        "name": current.name,
        "scope": current.scope,
        "scope_value": current.scope_value,
        "amount": current.amount,
        "currency": current.currency,
        "period": current.period,
        "starts_at": current.starts_at,
        "ends_at": current.ends_at,
        "thresholds": ",".join(map(str, current.thresholds)),
        "forecast_threshold": current.forecast_threshold,
        "active": current.active,
        "enforce": current.enforce,
        "lifted_until": current.lifted_until,
        **changes,
    }
    row = _validate(merged)
    row["updated_at"] = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(update(BUDGETS).where(BUDGETS.c.id == budget_id).values(**row))
    return get_budget(engine, budget_id)


def delete_budget(engine: Engine, budget_id: int) -> None:
    """Remove a budget (its sent alerts stay in the history).

    Raises:
        BudgetError: unknown id.
    """
    suffix = f":deleted-{int(datetime.now(UTC).timestamp())}"
    with engine.begin() as conn:
        if conn.execute(delete(BUDGETS).where(BUDGETS.c.id == budget_id)).rowcount != 1:
            raise BudgetError(f"no budget with id {budget_id}")
        # Keep the history but free the keys: a new budget may get the same id (SQLite reuses it).
        conn.execute(
            update(ALERT_EVENTS)
            .where(ALERT_EVENTS.c.budget_id == budget_id)
            .values(alert_key=ALERT_EVENTS.c.alert_key + suffix, budget_id=None)
        )


def _from_row(r: Any) -> Budget:
    return Budget(
        id=r["id"],
        name=r["name"],
        scope=r["scope"],
        scope_value=r["scope_value"],
        amount=r["amount"],
        currency=r["currency"],
        period=r["period"],
        starts_at=r["starts_at"],
        ends_at=r["ends_at"],
        thresholds=parse_thresholds(r["thresholds"]) if r["thresholds"] else (),
        forecast_threshold=r["forecast_threshold"],
        active=bool(r["active"]),
        enforce=bool(r["enforce"]),
        lifted_until=r["lifted_until"],
    )


def get_budget(engine: Engine, budget_id: int) -> Budget:
    """One budget.

    Raises:
        BudgetError: unknown id.
    """
    with engine.connect() as conn:
        row = conn.execute(select(BUDGETS).where(BUDGETS.c.id == budget_id)).mappings().first()
    if row is None:
        raise BudgetError(f"no budget with id {budget_id}")
    return _from_row(row)


def list_budgets(engine: Engine, *, active_only: bool = False) -> list[Budget]:
    """Every budget, by id."""
    stmt = select(BUDGETS).order_by(BUDGETS.c.id)
    if active_only:
        stmt = stmt.where(BUDGETS.c.active.is_(True))
    with engine.connect() as conn:
        return [_from_row(r) for r in conn.execute(stmt).mappings()]


# -- spend and status -----------------------------------------------------------------------------


def _scope_filters(budget: Budget, since: datetime, until: datetime) -> Filters:
    return scope_filters(budget.scope, budget.scope_value, since, until)


def daily_spend_in(
    engine: Engine, budget: Budget, since: datetime, until: datetime, rates: RateBook | None = None
) -> tuple[dict[date, Decimal], list[str]]:
    """The scope's spend per UTC day in the budget's currency, and notes on what was left out."""
    per_currency = _spend_by_currency(engine, budget, since, until)
    return convert_days(engine, per_currency, budget.currency, rates)


def _spend_by_currency(
    engine: Engine, budget: Budget, since: datetime, until: datetime
) -> dict[tuple[date, str], Decimal]:
    """The scope's spend per (UTC day, billing currency), as the query layer reports it."""
    per_currency: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    if budget.scope == "team":
        from collector.finance.chargeback import team_daily_spend

        per_currency.update(team_daily_spend(engine, budget.scope_value, since, until))
    else:
        result = report(engine, _scope_filters(budget, since, until), grain="day")
        for row in result.rows:
            if row.cost is not None and row.period is not None and row.section == "provider":
                per_currency[(row.period.date(), row.currency)] += row.cost
    return per_currency


def convert_days(
    engine: Engine, per_currency: dict[tuple[date, str], Decimal], to: str, rates: RateBook | None = None
) -> tuple[dict[date, Decimal], list[str]]:
    """Each day's money in ``to`` at that day's rate (one rule for every figure), and notes.

    One note per currency names the days no rate could convert; that money is left out, never guessed.
    """
    out: dict[date, Decimal] = defaultdict(Decimal)
    missing: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    if rates is None and any(currency != to for _, currency in per_currency):
        rates = RateBook.load(engine)
    for (day, currency), amount in sorted(per_currency.items()):
        if currency == to:
            out[day] += amount
            continue
        try:
            out[day] += (rates or RateBook(())).convert(amount, currency, to, day).amount
        except FxError:
            missing[currency].append((day, amount))
    notes = [_missing_note(currency, to, left) for currency, left in sorted(missing.items())]
    return dict(out), notes


def _missing_note(currency: str, to: str, left: list[tuple[date, Decimal]]) -> str:
    """One note per currency (not one per day) for money no rate could convert."""
    days = [d for d, _ in left]
    span = days[0].isoformat() if len(days) == 1 else f"{min(days)} .. {max(days)}"
    total = sum((a for _, a in left), Decimal(0))
    return f"{total:,.2f} {currency} left out: no {currency}->{to} rate for {len(days)} day(s) ({span})"


@dataclass
class BudgetStatus:
    """Where one budget stands in its current period."""

    budget: Budget
    period_start: datetime
    period_end: datetime
    spent: Decimal
    forecast: Forecast
    notes: list[str] = field(default_factory=list)
    #: The period's spend in the display currency, converted day by day with each day's rate
    #: (``None`` when none was asked or it is the budget's own), and the days without a rate.
    shown: Decimal | None = None
    shown_currency: str = ""
    shown_notes: list[str] = field(default_factory=list)

    @property
    def percent(self) -> Decimal:
        """Spend as a percentage of the amount."""
        return self.spent / self.budget.amount * 100

    @property
    def forecast_percent(self) -> Decimal:
        """Forecast as a percentage of the amount."""
        return self.forecast.projected / self.budget.amount * 100

    @property
    def crossed(self) -> tuple[int, ...]:
        """Thresholds reached so far."""
        return tuple(t for t in self.budget.thresholds if self.percent >= t)

    @property
    def forecast_over(self) -> bool:
        """True when the forecast is past the forecast threshold (0 = off)."""
        threshold = self.budget.forecast_threshold
        return threshold > 0 and self.forecast_percent > threshold


def budget_status(
    engine: Engine, budget: Budget, now: datetime, rates: RateBook | None = None, *, display: str = ""
) -> BudgetStatus | None:
    """The budget's spend, percentage and forecast at ``now`` (None outside a custom period).

    With ``display`` (a currency code other than the budget's) the period's spend is also given
    in it, converted day by day from the billing currencies (not the total at one day's rate),
    so the page shows one figure per spend whatever view it appears in.
    """
    period = budget.period_at(now)
    if period is None:
        return None
    start, end = period
    today = now.astimezone(UTC).date()
    history_start = _midnight(start.date()) - DAY * HISTORY_DAYS
    read_until = min(_midnight(today) + DAY, end)
    per_currency = _spend_by_currency(engine, budget, history_start, read_until)
    series, notes = convert_days(engine, per_currency, budget.currency, rates)
    status = _status_from(budget, start, end, today, series, notes)
    display = display.strip().upper()
    if display and display != budget.currency:
        in_period = {k: v for k, v in per_currency.items() if start <= _midnight(k[0]) < end}
        shown, shown_notes = convert_days(engine, in_period, display, rates)
        status.shown, status.shown_currency, status.shown_notes = sum(shown.values(), ZERO), display, shown_notes
    return status


def _status_from(
    budget: Budget, start: datetime, end: datetime, today: date, series: dict[date, Decimal], notes: list[str]
) -> BudgetStatus:
    spent = sum((v for d, v in series.items() if start <= _midnight(d) < end), ZERO)
    forecast = forecast_period(series, start.date(), _ceil_date(end), today)
    if forecast.projected < spent:  # today's partial spend already passes the projection
        forecast = Forecast(
            forecast.period_start,
            forecast.period_end,
            forecast.as_of,
            forecast.actual,
            spent,
            max(forecast.low, spent),
            max(forecast.high, spent),
            forecast.confidence,
            forecast.method,
            forecast.history_days,
            forecast.remaining_days,
        )
    return BudgetStatus(budget, start, end, spent, forecast, notes)


def provider_forecasts(
    engine: Engine, now: datetime, *, currency: str = "USD", rates: RateBook | None = None
) -> dict[str, BudgetStatus]:
    """This month's spend and month-end forecast of every provider, from one grouped read.

    The same numbers :func:`scope_forecast` gives one provider at a time (same series, same
    method), for pages that show them all: one query instead of one per provider.
    """
    start, end = (_midnight(d) for d in month_bounds(now.astimezone(UTC).date()))
    today = now.astimezone(UTC).date()
    history_start = start - DAY * HISTORY_DAYS
    result = report(engine, Filters(history_start, min(_midnight(today) + DAY, end)), by=("provider",), grain="day")
    per_provider: dict[str, dict[tuple[date, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in result.rows:
        if row.cost is not None and row.period is not None and row.section == "provider":
            per_provider[row.dims["provider"]][(row.period.date(), row.currency)] += row.cost
    out = {}
    for provider, per_currency in sorted(per_provider.items()):
        probe = forecast_probe("provider", provider, currency)
        series, notes = convert_days(engine, per_currency, currency, rates)
        out[provider] = _status_from(probe, start, end, today, series, notes)
    return out


def forecast_probe(scope: str, value: str, currency: str = "USD") -> Budget:
    """A budget of 1 unit for a scope: what a forecast without a budget is computed as."""
    values = _validate({"name": "forecast", "scope": scope, "scope_value": value, "amount": 1, "currency": currency})
    return Budget(
        0, "forecast", scope, values["scope_value"], Decimal(1), values["currency"], "month", None, None, (), 0, True
    )


def statuses(engine: Engine, now: datetime | None = None) -> list[BudgetStatus]:
    """Every active budget's status at ``now`` (for the Overview and ``budgets status``)."""
    now = now or datetime.now(UTC)
    rates = RateBook.load(engine)
    found = (budget_status(engine, b, now, rates) for b in list_budgets(engine, active_only=True))
    return [s for s in found if s is not None]


def scope_forecast(
    engine: Engine, scope: str = "all", value: str = "", *, now: datetime | None = None, currency: str = "USD"
) -> tuple[Decimal, Forecast, list[str]]:
    """This month's spend so far and its month-end forecast for any scope, budget or not.

    Returns ``(spent, forecast, notes)`` in ``currency`` (other currencies converted with the
    rates table, or left out with a note).

    Raises:
        BudgetError: an unknown scope, or a scope other than ``all`` without a value.
    """
    now = now or datetime.now(UTC)
    status = budget_status(engine, forecast_probe(scope, value, currency), now)
    if status is None:  # pragma: no cover - a monthly period always contains now
        raise BudgetError("no period contains now")
    return status.spent, status.forecast, status.notes


def _ceil_date(ts: datetime) -> date:
    d = ts.astimezone(UTC).date()
    return d if ts == _midnight(d) else d + DAY


# -- evaluation -----------------------------------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def threshold_alert(status: BudgetStatus, threshold: int, settings: Settings) -> alerts.Alert:
    """The alert for one crossed threshold."""
    b = status.budget
    period = status.period_start.date().isoformat()
    link = alerts.dashboard_link(settings, "budgets", budget=b.id, period=period)
    title = f"Budget '{b.name}' reached {threshold}% ({status.percent:.0f}% used)"
    body = (
        f"{b.scope_label}: spent {_money(status.spent, b.currency)} of {_money(b.amount, b.currency)} "
        f"in the period starting {period}.\nForecast: {status.forecast.describe(b.currency)}."
    )
    return alerts.Alert(
        f"budget:{b.id}:{period}:{threshold}", "threshold", title, body, link, b.id, status.period_start, threshold
    )


def _threshold_alerts(engine: Engine, status: BudgetStatus, settings: Settings, now: datetime) -> list[alerts.Alert]:
    """One alert per jump: the highest threshold newly crossed; the lower ones are recorded as covered.

    Spend that jumps from 40 % to 120 % in one evaluation crossed 50, 80 and 100 %: one message naming
    100 % (and the others it passed) reaches people, not three.
    """
    crossed = {t: threshold_alert(status, t, settings) for t in status.crossed}
    done = alerts.claimed(engine, [a.key for a in crossed.values()])
    new = sorted(t for t, a in crossed.items() if a.key not in done)
    if not new:
        return []
    top = crossed[new[-1]]
    if len(new) > 1:
        passed = ", ".join(f"{t}%" for t in new[:-1])
        top = replace(top, title=f"{top.title}; also passed {passed}")
        for t in new[:-1]:
            alerts.supersede(engine, crossed[t], top, now)
    return [top]


def forecast_alert(status: BudgetStatus, settings: Settings) -> alerts.Alert:
    """The alert for a forecast past the forecast threshold."""
    b = status.budget
    period = status.period_start.date().isoformat()
    link = alerts.dashboard_link(settings, "budgets", budget=b.id, period=period)
    title = f"Budget '{b.name}' is forecast to reach {status.forecast_percent:.0f}% of its amount"
    body = (
        f"{b.scope_label}: {status.forecast.describe(b.currency)}; the budget is "
        f"{_money(b.amount, b.currency)} (spent so far {_money(status.spent, b.currency)})."
    )
    return alerts.Alert(
        f"forecast:{b.id}:{period}:{b.forecast_threshold}",
        "forecast",
        title,
        body,
        link,
        b.id,
        status.period_start,
        b.forecast_threshold,
    )


def anomaly_alert(anomaly: Anomaly, settings: Settings) -> alerts.Alert:
    """The alert for one anomaly (once per scope value, grain point and currency)."""
    when = anomaly.at.strftime("%Y-%m-%d" if anomaly.grain == "day" else "%Y-%m-%dT%H")
    link = alerts.dashboard_link(settings, "budgets", anomaly=anomaly.label, day=anomaly.at.date().isoformat())
    return alerts.Alert(
        f"anomaly:{anomaly.label}:{anomaly.currency}:{when}",
        "anomaly",
        f"Spend anomaly: {anomaly.label} on {when}",
        anomaly.describe(),
        link,
        None,
        anomaly.at,
        0,
    )


def new_spend_alert(notice: NewSpend, settings: Settings) -> alerts.Alert:
    """The one notice for a scope's first spend (once per scope value and currency, ever)."""
    link = alerts.dashboard_link(settings, "budgets", anomaly=notice.label, day=notice.at.date().isoformat())
    return alerts.Alert(
        f"new:{notice.label}:{notice.currency}"[:255],
        "new",
        f"New spend: {notice.label}",
        notice.describe(),
        link,
        None,
        notice.at,
        0,
    )


def anomaly_params(settings: Settings, grain: str = "day") -> Params:
    """Detection parameters from the settings."""
    return Params(
        threshold=Decimal(str(settings.anomaly_threshold)),
        min_ratio=Decimal(str(settings.anomaly_min_ratio)),
        min_amount=Decimal(str(settings.anomaly_min_amount)),
        window=settings.anomaly_window_days if grain == "day" else settings.anomaly_window_days * 24 // 2,
        grain=grain,
    )


@dataclass
class Evaluation:
    """What one evaluation found and sent."""

    statuses: list[BudgetStatus]
    anomalies: list[Anomaly]
    sent: list[str]
    due: list[str]


def evaluate(
    engine: Engine, settings: Settings, now: datetime | None = None, *, check_anomalies: bool = True
) -> Evaluation:
    """Evaluate every active budget (and yesterday's anomalies), sending alerts that are due."""
    now = now or datetime.now(UTC)
    urls = alerts.parse_urls(settings)
    rates = RateBook.load(engine)
    statuses: list[BudgetStatus] = []
    due: list[alerts.Alert] = []
    for budget in list_budgets(engine, active_only=True):
        status = budget_status(engine, budget, now, rates)
        if status is None:
            continue
        statuses.append(status)
        due.extend(_threshold_alerts(engine, status, settings, now))
        if status.forecast_over:
            due.append(forecast_alert(status, settings))
    found: list[Anomaly] = []
    if check_anomalies:
        today = _midnight(now.astimezone(UTC).date())
        scopes = [s.strip() for s in settings.anomaly_scopes.split(",") if s.strip()]
        params = anomaly_params(settings)
        money = display_money(settings.display_currency, rates)
        found = find_anomalies(engine, since=today - DAY, until=today, scopes=scopes, params=params, money=money)
        if settings.anomaly_alerts:
            due.extend(anomaly_alert(a, settings) for a in found)
            fresh = new_spend(engine, since=today - DAY, until=today, scopes=scopes, params=params, money=money)
            due.extend(new_spend_alert(n, settings) for n in fresh)
    sent = [a.key for a in due if alerts.deliver_once(engine, a, urls, now)]
    return Evaluation(statuses, found, sent, [a.key for a in due])


def display_money(currency: str, rates: RateBook) -> Money | None:
    """Anomalies in ``currency`` (LLM_USAGE_DISPLAY_CURRENCY; each day at its rate); None: as billed."""
    currency = currency.strip().upper()
    return Money(currency, rates.day_rate) if currency else None


def after_ingest(engine: Engine, settings: Settings) -> None:
    """Hook for the API sync and the CSV import: evaluate budgets after new data landed.

    Never raises: a failing evaluation must not fail the sync or import that called it.
    """
    try:
        evaluate(engine, settings)
    except Exception:
        log.exception("budget evaluation after ingest failed")


def install_jobs(scheduler: Any, engine: Engine, settings: Settings) -> None:
    """Scheduler installer: evaluate budgets and anomalies every hour (code-anchors §11.12)."""
    scheduler.add_job(
        after_ingest,
        "interval",
        hours=1,
        args=[engine, settings],
        id="budgets:evaluate",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=15 * 60,
    )
