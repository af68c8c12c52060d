"""The file's SHA-256 taken beside the import: recorded right, duplicates still refused, nothing left running.

A path whose size no earlier import had is hashed in a thread while its rows are written
(``importers.service._Hashing``); the duplicate check then runs inside the import's
transaction. Uploads and files of a size seen before are hashed first, as always.
"""

import hashlib
import io
import threading

import pytest

from importers import service
from importers.service import import_file
from tests.importers.conftest import import_file_rows, usage_count, usage_rows

HEADER = "date,provider,model,project,input_tokens,output_tokens,requests,cost,currency\n"


def write(tmp_path, name, rows, *, bad_at=None):
    """A generic export of ``rows`` rows (several MB for the larger ones, so the hash takes a while)."""
    lines = [f"2026-09-{1 + i % 28:02d},xai,grok-4,p{i},100,10,1,0.50,USD" for i in range(rows)]
    if bad_at is not None:
        lines[bad_at] = lines[bad_at].replace(",100,", ",lots,")
    path = tmp_path / name
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def hashings(monkeypatch):
    """Every ``_Hashing`` the imports start (a spy on the seam: the real class still does the work)."""
    started = []

    class Spy(service._Hashing):
        def __init__(self, fd):
            super().__init__(fd)
            started.append(self)

    monkeypatch.setattr(service, "_Hashing", Spy)
    return started


def no_hash_thread_left():
    return not [t for t in threading.enumerate() if t.name == "import-sha256"]


def test_a_new_file_is_hashed_beside_its_import_and_recorded(engine, tmp_path, hashings):
    path = write(tmp_path, "big.csv", 60_000)
    data = path.read_bytes()
    result = import_file(path, engine=engine)
    assert result.ok and result.records == 60_000
    assert len(hashings) == 1  # the new size: hashed in the thread
    assert (result.sha256, result.size) == (hashlib.sha256(data).hexdigest(), len(data))
    (row,) = import_file_rows(engine)
    assert (row["sha256"], row["size"], row["status"]) == (hashlib.sha256(data).hexdigest(), len(data), "imported")
    assert no_hash_thread_left()
    # The same bytes again: a size seen before, so hashed first and refused before any row is read.
    again = import_file(path, engine=engine)
    assert again.status == "duplicate" and again.import_id == result.import_id
    assert len(hashings) == 1 and len(import_file_rows(engine)) == 1


def test_a_duplicate_found_only_once_hashed_writes_nothing(engine, tmp_path, hashings, monkeypatch):
    """Another import of the same bytes committed after the size check: the write rolls back."""
    path = write(tmp_path, "twice.csv", 2_000)
    first = import_file(path, engine=engine)
    before = usage_rows(engine)
    monkeypatch.setattr(service, "_size_seen", lambda engine, size: False)
    again = import_file(path, engine=engine, who="bob")
    assert len(hashings) == 2  # both hashed beside their import
    assert again.status == "duplicate" and again.ok
    assert f"already imported as import #{first.import_id}" in again.message
    assert again.records == first.records == 2_000
    assert usage_rows(engine) == before  # same rows, same source_ref and stamps: nothing rewritten
    assert [r["id"] for r in import_file_rows(engine)] == [first.import_id]
    forced = import_file(path, engine=engine, force=True)
    assert forced.status == "imported" and forced.sha256 == first.sha256
    assert usage_count(engine) == 2_000


def test_a_refused_file_records_its_real_hash(sqlite_engine, tmp_path, hashings):
    path = write(tmp_path, "bad.csv", 5_000, bad_at=4_000)
    result = import_file(path, engine=sqlite_engine)
    assert result.status == "failed" and len(hashings) == 1
    (row,) = import_file_rows(sqlite_engine)
    assert row["status"] == "failed" and row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert usage_count(sqlite_engine) == 0 and no_hash_thread_left()


def test_a_dry_run_reports_the_hash(tmp_path, hashings):
    path = write(tmp_path, "dry.csv", 3_000)
    result = import_file(path, dry_run=True)
    assert result.status == "dry_run" and len(hashings) == 1
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_uploads_are_hashed_first(sqlite_engine, tmp_path, hashings):
    data = write(tmp_path, "u.csv", 1_000).read_bytes()
    result = import_file(io.BytesIO(data), name="upload.csv", engine=sqlite_engine)
    assert result.ok and not hashings
    assert (result.sha256, result.size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_an_import_that_raises_stops_its_hash(sqlite_engine, tmp_path, hashings, monkeypatch):
    path = write(tmp_path, "boom.csv", 50_000)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(service, "_write", broken)
    with pytest.raises(RuntimeError, match="went away"):
        import_file(path, engine=sqlite_engine)
    assert len(hashings) == 1 and no_hash_thread_left()
