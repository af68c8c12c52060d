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
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from decimal import Decimal
from pathlib import Path

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
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
        base_plain = run_measured([shell, str(work / "base.db"), f".import --csv {plain} focus"])
        base_gz = run_measured([shell, str(work / "base_gz.db"), f".import --csv '|gzip -dc {gz}' focus"])
        ours_plain = run_measured(
            [
                sys.executable,
                "-c",
                f"from tests.bench.bench_import import child; child({str(plain)!r}, {str(work / 'a.db')!r})",
            ]
        )
        ours_gz = run_measured(
            [
                sys.executable,
                "-c",
                f"from tests.bench.bench_import import child; child({str(gz)!r}, {str(work / 'b.db')!r})",
            ]
        )
        rows_plain = run_measured(
            [
                sys.executable,
                "-c",
                f"from tests.bench.bench_import import child; child({str(plain)!r}, {str(work / 'c.db')!r}, False)",
            ]
        )
    print(f"{'run':<40} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'vs baseline':>12} {'CPU s':>6} {'vs':>6}")
    for label, (secs, rss, cpu), base in (
        ("baseline: sqlite3 .import (plain)", base_plain, base_plain),
        ("baseline: sqlite3 .import (|gzip -dc)", base_gz, base_gz),
        ("llm-usage import_file (plain)", ours_plain, base_plain),
        ("llm-usage import_file (.gz)", ours_gz, base_gz),
        ("llm-usage import_file, row path (plain)", rows_plain, base_plain),
    ):
        print(
            f"{label:<40} {secs:>8.1f} {ROWS / secs:>10,.0f} {rss:>12.0f} {secs / base[0]:>11.2f}x "
            f"{cpu:>6.1f} {cpu / base[2]:>5.2f}x"
        )
    print("target: within 2x of the baseline, peak RSS under 300 MB")


if __name__ == "__main__":
    main()
