"""Sync a SQLite file's WAL to disk in the background while a long write runs.

A bulk write (a million-row import) spills its pages into the write-ahead log as it goes, and
the operating system keeps them as dirty pages in memory. At commit, SQLite's checkpoint first
syncs the whole log (``fdatasync``: 0.5 s for the 300 MB of a 1M-row import on the development
machine), then copies it into the database and syncs that. Syncing what the log holds so far
every few batches, in a thread of its own, leaves the commit only the tail to sync. Only syncs
are added: what SQLite writes, and when it syncs, is unchanged, and a sync that fails here is
ignored (SQLite's own sync at the checkpoint still reports it).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

#: Batches written between two background syncs (5,000 rows each: about 30 MB of log).
EVERY = 20


class WalSync:
    """Every :data:`EVERY` calls of :meth:`batch`, sync the WAL in a background thread.

    Does nothing for a database that is not a SQLite file (PostgreSQL, ``:memory:``). At most
    one sync runs at a time; a batch that comes while one runs skips its turn.
    """

    def __init__(self, dbapi_connection: Any) -> None:
        self.path = _wal_path(dbapi_connection)
        self.count = 0
        self.running: threading.Thread | None = None

    def batch(self) -> None:
        """Count one written batch; start a sync every :data:`EVERY` of them."""
        if self.path is None:
            return
        self.count += 1
        if self.count % EVERY or (self.running is not None and self.running.is_alive()):
            return
        self.running = threading.Thread(target=_sync, args=(self.path,), name="wal-sync", daemon=True)
        self.running.start()

    def close(self) -> None:
        """Wait for a running sync (the commit's own sync then finds less to do)."""
        if self.running is not None:
            self.running.join()
            self.running = None


def _wal_path(dbapi_connection: Any) -> str | None:
    """The main database's WAL file, for a SQLite file in WAL mode; else None."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return None
    mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]
    files = {name: file for _, name, file in dbapi_connection.execute("PRAGMA database_list")}
    main = files.get("main") or ""
    return f"{main}-wal" if mode == "wal" and main else None


def _sync(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no log yet, or it was removed: nothing to sync
    try:
        os.fdatasync(fd)
    except OSError:
        pass  # SQLite's own sync at the checkpoint reports a failing disk
    finally:
        os.close(fd)


__all__ = ["EVERY", "WalSync"]
