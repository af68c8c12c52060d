"""``llm-usage proxy --workers 2``: one port, two worker processes, every call recorded once.

Real processes: the fake upstream, and the proxy started as the command with ``--workers 2`` on a
SQLite file (both workers write to it). The writer's interval is an hour, so a worker commits its
journal only when it starts (a replay) or stops: what is in the database at each step says which
path put it there.

Calls go over keep-alive connections that each first ask ``/healthz`` which worker process
answers (its pid and journal slot), so every call is known to have been served by one worker.
Each call carries a unique id (``x-fake-id``) that the sidecar records as ``response_id``.

1. 240 calls from 4 threads: both workers serve some, nothing is in the database yet.
2. SIGKILL one worker: uvicorn's supervisor starts a replacement, which claims the dead worker's
   journal folder and replays it: the database then holds exactly the dead worker's calls.
3. SIGTERM the supervisor: every worker finishes and commits; every call has exactly one event,
   no journal segment is left, and the key has one fingerprint, the one of the salt file the
   supervisor created before the workers started.
"""

from __future__ import annotations

import os
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

from collector.db.migrate import open_database
from collector.proxy.spool import Spool, adopt_strays
from collector.proxy.tokens import Fingerprinter
from tests.proxy.conftest import KEY

ROOT = Path(__file__).resolve().parents[2]
THREADS = 4
CONNECTIONS = 3  # per thread
CALLS = 20  # per connection
_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The fake upstream in a process of its own."""
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


class Supervisor:
    """``llm-usage proxy --workers 2`` and its output, read line by line in a thread."""

    def __init__(self, data_dir: Path, upstream: str) -> None:
        env = {
            **os.environ,
            "LLM_USAGE_DATA_DIR": str(data_dir),
            "LLM_USAGE_DATABASE_URL": "",
            "LLM_USAGE_PROXY_OPENAI_URL": f"{upstream}/v1",
            "LLM_USAGE_PROXY_BATCH_INTERVAL_SECONDS": "3600",  # commit only at a worker's start and stop
        }
        env.pop("LLM_USAGE_PROXY_FINGERPRINT_SALT", None)
        cmd = [str(Path(sys.executable).parent / "llm-usage"), "proxy", "--port", "0", "--workers", "2"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        self.url = ""
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.output.append(line)
                if m := _RUNNING.search(line):
                    self.url = f"http://127.0.0.1:{m.group(1)}"
                self._cond.notify_all()
        with self._cond:
            self.output.append("<exited>")
            self._cond.notify_all()

    def wait_started(self, workers: int, timeout: float = 90) -> None:
        """Until ``workers`` workers (restarts included) logged that their startup completed."""

        def ready() -> bool:
            return sum("Application startup complete" in line for line in self.output) >= workers or (
                "<exited>" in self.output
            )

        with self._cond:
            assert self._cond.wait_for(ready, timeout), "".join(self.output)
        assert "<exited>" not in self.output and self.url, "".join(self.output)


def call(client: httpx.Client, url: str, i: int) -> str:
    rid = f"call-{uuid.uuid4().hex}"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": i % 2 == 1}
    r = client.post(
        f"{url}/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}", "x-fake-id": rid}
    )
    assert r.status_code == 200 and rid in r.text
    return rid


def one_connection() -> httpx.Client:
    return httpx.Client(timeout=30, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


def load(url: str) -> dict[int, tuple[int, list[str]]]:
    """Calls over ``THREADS`` x ``CONNECTIONS`` connections; ``{pid: (slot, call ids)}`` by serving worker."""
    served: dict[int, tuple[int, list[str]]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def thread() -> None:
        try:
            for _ in range(CONNECTIONS):
                with one_connection() as client:
                    health = client.get(f"{url}/healthz").json()  # this connection's worker
                    ids = [call(client, url, i) for i in range(CALLS)]
                with lock:
                    served.setdefault(health["pid"], (health["worker"], []))[1].extend(ids)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return served


def served_by_both(url: str, served: dict[int, tuple[int, list[str]]]) -> None:
    """Which idle worker accepts a connection is the kernel's choice: add connections until both served."""
    for _ in range(200):
        if len(served) == 2:
            return
        with one_connection() as client:
            health = client.get(f"{url}/healthz").json()
            served.setdefault(health["pid"], (health["worker"], []))[1].append(call(client, url, 0))
    assert len(served) == 2, served.keys()


def recorded(db: Path) -> dict[str, tuple[int, set[str]]]:
    """``{response_id: (events, key fingerprints)}`` in the database."""
    engine = open_database(url=f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT response_id, api_key_fp FROM proxy_events")).all()
    finally:
        engine.dispose()
    out: dict[str, tuple[int, set[str]]] = {}
    for rid, fp in rows:
        n, fps = out.get(rid, (0, set()))
        out[rid] = (n + 1, fps | {fp})
    return out


@pytest.mark.slow
def test_two_workers_record_every_call_once(upstream, tmp_path):
    sup = Supervisor(tmp_path, upstream)
    db, spool = tmp_path / "usage.db", tmp_path / "proxy-spool"
    try:
        sup.wait_started(2)
        served = load(sup.url)
        served_by_both(sup.url, served)
        all_ids = [rid for _, ids in served.values() for rid in ids]
        assert len(all_ids) == len(set(all_ids)) >= THREADS * CONNECTIONS * CALLS
        assert sorted(slot for slot, _ in served.values()) == [0, 1]  # a journal folder each
        assert recorded(db) == {}  # journaled only: the writers commit at start and stop

        victim, (slot, victim_ids) = next(iter(served.items()))
        assert any((spool / f"w{slot}").glob("*.jsonl"))
        os.kill(victim, signal.SIGKILL)
        sup.wait_started(3)  # the supervisor replaced it; the replacement claims the free slot w<slot>
        deadline = time.monotonic() + 60
        while set(recorded(db)) != set(victim_ids):  # replayed by the replacement's first round
            assert time.monotonic() < deadline, (len(recorded(db)), len(victim_ids))
            time.sleep(0.1)
    finally:
        sup.proc.send_signal(signal.SIGTERM)
        sup.proc.wait(90)
    assert "Application shutdown complete" in "".join(sup.output)
    events = recorded(db)
    assert {rid: n for rid, (n, _) in events.items()} == dict.fromkeys(all_ids, 1)  # each call once, nothing else
    assert list(spool.glob("w*/*.jsonl")) == []  # every journal committed and deleted
    salt = (tmp_path / "proxy-salt").read_bytes().strip()
    assert set().union(*(fps for _, fps in events.values())) == {Fingerprinter(salt)(KEY.encode())}


def test_worker_slots_are_claimed_from_w0_and_freed_with_their_owner(tmp_path):
    a, b = Spool(tmp_path, slotted=True), Spool(tmp_path, slotted=True)
    a.open()
    b.open()
    assert (a.slot, a.folder, b.slot, b.folder) == (0, tmp_path / "w0", 1, tmp_path / "w1")
    a.write(b'{"id":"left-by-a"}\n')
    a.close()  # as a killed worker's lock goes with it
    c = Spool(tmp_path, slotted=True)
    c.open()
    try:
        assert c.slot == 0 and [p.read_bytes() for p in c.sealed()] == [b'{"id":"left-by-a"}\n']
    finally:
        c.close()
        b.close()


def test_adopt_strays_moves_segments_no_worker_will_claim(tmp_path):
    for folder in (tmp_path, tmp_path / "w1", tmp_path / "w2"):
        Spool(folder).append([{"id": folder.name}])
    busy = Spool(tmp_path / "w3")
    busy.open()  # a proxy still running owns w3: left alone
    busy.append([{"id": "w3"}])

    def holders() -> list[str]:
        return sorted(p.parent.name for p in tmp_path.rglob("*.jsonl") if p.stat().st_size)

    try:
        assert adopt_strays(tmp_path, 2) == 2  # the root's segment and w2's go to w0; w1 is a slot of 2
        assert holders() == ["w0", "w0", "w1", "w3"]
        assert adopt_strays(tmp_path, 1) == 3  # back to one worker: w0 and w1 go to the root
        assert holders() == sorted([tmp_path.name] * 3 + ["w3"])
    finally:
        busy.close()
