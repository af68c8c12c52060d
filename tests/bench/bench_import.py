"""Benchmark: import a generated 1,000,000-row FOCUS CSV (~440 MB), plain and gzipped.

Baseline, same run: the ``sqlite3`` command-line shell's ``.import`` of the same file into a bare
table (no parsing, no validation, no keys: the floor for "read a CSV into SQLite"). The
target is within 2x of that baseline and a peak RSS under 300 MB. The import must take the
columnar path (``importers/columnar.py``; a run that fell back to the row path fails); the row
path (``columnar=False``) is measured on the plain file too, for what the columnar reader buys.

Each import runs in a fresh child process on a fresh SQLite file, so its peak RSS (from
``os.wait4``) is its own. The file is generated from :mod:`collector.demo.synthetic` (seeded, so every
run imports the same bytes) into the system temp directory (``llm-usage-bench/``, never the
checkout) and reused by later runs; the databases live in a temporary directory deleted
afterwards. Set ``BENCH_IMPORT_ROWS`` for a smaller run. If the ``sqlite3`` shell is missing it is installed
from Debian (``apt-get install -y sqlite3``), and the bench says so.

A single pair of runs swung by a quarter on these shared machines (the baseline alone between
10.1 and 14.4 s in one session), so the pairs run ``BENCH_IMPORT_ROUNDS`` times (3 by default),
each baseline right beside the import it is compared with, after ``sync`` so no run flushes
the previous one's writes; the table shows medians, and each round's ratio is printed too.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from decimal import Decimal
from pathlib import Path

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
#: Rounds of (baseline, ours) pairs; the table shows each run's median.
ROUNDS = max(1, int(os.environ.get("BENCH_IMPORT_ROUNDS", "3")))
ROOT = Path(__file__).resolve().parents[2]

HEADER = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "RegionId",
    "ResourceId",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuMeter",
    "SubAccountId",
    "SubAccountName",
    "Tags",
]
FOCUS_PROVIDERS = {
    "openai": ("OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Claude API"),
    "google": ("Google Cloud", "Vertex AI"),
    "aws_bedrock": ("AWS", "Amazon Bedrock"),
    "azure_openai": ("Microsoft", "Azure AI Services"),
}


REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "ca-central-1",
    "sa-east-1",
    "me-central-1",
)


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` FOCUS rows: each synthetic hourly record as input + output lines in 10 regions.

    Synthetic records are costly to make, so one record fans out to 20 distinct rows (its cost
    and tokens split across regions); every row still has its own natural key.
    """
    from collector.demo.synthetic import GeneratorConfig, generate, rows_per_hour_for

    per_record = 2 * len(REGIONS)
    base = -(-rows // per_record)
    cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(base), seed=4)
    tenth = Decimal(len(REGIONS))
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        written = 0
        for rec in generate(cfg, limit=base):
            provider, service = FOCUS_PROVIDERS.get(rec.provider, (rec.provider.title(), f"{rec.provider.title()} API"))
            start = rec.bucket_start.strftime("%Y-%m-%dT%H:%M:%SZ")
            end = rec.bucket_end.strftime("%Y-%m-%dT%H:%M:%SZ")
            month = rec.bucket_start.strftime("%Y-%m-01T00:00:00Z")
            cost = rec.cost or Decimal(0)
            total = rec.input_tokens + rec.output_tokens or 1
            for direction, tokens in (("Input", rec.input_tokens), ("Output", rec.output_tokens)):
                share = (cost * tokens / total / tenth).quantize(Decimal("0.0000000001"))
                sku = f"{rec.model} {direction} tokens"
                sku_id = f"SKU-{zlib.crc32(sku.encode()):08x}"
                for region in REGIONS:
                    out.writerow(
                        [
                            share,
                            share,
                            share,
                            "ba-bench-0001",
                            "Bench billing account",
                            "USD",
                            month,
                            month,
                            "Usage",
                            "",
                            f"{rec.model} {direction.lower()} tokens",
                            start,
                            end,
                            tokens // 10,
                            "Tokens",
                            tokens // 10,
                            "Tokens",
                            provider,
                            provider,
                            provider,
                            region,
                            f"{provider.lower().replace(' ', '-')}/{region}/{rec.project}/{rec.api_key_id}",
                            "AI and Machine Learning",
                            service,
                            sku_id,
                            sku,
                            rec.project,
                            rec.project.removeprefix("proj_").title(),
                            f'{{"team": "{rec.team}"}}',
                        ]
                    )
                    written += 1
                    if written >= rows:
                        return


def sqlite3_shell() -> str:
    """Path of the ``sqlite3`` shell, installing Debian's package if it is missing."""
    found = shutil.which("sqlite3")
    if found:
        return found
    print("sqlite3 shell not found: installing it with apt-get install -y sqlite3", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "sqlite3"], check=True)
    found = shutil.which("sqlite3")
    if not found:
        raise SystemExit("sqlite3 shell still missing after apt-get; cannot run the baseline")
    return found


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """Run a child process; return (wall seconds, its own peak RSS in MB, its CPU seconds).

    CPU time (user + system, every thread) is reported beside wall time because a shared machine's
    load stretches wall time far more than the work done.
    """
    os.sync()  # the previous run's writes are not flushed during this one
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def child(path: str, db: str, columnar: bool = True) -> None:
    """Import ``path`` into the SQLite file ``db`` (runs in the measured child process)."""
    from collector.db.migrate import open_database
    from importers.service import import_file

    engine = open_database(url=f"sqlite:///{db}")
    result = import_file(path, engine=engine, who="bench", columnar=columnar)
    if not result.ok or result.records < ROWS:
        raise SystemExit(f"import failed: {result.summary()[:5]}")
    if result.columnar != columnar:
        raise SystemExit("the import fell back to the row path")


def main() -> None:
    """Generate the file, run the baseline and our import (plain and gzipped), print the table."""
    shell = sqlite3_shell()
    cache = Path(tempfile.gettempdir()) / "llm-usage-bench"
    cache.mkdir(exist_ok=True)
    plain = cache / f"focus_{ROWS}_seed4_v1.csv"
    gz = plain.with_suffix(".csv.gz")
    t0 = time.perf_counter()
    if not gz.exists():
        generate(plain.with_suffix(".tmp"), ROWS)
        plain.with_suffix(".tmp").rename(plain)
        with plain.open("rb") as src, gzip.open(gz.with_suffix(".tmp"), "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        gz.with_suffix(".tmp").rename(gz)
        how = "generated"
    else:
        how = "reused"
    print(
        f"{how} {ROWS:,} FOCUS rows in {cache}: {plain.stat().st_size / 1e6:.0f} MB plain, "
        f"{gz.stat().st_size / 1e6:.0f} MB gzipped ({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        work = Path(tmp)
        runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in LABELS}
        base_gz = f".import --csv '|gzip -dc {gz}' focus"
        for r in range(ROUNDS):
            # Each baseline beside its own import, in turn: a machine's load moves both alike.
            runs["base_plain"].append(run_measured([shell, str(work / f"base{r}.db"), f".import --csv {plain} focus"]))
            runs["ours_plain"].append(run_measured(ours(plain, work / f"a{r}.db")))
            runs["base_gz"].append(run_measured([shell, str(work / f"gz{r}.db"), base_gz]))
            runs["ours_gz"].append(run_measured(ours(gz, work / f"b{r}.db")))
            for db in work.iterdir():  # keep the temp directory to one round's files
                db.unlink()
        runs["rows_plain"].append(run_measured(ours(plain, work / "c.db", columnar=False)))
    print(f"{ROUNDS} round(s); each figure is the median of its runs, peak RSS the highest")
    print(f"{'run':<40} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'vs baseline':>12} {'CPU s':>6} {'vs':>6}")
    base_of = {"ours_plain": "base_plain", "ours_gz": "base_gz", "rows_plain": "base_plain"}
    for key, label in LABELS:
        secs, rss, cpu = _median(runs[key])
        bsecs, _, bcpu = _median(runs[base_of.get(key, key)])
        print(
            f"{label:<40} {secs:>8.1f} {ROWS / secs:>10,.0f} {rss:>12.0f} {secs / bsecs:>11.2f}x "
            f"{cpu:>6.1f} {cpu / bcpu:>5.2f}x"
        )
    for key in ("ours_plain", "ours_gz"):
        ratios = [o[0] / b[0] for o, b in zip(runs[key], runs[base_of[key]], strict=True)]
        print(f"ratio per round, {key.replace('_', ' ')}: " + ", ".join(f"{x:.2f}x" for x in ratios))
    print("target: within 2x of the baseline, peak RSS under 300 MB")


LABELS = (
    ("base_plain", "baseline: sqlite3 .import (plain)"),
    ("base_gz", "baseline: sqlite3 .import (|gzip -dc)"),
    ("ours_plain", "llm-usage import_file (plain)"),
    ("ours_gz", "llm-usage import_file (.gz)"),
    ("rows_plain", "llm-usage import_file, row path (plain)"),
)


def ours(path: Path, db: Path, *, columnar: bool = True) -> list[str]:
    """The command that imports ``path`` into ``db`` in a child process (see :func:`child`)."""
    call = f"child({str(path)!r}, {str(db)!r}{'' if columnar else ', False'})"
    return [sys.executable, "-c", f"from tests.bench.bench_import import child; {call}"]


def _median(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Median wall and CPU seconds of the runs, and their highest peak RSS."""
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs), statistics.median(r[2] for r in runs)


if __name__ == "__main__":
    main()
