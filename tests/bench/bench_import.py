"""Benchmark: import a generated 1,000,000-row FOCUS CSV (~440 MB), plain and gzipped.

Baseline, same run: the ``sqlite3`` command-line shell's ``.import`` of the same file into a bare
table (no parsing, no validation, no keys: the floor for "read a CSV into SQLite"). The issue-4
target is within 3x of that baseline and a peak RSS under 300 MB.

Each import runs in a fresh child process on a fresh SQLite file, so its peak RSS (from
``os.wait4``) is its own. The file is generated from :mod:`collector.synthetic` (seeded, so every
run imports the same bytes) into a temporary directory and deleted afterwards; set
``BENCH_IMPORT_ROWS`` for a smaller run. If the ``sqlite3`` shell is missing it is installed
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


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` FOCUS rows: each synthetic hourly record as an input and an output line."""
    from collector.synthetic import GeneratorConfig, generate, rows_per_hour_for

    half = rows // 2
    cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(half), seed=4)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER)
        written = 0
        for rec in generate(cfg, limit=half):
            provider, service = FOCUS_PROVIDERS.get(rec.provider, (rec.provider.title(), f"{rec.provider.title()} API"))
            start = rec.bucket_start.strftime("%Y-%m-%dT%H:%M:%SZ")
            end = rec.bucket_end.strftime("%Y-%m-%dT%H:%M:%SZ")
            month = rec.bucket_start.strftime("%Y-%m-01T00:00:00Z")
            cost = rec.cost or Decimal(0)
            total = rec.input_tokens + rec.output_tokens or 1
            resource = f"{provider.lower().replace(' ', '-')}/{rec.project}/{rec.api_key_id}"
            for direction, tokens in (("Input", rec.input_tokens), ("Output", rec.output_tokens)):
                share = (cost * tokens / total).quantize(Decimal("0.0000000001"))
                sku = f"{rec.model} {direction} tokens"
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
                        tokens,
                        "Tokens",
                        tokens,
                        "Tokens",
                        provider,
                        provider,
                        provider,
                        "us-east-1",
                        resource,
                        "AI and Machine Learning",
                        service,
                        f"SKU-{abs(hash(sku)) % 10**8:08d}",
                        sku,
                        rec.project,
                        rec.project.removeprefix("proj_").title(),
                        f'{{"team": "{rec.team}"}}',
                    ]
                )
                written += 1
    assert written >= rows - 1, written


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


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Run a child process; return (wall seconds, its own peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def child(path: str, db: str) -> None:
    """Import ``path`` into the SQLite file ``db`` (runs in the measured child process)."""
    from collector.migrate import open_database
    from importers.service import import_file

    engine = open_database(url=f"sqlite:///{db}")
    result = import_file(path, engine=engine, who="bench")
    if not result.ok or result.records < ROWS // 2:
        raise SystemExit(f"import failed: {result.summary()[:5]}")


def main() -> None:
    """Generate the file, run the baseline and our import (plain and gzipped), print the table."""
    shell = sqlite3_shell()
    with tempfile.TemporaryDirectory(prefix="bench_import_") as tmp:
        work = Path(tmp)
        plain = work / "focus_1m.csv"
        t0 = time.perf_counter()
        generate(plain, ROWS)
        gz = work / "focus_1m.csv.gz"
        with plain.open("rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        size_mb = plain.stat().st_size / 1e6
        print(
            f"generated {ROWS:,} FOCUS rows: {size_mb:.0f} MB plain, {gz.stat().st_size / 1e6:.0f} MB gzipped "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
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
    print(f"{'run':<44} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'vs baseline':>12}")
    for label, (secs, rss), base in (
        ("baseline: sqlite3 .import (plain)", base_plain, base_plain[0]),
        ("baseline: sqlite3 .import (|gzip -dc)", base_gz, base_gz[0]),
        ("llm-usage import_file (plain)", ours_plain, base_plain[0]),
        ("llm-usage import_file (.gz)", ours_gz, base_gz[0]),
    ):
        print(f"{label:<44} {secs:>8.1f} {ROWS / secs:>10,.0f} {rss:>12.0f} {secs / base:>11.2f}x")
    print("target: within 3x of the baseline, peak RSS under 300 MB")


if __name__ == "__main__":
    main()
