"""Database unavailable during 1,000 requests: every request succeeds, every event lands exactly once.

* SQLite: the database folder and files are made immutable (``chattr +i``; the tests run as root,
  for whom a mode of 0444 changes nothing), so every write fails as read-only.
* PostgreSQL: the sidecar reaches the server through a relay on a port of its own; closing the
  relay makes every connection attempt refused, reopening it is the recovery.

After recovery the spool is replayed and the test checks that exactly 1,000 events exist, that
the hourly rollup counts 1,000 requests, and that no prompt, completion or key text is in the
database, the spool or the logs.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from collector.db.engine import make_engine
from collector.db.migrate import upgrade
from collector.proxy.rollup import rollup
from tests.fakes.upstream import COMPLETION_MARKER
from tests.proxy.conftest import KEY, PROMPT_MARKER, proxy_settings, start_sidecar

N = 1000
KEY_MARKER = KEY.split("-")[-1]
MARKERS = (PROMPT_MARKER, COMPLETION_MARKER, KEY_MARKER)


def send_traffic(base: str) -> list[int]:
    """1,000 calls: OpenAI JSON and streams, Anthropic streams; all carry the markers."""
    statuses = []
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT_MARKER}]}
    msg = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": PROMPT_MARKER}]}
    with httpx.Client(timeout=10) as client:
        for i in range(N):
            if i % 5 == 4:
                r = client.post(
                    f"{base}/anthropic/v1/messages", json={**msg, "stream": True}, headers={"x-api-key": KEY}
                )
            else:
                body = {**chat, "stream": i % 2 == 1}
                r = client.post(
                    f"{base}/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
                )
            assert COMPLETION_MARKER in r.text
            statuses.append(r.status_code)
    return statuses


def dump_tables(engine) -> str:
    out = []
    with engine.connect() as conn:
        for table in ("proxy_events", "usage", "usage_daily", "monitor_tokens"):
            out += [repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(out)


def wait_recovered(side, engine, timeout: float = 30.0) -> None:
    recorder = side.app.recorder
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if recorder.db_ok and not side.app.spool.pending() and recorder.depth() == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"not recovered: db_ok={recorder.db_ok} spool={side.app.spool.size_bytes()}")


def check_outage_and_recovery(side, engine, go_down, come_back, caplog) -> None:
    go_down()
    statuses = send_traffic(side.url)
    assert statuses == [200] * N  # the outage never reached the clients
    side.flush(N)
    assert not side.app.recorder.db_ok
    spool_text = "".join(p.read_text() for p in side.app.spool.folder.glob("*.jsonl"))
    assert spool_text.count("\n") == N  # every event is in the spool, none lost
    health = httpx.get(f"{side.url}/healthz").json()
    assert health["database"] == "down" and health["spool_bytes"] > 0
    come_back()
    wait_recovered(side, engine)
    with engine.connect() as conn:
        count, distinct = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT id) FROM proxy_events")).one()
    assert (count, distinct) == (N, N)
    assert side.app.recorder.written == N
    rollup(engine)
    with engine.connect() as conn:
        requests, inputs = conn.execute(
            text("SELECT SUM(requests), SUM(input_tokens) FROM usage WHERE source = 'proxy'")
        ).one()
    assert requests == N
    assert inputs == 800 * 120 + 200 * 100  # fake's known usage: OpenAI 120, Anthropic 100 input tokens
    stored = dump_tables(engine)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "spooling" in logs  # the outage was logged ...
    for marker in MARKERS:  # ... but no content or key anywhere
        assert marker not in spool_text and marker not in stored and marker not in logs, marker


def test_sqlite_unwritable_during_1000_requests(fake, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="collector")
    folder = tmp_path / "db"
    url = f"sqlite:///{folder / 'usage.db'}"
    engine = make_engine(url, poolclass=NullPool)
    upgrade(engine)
    side = start_sidecar(proxy_settings(fake[1].url), engine)

    def chattr(flag: str) -> None:
        # The folder first: once it is immutable no -wal/-shm file can appear or vanish (SQLite
        # deletes them when its last connection closes), so the file list below is stable.
        subprocess.run(["chattr", flag, str(folder)], check=True)
        subprocess.run(["chattr", flag, *map(str, folder.iterdir())], check=True)

    try:
        check_outage_and_recovery(side, engine, lambda: chattr("+i"), lambda: chattr("-i"), caplog)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
        subprocess.run(["chattr", "-i", *map(str, folder.iterdir())], check=False)
        side.server.stop()


class Relay:
    """A TCP relay to PostgreSQL that can be closed (connections refused) and reopened."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close() would not
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_postgres_refusing_connections_during_1000_requests(fake, pg_url, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="collector")
    parts = urlsplit(pg_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    relay.up()
    netloc = f"{parts.username}@127.0.0.1:{relay.port}"
    engine = make_engine(urlunsplit(parts._replace(netloc=netloc)))
    upgrade(engine)
    side = start_sidecar(proxy_settings(fake[1].url), engine)
    try:
        check_outage_and_recovery(side, engine, relay.down, relay.up, caplog)
    finally:
        side.server.stop()
        relay.down()
        engine.dispose()


def test_spool_location_is_under_the_data_dir(tmp_path):
    settings = proxy_settings("http://127.0.0.1:9")
    assert settings.resolved_spool_dir() == Path(settings.data_dir) / "proxy-spool"
