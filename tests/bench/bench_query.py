"""How fast the shared query layer answers, beside raw ``sqlite3`` over the same rollup.

Builds ~1M synthetic hourly usage rows (12 months) in a SQLite file, then times:

* ``report --by provider,model --grain day`` for the 12 months (reads the slim daily rollup,
  ``usage_daily_slim``, rebuilt by the untimed first call), against a baseline of a raw
  ``sqlite3`` ``SUM ... GROUP BY day, provider, model`` over ``usage_daily``, with the ratio in
  wall time and in CPU time (both run in this process; CPU time is what load does not blur);
* the same for one month with ``--tz Asia/Seoul`` (reads hourly ``usage`` and regroups by local
  day), against a raw ``SUM ... GROUP BY hour, provider, model`` over ``usage``.

Prints p50/p99 in milliseconds (with 11 or 5 samples, p99 is the slowest run). Runs with
``make bench BENCH=query``: about 3 minutes under load, most of it building the database.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from collector.core.store import upsert_records
from collector.db.migrate import open_database
from collector.demo.synthetic import GeneratorConfig, generate, rows_per_hour_for
from collector.query.report import Filters, report

TOTAL_ROWS = 1_000_000
RUNS = 11
END = datetime(2026, 11, 1, tzinfo=UTC)
YEAR = Filters(since=datetime(2025, 11, 1, tzinfo=UTC), until=END)
#: Set up by hand (``python -m tests.bench.bench_query --keep``) to skip the build while tuning.
CACHE = Path(__file__).resolve().parent.parent / "artifacts" / "bench_query.db"
MONTH = Filters(since=datetime(2026, 10, 1, tzinfo=UTC), until=END)


#: The grouping the report itself asks of ``usage_daily`` for ``--by provider,model --grain day``:
#: its keys (the basis rule needs account, source, kind) and all ten sums (seven token columns,
#: quantity, cost, rows), run through ``sqlite3`` alone: what is left of the report's time above
#: this line is Python (the basis rule, the merge, sorting).
_KEYS = "provider, model, day, account, source, kind, basis, currency, quantity_unit"
SAME_SUMS_SQL = (
    f"SELECT {_KEYS}, SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_5m_tokens), "
    "SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(requests), "
    "SUM(quantity), SUM(cost), SUM(rows) FROM usage_daily WHERE day >= ? AND day < ? "
    f"GROUP BY {_KEYS}"
)


#: CPU-time medians of the last timed call, by label (both sides run in this process, so
#: CPU time compares them without the noise other processes add to wall time).
CPU: dict[str, float] = {}


def _times(fn: Callable[[], object], runs: int = RUNS, label: str = "") -> tuple[float, float, object]:
    fn()  # warm the page cache and statement caches (and, for the report, rebuild marked slim days)
    samples = []
    cpu = []
    out: object = None
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        out = fn()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    CPU[label] = statistics.median(cpu)
    return statistics.median(samples), p99, out


def _row(name: str, p50: float, p99: float, rows: int, label: str = "") -> None:
    cpu = f"   CPU p50 {CPU[label]:7.1f} ms" if label in CPU else ""
    print(f"  {name:<58} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms{cpu}   ({rows:,} rows out)")


def _ratio(name: str, ours: float, base: float, ours_label: str, base_label: str) -> None:
    print(f"  {name:<58} wall p50 {ours / base:5.2f}x   CPU p50 {CPU[ours_label] / CPU[base_label]:5.2f}x")


def main() -> None:
    """Build the database, run each query ``RUNS`` times, print p50/p99 beside the baselines."""
    with tempfile.TemporaryDirectory() as tmp:
        path = CACHE if CACHE.exists() else Path(tmp) / "bench.db"
        engine = open_database(url=f"sqlite:///{path}")
        started = time.perf_counter()
        if path != CACHE:
            cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(TOTAL_ROWS), end=END)
            upsert_records(engine, generate(cfg, limit=TOTAL_ROWS))
        build = time.perf_counter() - started
        raw = sqlite3.connect(path)
        usage_rows = raw.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
        daily_rows = raw.execute("SELECT COUNT(*) FROM usage_daily").fetchone()[0]
        how = f"reused {CACHE}" if path == CACHE else f"built in {build:.1f} s"
        print(f"  {usage_rows:,} usage rows ({daily_rows:,} daily rollup rows), {how}")

        y0, y1 = int(YEAR.since.timestamp()), int(YEAR.until.timestamp())
        base_sql = (
            "SELECT day, provider, model, basis, currency, SUM(input_tokens), SUM(cache_read_tokens), "
            "SUM(output_tokens), SUM(requests), SUM(cost) FROM usage_daily WHERE day >= ? AND day < ? "
            "GROUP BY day, provider, model, basis, currency"
        )
        base50, p99, out = _times(lambda: raw.execute(base_sql, (y0, y1)).fetchall(), label="base")
        _row("baseline: sqlite3 SUM GROUP BY over usage_daily, 12 months", base50, p99, len(out), "base")  # type: ignore[arg-type]
        p50, p99, out = _times(lambda: raw.execute(SAME_SUMS_SQL, (y0, y1)).fetchall(), label="same")
        _row("baseline: sqlite3, the report's keys and 10 sums, 12 months", p50, p99, len(out), "same")  # type: ignore[arg-type]
        p50, p99, res = _times(lambda: report(engine, YEAR, by=("provider", "model"), grain="day"), label="report")
        _row("report --by provider,model --grain day, 12 months", p50, p99, len(res.rows), "report")  # type: ignore[attr-defined]
        _ratio("report / baseline (target: 2x or less)", p50, base50, "report", "base")
        p50, p99, res = _times(lambda: report(engine, YEAR, by=("provider",), basis="estimated"))
        _row("report --by provider --basis estimated, 12 months", p50, p99, len(res.rows))  # type: ignore[attr-defined]

        m0, m1 = int(MONTH.since.timestamp()), int(MONTH.until.timestamp())
        hourly_sql = (
            "SELECT bucket_start - bucket_start % 3600, provider, model, basis, currency, SUM(input_tokens), "
            "SUM(output_tokens), SUM(requests), SUM(cost) FROM usage WHERE bucket_start >= ? AND bucket_start < ? "
            "GROUP BY 1, provider, model, basis, currency"
        )
        p50, p99, out = _times(lambda: raw.execute(hourly_sql, (m0, m1)).fetchall(), runs=5)
        _row("baseline: sqlite3 SUM GROUP BY hour over usage, 1 month", p50, p99, len(out))  # type: ignore[arg-type]
        p50, p99, res = _times(
            lambda: report(engine, MONTH, by=("provider", "model"), grain="day", tz="Asia/Seoul"), runs=5
        )
        _row("report --by provider,model --grain day --tz Asia/Seoul, 1 month", p50, p99, len(res.rows))  # type: ignore[attr-defined]
        raw.close()
        engine.dispose()


def keep() -> None:
    """Build the benchmark database once at :data:`CACHE` (gitignored) for repeated runs."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    engine = open_database(url=f"sqlite:///{CACHE}")
    cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(TOTAL_ROWS), end=END)
    upsert_records(engine, generate(cfg, limit=TOTAL_ROWS))


if __name__ == "__main__":
    import sys

    keep() if "--keep" in sys.argv else main()
