"""The background WAL sync of long SQLite writes (``collector/core/walsync.py``).

``os.fdatasync`` is replaced by a recorder (the seam: whether the disk flushed is not observable
from a test); everything else is a real SQLite file in WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from collector.core import walsync
from collector.core.walsync import EVERY, WalSync


@pytest.fixture
def synced(monkeypatch):
    """Inodes of the files synced, in order."""
    calls: list[int] = []
    monkeypatch.setattr(walsync.os, "fdatasync", lambda fd: calls.append(os.fstat(fd).st_ino))
    return calls


def _wal_db(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    conn.execute("PRAGMA cache_size=1")  # spill: the log exists before the commit
    conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    return conn


def test_the_log_is_synced_every_so_many_batches(tmp_path, synced):
    conn = _wal_db(tmp_path / "a.db")
    wal = WalSync(conn)
    assert wal.path == f"{tmp_path / 'a.db'}-wal"
    for _ in range(EVERY - 1):
        wal.batch()
    wal.close()
    assert synced == []
    wal.batch()
    wal.close()
    assert synced == [os.stat(wal.path).st_ino]
    for _ in range(EVERY):
        wal.batch()
    wal.close()
    assert len(synced) == 2
    conn.execute("COMMIT")


def test_nothing_is_synced_for_memory_a_rollback_journal_or_another_driver(tmp_path, synced):
    memory = sqlite3.connect(":memory:")
    journal = sqlite3.connect(tmp_path / "j.db")
    journal.execute("CREATE TABLE t (x)")
    for conn in (memory, journal, object()):
        wal = WalSync(conn)
        assert wal.path is None
        for _ in range(EVERY):
            wal.batch()
        wal.close()
    assert synced == []


def test_a_missing_log_or_a_failing_sync_is_left_to_sqlite(tmp_path, monkeypatch):
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    conn = _wal_db(tmp_path / "a.db")
    wal = WalSync(conn)
    wal.path = str(tmp_path / "gone-wal")
    for _ in range(EVERY):
        wal.batch()
    wal.close()  # no log: nothing raised

    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(walsync.os, "fdatasync", failing)
    wal = WalSync(conn)
    for _ in range(EVERY):
        wal.batch()
    wal.close()  # the commit's own sync reports a failing disk
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert raised == []
