"""Period-end spend forecasts from a daily series: weekday-seasonal run rate with an interval.

The method (named in every result as :data:`METHOD`) is deliberately simple, because a budget
owner has to be able to check it by hand:

1. Take the complete days before ``as_of`` (at most ``history_days`` of them; a day with no
   spend inside the observed range counts as 0).
2. Weekday factors: the mean spend of each weekday divided by the mean of all days, when every
   weekday has been seen at least twice; otherwise all factors are 1 (a flat run rate). Weekday
   factors matter because LLM traffic follows office hours: weekends are often half of a weekday.
3. Level: the mean *deseasonalised* spend (value / its weekday factor) of the last
   ``level_days`` days, so a recent step up or down moves the forecast quickly.
4. Projection: the period's actual spend so far + level x factor for every remaining day.
5. Interval (``confidence``, 80 % by default, normal approximation): the deseasonalised daily
   spread ``s`` gives, for the remaining days' factors ``f``, a variance
   ``s^2 * sum(f^2)`` (day-to-day noise) ``+ s^2 * sum(f)^2 / m`` (uncertainty of a level
   estimated from ``m`` days). The low end never goes below what is already spent.

Everything is :class:`~decimal.Decimal` (design rule 3: a float never touches money), and the
functions are pure over ``(day, amount)`` pairs, so they are tested and back-tested without a
database; :func:`collector.finance.budgets.scope_forecast` feeds them from the query layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from statistics import NormalDist

METHOD = "weekday-seasonal run rate (mean of the last 14 deseasonalised days; 56-day weekday factors)"
DAY = timedelta(days=1)
ZERO = Decimal(0)
CENT = Decimal("0.01")


class ForecastError(ValueError):
    """A forecast request that makes no sense (e.g. a period that ends before it starts)."""


@dataclass(frozen=True)
class Forecast:
    """Projected spend at the end of ``[period_start, period_end)`` as seen on ``as_of``.

    ``actual`` is the spend of the period's complete days before ``as_of``; ``projected`` adds the
    expected spend of the remaining days; ``low``/``high`` bound it at ``confidence``.
    """

    period_start: date
    period_end: date
    as_of: date
    actual: Decimal
    projected: Decimal
    low: Decimal
    high: Decimal
    confidence: float
    method: str
    history_days: int
    remaining_days: int

    def describe(self, currency: str = "") -> str:
        """One line for alerts and the CLI."""
        unit = f" {currency}" if currency else ""
        pct = round(self.confidence * 100)
        return (
            f"projected {self.projected:,.2f}{unit} by {(self.period_end - DAY).isoformat()} "
            f"({pct}% interval {self.low:,.2f} .. {self.high:,.2f}; {self.method}; {self.history_days} days of history)"
        )


def month_bounds(day: date) -> tuple[date, date]:
    """First day of ``day``'s month and first day of the next month."""
    start = day.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


def _dense(series: Mapping[date, Decimal], first: date, until: date) -> list[tuple[date, Decimal]]:
    """Every day in ``[first, until)`` with its amount, 0 where the series has no entry."""
    out = []
    day = first
    while day < until:
        out.append((day, series.get(day, ZERO)))
        day += DAY
    return out


def weekday_factors(days: list[tuple[date, Decimal]]) -> list[Decimal]:
    """Mean of each weekday / mean of all days; all 1 unless every weekday was seen twice."""
    sums = [ZERO] * 7
    counts = [0] * 7
    for day, value in days:
        sums[day.weekday()] += value
        counts[day.weekday()] += 1
    total = sum(sums, ZERO)
    if min(counts) < 2 or total <= 0:
        return [Decimal(1)] * 7
    mean = total / len(days)
    return [(sums[w] / counts[w]) / mean if sums[w] > 0 else Decimal("0.01") for w in range(7)]


def forecast_period(
    series: Mapping[date, Decimal] | Iterable[tuple[date, Decimal]],
    period_start: date,
    period_end: date,
    as_of: date,
    *,
    history_days: int = 56,
    level_days: int = 14,
    confidence: float = 0.8,
) -> Forecast:
    """Project the spend of ``[period_start, period_end)`` from complete days before ``as_of``.

    Args:
        series: daily spend (one currency, one basis), any order; days may be missing.
        period_start: first day of the period.
        period_end: first day after the period.
        as_of: the first day that is *not* complete (today, for a live forecast).
        history_days: how many complete days before ``as_of`` to learn from.
        level_days: how many recent days set the level.
        confidence: coverage of the interval (0 < c < 1).

    Raises:
        ForecastError: an empty period or a confidence outside (0, 1).
    """
    if period_end <= period_start:
        raise ForecastError(f"period end {period_end} is not after its start {period_start}")
    if not 0 < confidence < 1:
        raise ForecastError(f"confidence must be between 0 and 1, got {confidence}")
    data = dict(series) if not isinstance(series, Mapping) else series
    as_of = min(max(as_of, period_start), period_end)
    observed = [d for d in data if d < as_of]
    actual = sum((v for d, v in data.items() if period_start <= d < as_of), ZERO)
    remaining = [as_of + DAY * i for i in range((period_end - as_of).days)]
    if not observed:
        return Forecast(
            period_start,
            period_end,
            as_of,
            actual,
            actual,
            actual,
            actual,
            confidence,
            METHOD + " (no history)",
            0,
            len(remaining),
        )
    first = max(min(observed), as_of - DAY * history_days)
    history = _dense(data, first, as_of)
    factors = weekday_factors(history)
    deseasonalised = [v / factors[d.weekday()] for d, v in history]
    recent = deseasonalised[-level_days:]
    level = sum(recent, ZERO) / len(recent)
    weights = [factors[d.weekday()] for d in remaining]
    expected = level * sum(weights, ZERO)
    projected = actual + expected
    spread = _stdev(deseasonalised)
    m = Decimal(len(recent))
    variance = spread**2 * sum((w * w for w in weights), ZERO) + spread**2 * sum(weights, ZERO) ** 2 / m
    z = Decimal(str(NormalDist().inv_cdf(0.5 + confidence / 2)))
    half = z * variance.sqrt() if variance > 0 else ZERO
    return Forecast(
        period_start=period_start,
        period_end=period_end,
        as_of=as_of,
        actual=actual,
        projected=projected.quantize(CENT),
        low=max(actual, projected - half).quantize(CENT),
        high=(projected + half).quantize(CENT),
        confidence=confidence,
        method=METHOD,
        history_days=len(history),
        remaining_days=len(remaining),
    )


def _stdev(values: list[Decimal]) -> Decimal:
    if len(values) < 2:
        return ZERO
    mean = sum(values, ZERO) / len(values)
    return (sum(((v - mean) ** 2 for v in values), ZERO) / (len(values) - 1)).sqrt()


@dataclass(frozen=True)
class BacktestPoint:
    """One back-test forecast: a month, the day it was made on, and its error."""

    month: date
    day_of_month: int
    projected: Decimal
    actual_total: Decimal
    inside_interval: bool

    @property
    def ape(self) -> float:
        """Absolute percentage error (0.05 = 5 %)."""
        if self.actual_total == 0:
            return 0.0 if self.projected == 0 else float("inf")
        return float(abs(self.projected - self.actual_total) / self.actual_total)


def backtest(series: Mapping[date, Decimal], days_of_month: Iterable[int] = (10, 20)) -> list[BacktestPoint]:
    """Forecast every complete month in ``series`` after ``n`` complete days, for each ``n``.

    A forecast "at day 10" knows days 1..10 of the month (``as_of`` is the 11th) and every
    earlier day; it is compared with the month's actual total.
    """
    if not series:
        return []
    first, last = min(series), max(series)
    month, _ = month_bounds(first)
    if month < first:  # the first month is partial: start at the next one
        month = month_bounds(first)[1]
    out: list[BacktestPoint] = []
    while True:
        start, end = month_bounds(month)
        if end - DAY > last:
            break
        total = sum((v for d, v in series.items() if start <= d < end), ZERO)
        for n in days_of_month:
            fc = forecast_period(series, start, end, start + DAY * n)
            out.append(BacktestPoint(start, n, fc.projected, total, fc.low <= total <= fc.high))
        month = end
    return out
