"""Forecast, anomaly and export figures on generator data, each beside a same-run baseline.

* Forecast back-test over 12 generated months: MAPE of the period-end projection made after 10
  and after 20 days, for :mod:`collector.finance.forecast` and for the naive run rate (month-to-date
  mean x days in the month), the usual spreadsheet method.
* Anomaly detection with 20 injected spikes: recall and false alarms per 30 days per scope, for
  :mod:`collector.finance.anomaly` and for a mean + 3 standard deviations rule on the same trailing window
  without seasonality.
* FOCUS export throughput (rows/s) beside the plain usage-row CSV export of the same window.
"""

from __future__ import annotations

import io
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from collector.core.store import upsert_records
from collector.db.migrate import open_database
from collector.demo.synthetic import GeneratorConfig, generate
from collector.finance.anomaly import Params, detect
from collector.finance.export import write_focus_csv, write_usage_csv
from collector.finance.forecast import backtest, month_bounds

DAY = timedelta(days=1)


def _naive_mape(series: dict[date, Decimal], n: int) -> float:
    errors = []
    for point in backtest(series, (n,)):
        start, end = month_bounds(point.month)
        mtd = sum((series.get(start + DAY * i, Decimal(0)) for i in range(n)), Decimal(0))
        projected = mtd / n * (end - start).days
        errors.append(float(abs(projected - point.actual_total) / point.actual_total))
    return sum(errors) / len(errors)


def forecast_figures() -> None:
    series: dict[date, Decimal] = defaultdict(Decimal)
    for rec in generate(GeneratorConfig(days=365, rows_per_hour=20)):
        if rec.cost is not None:
            series[rec.bucket_start.date()] += rec.cost
    points = backtest(series)
    print("forecast back-test, 12 months (seed 42, 20 rows/hour):")
    print(f"  {'month':<8} {'day 10 APE':>11} {'day 20 APE':>11}")
    for month in sorted({p.month for p in points}):
        ape = {p.day_of_month: p.ape for p in points if p.month == month}
        print(f"  {month:%Y-%m}  {ape[10]:>10.1%} {ape[20]:>10.1%}")
    for n in (10, 20):
        ours = statistics.mean(p.ape for p in points if p.day_of_month == n)
        inside = sum(p.inside_interval for p in points if p.day_of_month == n)
        print(
            f"  day {n}: MAPE {ours:.2%} (80% interval held the actual in {inside}/12 months); "
            f"baseline naive run rate MAPE {_naive_mape(series, n):.2%}"
        )


def _mean_sd_rule(points: dict[datetime, Decimal], since: datetime, until: datetime) -> set[datetime]:
    flagged = set()
    day = since
    while day < until:
        window = [float(points.get(day - DAY * i, Decimal(0))) for i in range(1, 29)]
        mean, sd = statistics.mean(window), statistics.pstdev(window)
        if float(points.get(day, Decimal(0))) > mean + 3 * sd:
            flagged.add(day)
        day += DAY
    return flagged


def anomaly_figures() -> None:
    cfg = GeneratorConfig(days=180, rows_per_hour=20)
    per: dict[str, dict[datetime, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for rec in generate(cfg):
        if rec.cost is not None:
            per[rec.provider][rec.bucket_start.replace(hour=0)] += rec.cost
    since = cfg.start + DAY * 28
    days = [since + DAY * i for i in range((cfg.end - since).days)]
    rng = random.Random(7)
    spikes: set[tuple[str, datetime]] = set()
    while len(spikes) < 20:
        spikes.add((rng.choice(sorted(per)), rng.choice(days)))
    for provider, day in spikes:
        usual = sorted(per[provider][day - DAY * 7 * k] for k in range(1, 5))[1]
        per[provider][day] += usual * Decimal(str(rng.uniform(2.0, 4.0)))
    params = Params(threshold=Decimal(6), min_ratio=Decimal("0.5"), min_amount=Decimal(1))
    results = {}
    for name in ("median/MAD seasonal", "baseline mean+3sd"):
        flagged: set[tuple[str, datetime]] = set()
        for provider, points in per.items():
            if name.startswith("median"):
                found = {s.at for s in detect(points, params, since=since, until=cfg.end)}
            else:
                found = _mean_sd_rule(points, since, cfg.end)
            flagged |= {(provider, d) for d in found}
        false_alarms = Counter(p for p, _ in flagged - spikes)
        results[name] = (
            len(spikes & flagged) / 20,
            sum(false_alarms.values()) / len(per) / len(days) * 30,
            max(false_alarms.values(), default=0) / len(days) * 30,
        )
    print(f"anomaly detection, 20 spikes of +2..4x a usual day, {len(per)} provider scopes x {len(days)} days:")
    for name, (recall, fa, worst) in results.items():
        print(f"  {name:<22} recall {recall:.0%}, false alarms {fa:.2f} per 30 days per scope (worst {worst:.2f})")


def export_figures() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(url=f"sqlite:///{tmp}/bench.db")
        cfg = GeneratorConfig(days=31, rows_per_hour=115, end=datetime(2026, 11, 1, tzinfo=UTC))
        upsert_records(engine, generate(cfg))
        since, until = cfg.start, cfg.end
        for label, writer in (("plain usage CSV (baseline)", write_usage_csv), ("FOCUS 1.2 CSV", write_focus_csv)):
            started = time.perf_counter()
            result = writer(engine, since, until, io.StringIO())
            elapsed = time.perf_counter() - started
            print(f"  {label:<28} {result.rows:>8,} rows in {elapsed:5.2f} s = {result.rows / elapsed:>9,.0f} rows/s")
        engine.dispose()


def main() -> None:
    """Print all three tables."""
    forecast_figures()
    anomaly_figures()
    print("export of one month (SQLite, 115 rows/hour):")
    export_figures()


if __name__ == "__main__":
    main()
