"""Proxy replicas stopped mid-traffic: SIGKILL loses nothing they answered, SIGTERM loses nothing at all.

Real processes throughout: the fake upstream, and each replica is ``llm-usage proxy --port 0``
with its own data folder (so its own spool), sharing one database (PostgreSQL: two replicas;
SQLite: one). Per round each replica gets 500 calls (JSON and streamed chat completions) from 4
client threads; once the victim has answered a random number of them it gets the signal. A call
counts only if its client received the whole response (status 200, the body complete, its id in
it); each call carries a unique id (``x-fake-id``) that the upstream puts in its response and the
sidecar records as ``response_id``, so every call's event can be found.

* SIGKILL: the victim is restarted and replays its spool; at the end every completed call has
  exactly one event.
* SIGTERM: the victim exits after finishing its in-flight calls, its spool is empty, and every
  call it completed is already in the database before it is restarted.

Both: no event without a call, and the rollup (run by the replicas every half second while they
serve, and once at the end) counts every event once. No fixed sleeps: the kill waits for the
n-th completed response, a start for the replica's "running on" line, a drain for ``/healthz``.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from collector.db.migrate import open_database
from collector.proxy.rollup import rollup
from tests.proxy.conftest import KEY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CALLS = 500
THREADS = 4
ROUNDS = 5
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The fake upstream in a process of its own (the clients' threads keep this one busy)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())  # printed once its socket listens
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


class Replica:
    """One ``llm-usage proxy`` process; restartable with the same data folder (and spool)."""

    def __init__(self, name: str, data_dir: Path, database_url: str, upstream: str) -> None:
        self.name = name
        self.spool = data_dir / "proxy-spool"
        self.env = {
            **os.environ,
            "LLM_USAGE_DATA_DIR": str(data_dir),
            "LLM_USAGE_DATABASE_URL": database_url,
            "LLM_USAGE_PROXY_OPENAI_URL": f"{upstream}/v1",
            "LLM_USAGE_PROXY_FINGERPRINT_SALT": "the-same-salt-on-every-replica",
            "LLM_USAGE_PROXY_ROLLUP_INTERVAL_SECONDS": "0.5",
        }
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []

    def start(self) -> None:
        self.url = ""
        cmd = [str(Path(sys.executable).parent / "llm-usage"), "proxy", "--port", "0"]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.proc, ready), daemon=True).start()
        assert ready.wait(60) and self.url, f"{self.name} did not start:\n{''.join(self.output)}"

    def _read(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)
            if m := _RUNNING.search(line):
                self.url = f"http://127.0.0.1:{m.group(1)}"
                ready.set()
        ready.set()  # exited

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def stop_gracefully(self) -> None:
        """SIGTERM; uvicorn re-raises it after its graceful shutdown, so the status says SIGTERM too."""
        code = self.signal(signal.SIGTERM)
        tail = "".join(self.output[-20:])
        assert code == -signal.SIGTERM and "Application shutdown complete" in tail, tail

    def wait_drained(self, timeout: float = 60) -> None:
        """Until its spool is empty (replayed, committed) and nothing it recorded waits."""
        deadline = time.monotonic() + timeout
        while True:
            health = httpx.get(f"{self.url}/healthz").json()
            if health["database"] == "up" and health["spool_bytes"] == 0 and health["queue_depth"] == 0:
                return
            assert time.monotonic() < deadline, health
            time.sleep(0.05)

    def spooled_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.spool.glob("*.jsonl"))


class Load:
    """``CALLS`` calls to one replica from ``THREADS`` threads; ``reached`` fires at the n-th completed one."""

    def __init__(self, replica: Replica, kill_after: int | None = None) -> None:
        self.replica = replica
        self.url = f"{replica.url}/openai/v1/chat/completions"
        self.sent: list[str] = []
        self.completed: list[str] = []
        self.lock = threading.Lock()
        self.kill_after = kill_after
        self.reached = threading.Event()
        self.threads = [threading.Thread(target=self._worker, args=(k,)) for k in range(THREADS)]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join(120)
        self.reached.set()

    def _worker(self, k: int) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(k, CALLS, THREADS):
                rid = f"call-{uuid.uuid4().hex}"
                stream = i % 2 == 1
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
                with self.lock:
                    self.sent.append(rid)
                try:
                    r = client.post(self.url, json=body, headers={"authorization": f"Bearer {KEY}", "x-fake-id": rid})
                except httpx.HTTPError:
                    continue  # the replica died under it: not received, so not counted
                if r.status_code != 200:
                    continue
                complete = r.text.endswith("data: [DONE]\n\n") if stream else f'"id":"{rid}"' in r.text
                if complete and rid in r.text:
                    with self.lock:
                        self.completed.append(rid)
                        if len(self.completed) == self.kill_after:
                            self.reached.set()


def recorded(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT response_id, COUNT(*) FROM proxy_events GROUP BY response_id")).all())


def run_rounds(engine: Engine, replicas: list[Replica], sig: int, rng: random.Random) -> None:
    completed: list[str] = []
    sent: set[str] = set()
    kill_points = 0
    for replica in replicas:
        replica.start()
    try:
        for n in range(ROUNDS):
            victim = replicas[n % len(replicas)]
            kill_after = rng.randint(25, CALLS - 25)
            kill_points += kill_after
            loads = [Load(r, kill_after if r is victim else None).start() for r in replicas]
            victim_load = loads[replicas.index(victim)]
            assert victim_load.reached.wait(120), "the victim never answered enough calls"
            if sig == signal.SIGTERM:
                victim.stop_gracefully()
            else:
                victim.signal(sig)
            for load in loads:
                load.join()
                completed += load.completed
                sent.update(load.sent)
            before_restart = recorded(engine)
            lost_until_restart = sum(1 for rid in victim_load.completed if rid not in before_restart)
            print(
                f"\nround {n + 1}: {signal.Signals(sig).name} {victim.name} after {kill_after} completed calls;"
                f" it completed {len(victim_load.completed)} of {CALLS}; {lost_until_restart} of them only in its"
                f" spool ({victim.spooled_bytes()} bytes) until it restarts"
            )
            if sig == signal.SIGTERM:
                assert victim.spooled_bytes() == 0 and lost_until_restart == 0  # drained before exit
            victim.start()
            victim.wait_drained()
    finally:
        for replica in replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop_gracefully()
    events = recorded(engine)
    assert [rid for rid in completed if events.get(rid) != 1] == []  # every answered call: exactly one event
    assert set(events) <= sent  # and no event without a call
    assert len(completed) >= kill_points  # the rounds really carried traffic
    with engine.connect() as conn:
        rolled = conn.execute(text("SELECT COUNT(*) FROM proxy_events WHERE rolled_up")).scalar_one()
    assert rolled > 0  # the replicas rolled up while serving (and while being killed) ...
    rollup(engine)
    with engine.connect() as conn:
        total, pending = conn.execute(
            text("SELECT COUNT(*), SUM(CASE WHEN rolled_up THEN 0 ELSE 1 END) FROM proxy_events")
        ).one()
        requests = conn.execute(text("SELECT SUM(requests) FROM usage WHERE source = 'proxy'")).scalar_one()
    assert (pending, requests) == (0, total)  # ... and every event was counted exactly once


@pytest.mark.postgres
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_two_replicas_on_postgresql(upstream, pg_url, tmp_path, sig):
    engine = open_database(url=pg_url)  # migrated once, before the replicas start
    replicas = [Replica(name, tmp_path / name, pg_url, upstream) for name in ("a", "b")]
    try:
        run_rounds(engine, replicas, sig, random.Random(sig * 7919))
    finally:
        engine.dispose()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_one_replica_on_sqlite(upstream, tmp_path, sig):
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    engine = open_database(url=url)
    try:
        run_rounds(engine, [Replica("solo", tmp_path / "solo", url, upstream)], sig, random.Random(sig * 104729))
    finally:
        engine.dispose()
