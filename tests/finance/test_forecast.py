"""Forecasts: exact on clean series, seasonal on weekly ones, and a 12-month back-test on generator data."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest

from collector.demo.synthetic import GeneratorConfig, generate
from collector.finance.forecast import METHOD, ForecastError, backtest, forecast_period, month_bounds, weekday_factors

D = Decimal


def test_flat_series_projects_exactly_with_a_zero_width_interval():
    series = {date(2026, 10, 1) + timedelta(days=i): D(10) for i in range(40)}
    fc = forecast_period(series, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 1))
    assert fc.projected == D(300) and fc.low == fc.high == D(300)
    assert fc.actual == 0 and fc.remaining_days == 30 and fc.method == METHOD


def test_actual_days_count_and_only_remaining_days_are_projected():
    series = {date(2026, 10, 1) + timedelta(days=i): D(10) for i in range(31)}
    series.update({date(2026, 11, 1) + timedelta(days=i): D(20) for i in range(10)})
    fc = forecast_period(series, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 11))
    assert fc.actual == D(200)
    assert fc.remaining_days == 20
    assert fc.projected > D(200) + 20 * D(10)  # the level moved up with the recent days


def test_weekday_seasonality_is_learned_and_used():
    start = date(2026, 9, 7)  # a Monday
    series = {
        start + timedelta(days=i): (D(100) if (start + timedelta(days=i)).weekday() < 5 else D(20)) for i in range(56)
    }
    factors = weekday_factors(list(series.items()))
    assert factors[0] > D(1) > factors[6]
    # A week that starts on Monday: 5 x 100 + 2 x 20 exactly.
    as_of = start + timedelta(days=56)
    fc = forecast_period(series, as_of, as_of + timedelta(days=7), as_of)
    assert fc.projected == D(540)


def test_noisy_series_has_an_interval_around_the_projection():
    series = {date(2026, 9, 1) + timedelta(days=i): D(100 + (17 * i) % 40) for i in range(61)}
    fc = forecast_period(series, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 1))
    assert fc.low < fc.projected < fc.high
    assert "interval" in fc.describe("USD") and "USD" in fc.describe("USD")


def test_no_history_projects_what_is_spent():
    fc = forecast_period({}, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 5))
    assert fc.projected == 0 and "no history" in fc.method


@pytest.mark.parametrize(
    ("start", "end", "confidence"),
    [(date(2026, 11, 2), date(2026, 11, 1), 0.8), (date(2026, 11, 1), date(2026, 12, 1), 1.0)],
)
def test_bad_requests_are_refused(start, end, confidence):
    with pytest.raises(ForecastError):
        forecast_period({}, start, end, start, confidence=confidence)


def test_month_bounds_wrap_the_year():
    assert month_bounds(date(2026, 12, 15)) == (date(2026, 12, 1), date(2027, 1, 1))


def test_backtest_over_twelve_generated_months_reports_mape_at_day_10_and_20(capsys):
    series: dict[date, Decimal] = defaultdict(Decimal)
    for rec in generate(GeneratorConfig(days=365, rows_per_hour=6)):
        if rec.cost is not None:
            series[rec.bucket_start.date()] += rec.cost
    points = backtest(series)
    assert len(points) == 24  # 12 months x (day 10, day 20)
    with capsys.disabled():
        print("\nforecast back-test (generator seed 42, 12 months):")
        for p in points:
            print(
                f"  {p.month:%Y-%m} day {p.day_of_month}: projected {p.projected:,.2f} "
                f"actual {p.actual_total:,.2f} APE {p.ape:.1%}"
            )
    mape = {n: sum(p.ape for p in points if p.day_of_month == n) / 12 for n in (10, 20)}
    with capsys.disabled():
        print(f"  MAPE day 10: {mape[10]:.2%}  day 20: {mape[20]:.2%}")
    assert mape[20] < mape[10] < 0.10  # more days known -> smaller error; both within 10 %
    assert sum(p.inside_interval for p in points if p.day_of_month == 20) >= 9
