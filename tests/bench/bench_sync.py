"""API sync benchmark: a 90-day hourly back-fill from the fake admin API, both providers.

The fake server (``tests/fakes/admin_api.py``) runs in its own process with 50 groups per bucket.
Two passes over the same windows and pages, in the same run:

* **baseline** — fetch every page through the product's HTTP client and pager (JSON decoded
  with exact decimals), then discard it;
* **sync** — :func:`collector.sync.engine.sync_connection`: fetch, parse into ``UsageRecord``s with
  estimates, upsert into a fresh SQLite file with the high-water mark per page.

The difference is what parsing and storing add (target: at most +50 % over fetch-only).
Endpoints: OpenAI ``completions`` + ``costs`` and Anthropic ``messages`` + ``cost_report`` +
``claude_code`` (the token and money endpoints; the other nine OpenAI usage endpoints have the
same shape and would only multiply the run time). Set ``BENCH_SYNC_ALL_ENDPOINTS=1`` for all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.core.settings import Settings
from collector.core.windows import floor
from collector.db.migrate import open_database
from collector.sync.connections import add_connection
from collector.sync.engine import plan, sync_connection
from collector.sync.vault import load_vault, new_secret
from providers import get_provider

DAYS = 90
GROUPS = 50
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"openai": "sk-admin-test-bench0000001", "anthropic": "sk-ant-admin01-test-bench01"}
ENDPOINTS = {"openai": {"completions", "costs"}, "anthropic": {"messages", "cost_report", "claude_code"}}


def _server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.admin_api", "--groups", str(GROUPS)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _server_cpu(pid: int) -> float:
    """CPU seconds the fake server process has used (Linux /proc), to show the serving side too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wanted(provider: str) -> set[str] | None:
    return None if os.environ.get("BENCH_SYNC_ALL_ENDPOINTS") else ENDPOINTS[provider]


def _fetch_only(settings: Settings, base_url: str, now: datetime) -> tuple[float, float, int]:
    """Walk the same pages the sync will, decode them, drop them."""
    pages = 0
    started, cpu = time.perf_counter(), time.process_time()
    for name, key in KEYS.items():
        api = get_provider(name).connect(settings, key, base_url=base_url)
        wanted = _wanted(name)
        for ep in api.endpoints:
            if wanted and ep.name not in wanted:
                continue
            window = plan(
                now=now, width=ep.width, lookback=api.lookback(ep), backfill=timedelta(days=DAYS), high_water=None
            )
            assert window is not None
            for _page in api.pages(ep, window):
                pages += 1
        api.close()
    return time.perf_counter() - started, time.process_time() - cpu, pages


def _sync(settings: Settings, base_url: str, now: datetime, folder: Path) -> tuple[float, float, int, int]:
    engine = open_database(settings, url=f"sqlite:///{folder / 'bench.db'}")
    vault = load_vault(settings)
    ids = {
        name: add_connection(
            engine, settings, vault, provider=name, label=name, key=key, base_url=base_url, test=False
        ).id
        for name, key in KEYS.items()
    }
    rows = pages = 0
    started, cpu = time.perf_counter(), time.process_time()
    for name, cid in ids.items():
        summary = sync_connection(engine, settings, cid, vault=vault, now=now, endpoints=_wanted(name))
        assert summary.ok, summary.error
        rows += summary.rows
        pages += sum(e.pages for e in summary.endpoints)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return elapsed, cpu, rows, pages


def main() -> None:
    """Print fetch-only and full-sync figures for the same 90-day back-fill."""
    proc, base_url = _server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            settings = Settings(data_dir=folder, secret_keys=new_secret(), backfill_days=DAYS)
            now = floor(datetime.now(UTC), timedelta(hours=1))
            srv0 = _server_cpu(proc.pid)
            fetch_s, fetch_cpu, fetch_pages = _fetch_only(settings, base_url, now)
            srv1 = _server_cpu(proc.pid)
            sync_s, sync_cpu, rows, sync_pages = _sync(settings, base_url, now, folder)
            srv2 = _server_cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert fetch_pages == sync_pages, (fetch_pages, sync_pages)
    extra = (sync_s - fetch_s) / fetch_s * 100
    extra_cpu = (sync_cpu - fetch_cpu) / fetch_cpu * 100
    wanted = f"{_wanted('openai') or 'all'} + {_wanted('anthropic') or 'all'}"
    print(f"90-day hourly back-fill, {GROUPS} groups per bucket, endpoints: {wanted}")
    print(
        f"{'pass':<32} {'wall s':>8} {'cpu s':>7} {'server cpu s':>13} {'pages':>6} {'records':>8} "
        f"{'rec/s wall':>11} {'rec/s cpu':>10}"
    )
    print(
        f"{'baseline: fetch + discard':<32} {fetch_s:>8.2f} {fetch_cpu:>7.2f} {srv1 - srv0:>13.2f} "
        f"{fetch_pages:>6} {'-':>8}"
    )
    print(
        f"{'sync: fetch + parse + upsert':<32} {sync_s:>8.2f} {sync_cpu:>7.2f} {srv2 - srv1:>13.2f} "
        f"{sync_pages:>6} {rows:>8} {rows / sync_s:>11,.0f} {rows / sync_cpu:>10,.0f}"
    )
    print(f"parse + store add {extra:+.0f}% wall, {extra_cpu:+.0f}% CPU (this process) to fetch-only (target: +50%)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
