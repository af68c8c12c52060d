"""Reconciliation of the fake admin API's month: the residual per provider before and after, and its cost.

Syncs October 2026 from :mod:`tests.fakes.month` through the real sync engine into a SQLite file,
then prints, per provider:

* the gap *before* attribution: billed - the tokens at genai-prices' standard rates (what the
  product estimated before it priced tiers and line items, with nothing to say why);
* the residual *after* attribution: what no named cause explains;

and times :func:`collector.query.reconcile.reconcile` (p50/p99 of 11 runs) beside a same-run
baseline: the two :func:`collector.query.report.report` reads it makes, without the attribution
(the estimate read by provider, account and model as before). ``make bench BENCH=reconcile``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import Engine

from collector.db.migrate import open_database
from collector.query.reconcile import reconcile, summarise
from collector.query.report import report
from tests.query.month_db import WINDOW, load_month

RUNS = 11


def _times(fn: Callable[[], object]) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def _baseline(engine: Engine) -> None:
    report(engine, WINDOW, by=("provider", "account", "line_item", "model"), grain="day", basis="billed")
    wide = replace(WINDOW, sources=("api", "csv", "proxy", "otel"))
    report(engine, wide, by=("provider", "account", "model"), grain="day", basis="estimated")


def main() -> None:
    """Print the residual per provider before and after, and reconcile's time beside its reads."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = open_database(url=f"sqlite:///{folder / 'usage.db'}")
        started = time.perf_counter()
        load_month(engine, folder)
        print(f"synced October 2026 from the fake admin API in {time.perf_counter() - started:.1f} s")
        result = reconcile(engine, WINDOW)
        print(f"  {'provider':<10} {'billed':>10} {'gap before':>12} {'% billed':>9} {'residual':>10} {'% billed':>9}")
        for s in summarise(result, ("provider",)):
            billed = s.billed or 0
            before, after = s.gap_before, s.residual
            print(
                f"  {s.provider:<10} {billed:>10.2f} {before:>12.2f} {before / billed * 100:>8.2f}% "
                f"{after:>10.4f} {after / billed * 100:>8.3f}%"
            )
        ours = _times(lambda: reconcile(engine, WINDOW))
        base = _times(lambda: _baseline(engine))
        print(f"  reconcile (with attribution): p50 {ours[0]:.0f} ms, p99 {ours[1]:.0f} ms")
        print(f"  baseline (its two report reads, no attribution): p50 {base[0]:.0f} ms, p99 {base[1]:.0f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
