"""Resume: a sync process killed with SIGKILL at random points loses nothing and counts nothing twice."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from collector.core.settings import get_settings
from collector.core.windows import HOUR, floor
from collector.db.migrate import open_database
from collector.sync.connections import add_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from tests.sync.sync_helpers import OPENAI_KEY, totals

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def _worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync.sync_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
    )


def _run(worker: subprocess.Popen[str], command: str) -> int:
    worker.stdin.write(command)
    worker.stdin.flush()
    worker.stdout.readline()
    return int(worker.stdout.readline().split()[1])


def test_sigkilled_syncs_resume_to_the_clean_totals(tmp_path, fake_api, monkeypatch):
    for name, value in {
        "LLM_USAGE_BACKFILL_DAYS": "20",  # 480 hourly buckets: 3 pages per usage endpoint
        "LLM_USAGE_HTTP_MAX_BACKOFF_SECONDS": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings)  # the embedded SQLite file the CLI uses
    conn = add_connection(
        engine,
        settings,
        load_vault(settings),
        provider="openai",
        label="prod",
        key=OPENAI_KEY,
        base_url=fake_api.base_url,
    )
    until = floor(datetime.now(UTC), HOUR).isoformat()
    fake_api.api.faults.latency = 0.1
    command = f"connections sync {conn.id} --until {until} --endpoint completions --endpoint costs\n"
    rng = random.Random(20261126)

    worker = _worker(dict(os.environ))
    try:
        kills = attempts = 0
        started = time.perf_counter()  # one uninterrupted back-fill: kill points are drawn from its length
        assert _run(worker, command) == 0
        duration = time.perf_counter() - started
        with engine.begin() as db:
            db.execute(text("DELETE FROM sync_state"))
        while kills < KILLS and attempts < 4 * KILLS:
            attempts += 1
            began = time.perf_counter()
            worker.stdin.write(command)
            worker.stdin.flush()
            pid = int(worker.stdout.readline())
            time.sleep(rng.uniform(0.02, 0.8) * duration)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            status = int(worker.stdout.readline().split()[1])
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                kills += 1
            else:  # finished first: runs after a kill are shorter, so aim the next kill earlier
                duration = time.perf_counter() - began
            with engine.begin() as db:  # sometimes start over, so kills also land in a full back-fill
                if rng.random() < 0.3:
                    db.execute(text("DELETE FROM sync_state"))
        assert kills >= KILLS, f"only {kills} of {attempts} syncs were still running when killed"
        print(f"{kills} kills in {attempts} attempts; an uninterrupted back-fill took {duration:.2f} s")
        assert _run(worker, command) == 0  # the final run completes
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)

    clean = open_database(url=f"sqlite:///{tmp_path / 'clean.db'}")
    clean_conn = add_connection(
        clean,
        settings,
        load_vault(settings),
        provider="openai",
        label="prod",
        key=OPENAI_KEY,
        base_url=fake_api.base_url,
    )
    fake_api.api.faults.latency = 0
    assert sync_connection(
        clean, settings, clean_conn.id, until=datetime.fromisoformat(until), endpoints={"completions", "costs"}
    ).ok
    assert totals(engine) == totals(clean)
    with engine.connect() as db:
        statuses = dict(db.execute(text("SELECT status, COUNT(*) FROM sync_runs GROUP BY status")).all())
    # the next run finds each killed run still 'running' and closes it (a kill during start-up,
    # before the run row exists, leaves nothing to close: how many did depends on the machine's load)
    assert "running" not in statuses and statuses.get("abandoned", 0) >= 1
    assert statuses.get("running", 0) == 0
