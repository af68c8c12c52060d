"""The data folder is 0700; the SQLite database, its WAL and shared memory, and the proxy spool are 0600."""

from __future__ import annotations

import os
import stat

from sqlalchemy import text

from collector.core.private import private_file
from collector.core.settings import Settings
from collector.db.migrate import open_database
from collector.proxy.spool import Spool, encode
from collector.proxy.tokens import load_salt
from collector.sync.vault import load_vault


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_the_collector_writes_under_the_data_folder_is_private(tmp_path):
    old = os.umask(0o022)  # a usual umask: would give 0755 folders and 0644 files
    try:
        data = tmp_path / "data"
        settings = Settings(data_dir=data, database_url="")
        engine = open_database(settings)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
        with engine.connect() as conn:  # keep a reader open so the WAL and -shm files exist
            conn.execute(text("SELECT * FROM probe")).all()
            wal, shm = data / "usage.db-wal", data / "usage.db-shm"
            assert wal.exists() and shm.exists()
            assert (mode(wal), mode(shm)) == (0o600, 0o600)
        load_vault(settings)
        load_salt(settings)
        spool = Spool(settings.resolved_spool_dir())
        spool.open()
        spool.write(encode({"id": "1"}))  # the active segment
        spool.append([{"id": "2"}])  # a sealed one, written whole
        spool.close()
        engine.dispose()
    finally:
        os.umask(old)
    assert mode(data) == 0o700 and mode(settings.resolved_spool_dir()) == 0o700
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"usage.db", "secret.key", "proxy-salt", ".lock"}
    assert len([p for p in files if p.suffix == ".jsonl"]) >= 1
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_readable_database_is_tightened(tmp_path):
    db = tmp_path / "old.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    private_file(db)
    assert mode(db) == 0o600
