"""The writer's child process: segments committed off the serving process, exactly once, on SQLite and PostgreSQL.

Real child processes, real databases and real segment files: the child is the thing under test,
so nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, func, select, text

from collector.core.settings import get_settings
from collector.core.store import USAGE
from collector.proxy.app import ProxyApp
from collector.proxy.committer import CommitFailed, WriterProcess
from collector.proxy.recorder import Recorder, event_costs, insert_events
from collector.proxy.spool import Spool
from tests.proxy.test_recorder_rollup import count, make_event, segments


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def settle(recorder: Recorder, timeout: float = 60.0) -> None:
    """Wait until every recorded event is committed (a down database first has to come back)."""
    deadline = time.monotonic() + timeout
    while recorder.depth() or not recorder.db_ok:
        assert time.monotonic() < deadline, f"depth {recorder.depth()}, db_ok {recorder.db_ok}"
        recorder.flush(recorder.received, timeout=1.0)


def merged(calls: list[dict]) -> dict:
    """The hook's calls summed per scope (the thread calls it per batch, the child per segment)."""
    total: dict = {}
    for costs in calls:
        for scope, cost in costs.items():
            total[scope] = total.get(scope, Decimal(0)) + cost
    return total


def varied_events(n: int) -> list[dict]:
    """Events over several teams and tokens, one in five unpriced (usage unknown)."""
    return [
        make_event(team=f"team-{i % 3}", token_id=i % 4, usage_known=i % 5 != 0, input_tokens=1000 + i)
        for i in range(n)
    ]


@pytest.mark.parametrize("mode", ["child", "thread"])
def test_committed_events_and_their_costs_reach_the_budget_hook(engine, tmp_path, mode):
    spool = Spool(tmp_path / "spool")
    calls: list[dict] = []
    committer = WriterProcess(url_of(engine), batch_size=500) if mode == "child" else None
    recorder = Recorder(engine, spool, batch_size=500, interval=30, committer=committer, on_costs=calls.append)
    recorder.start()
    events = varied_events(1200)
    try:
        for event in events:
            recorder.record(event)
        # With a child the serving process keeps no event dicts; the thread reads its own from memory.
        assert len(spool._active_events) == (0 if mode == "child" else 1200)
        assert recorder.flush(1200, timeout=60)
        if committer is not None:
            child = committer.pid()
            assert child is not None and child != os.getpid()
            assert os.sched_getscheduler(child) == os.SCHED_IDLE  # requests preempt it at once
    finally:
        recorder.stop()
    assert count(engine) == 1200 and recorder.written == 1200 and recorder.committed == 1200
    expected = event_costs(events)
    assert len(expected) == 12 and merged(calls) == expected  # to the last digit, through the pipe as text
    assert segments(spool) == [] and (committer is None or committer.pid() is None)  # stop() closed the child


def test_a_replayed_segment_counts_once(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    events = varied_events(30)
    assert insert_events(engine, events[:12]) == 12  # committed before a kill cut the segment's deletion
    spool.append(events)
    calls: list[dict] = []
    recorder = Recorder(
        engine, spool, batch_size=7, committer=WriterProcess(url_of(engine), batch_size=7), on_costs=calls.append
    )
    recorder.start()
    recorder.stop()
    assert count(engine) == 30 and recorder.written == 18 and segments(spool) == []
    assert merged(calls) == event_costs(events)  # a replay's costs are read from the file by the child


@contextlib.contextmanager
def write_lock(engine):
    """Another connection holds the write lock on ``proxy_events``: a commit waits until it is released."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            conn.begin()
            conn.execute(text("LOCK TABLE proxy_events IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            conn.rollback()


def test_a_child_killed_mid_commit_loses_nothing_and_doubles_nothing(engine, tmp_path, caplog):
    spool = Spool(tmp_path / "spool")
    committer = WriterProcess(url_of(engine), batch_size=50)
    recorder = Recorder(engine, spool, batch_size=50, interval=0.05, retry_seconds=0.05, committer=committer)
    recorder.start()
    try:
        with caplog.at_level(logging.WARNING, logger="collector.proxy.recorder"):
            with write_lock(engine):  # the child's commit waits on the lock (30 s busy timeout on SQLite)
                for _ in range(100):
                    recorder.record(make_event())
                # The writer's next round seals the segment, starts the child and asks it to commit.
                deadline = time.monotonic() + 30
                while (child := committer.pid()) is None:
                    assert time.monotonic() < deadline, "no child started"
                    time.sleep(0.005)
                # The child exists only inside the writer's call that started it, and cannot answer
                # while the lock is held: the writer is waiting for this child when it dies.
                os.kill(child, signal.SIGKILL)
                while recorder.db_ok:
                    assert time.monotonic() < deadline, "the writer did not notice its child died"
                    time.sleep(0.005)
            settle(recorder)  # a probe starts a new child, which commits the segment once the lock is gone
            for _ in range(100):
                recorder.record(make_event())
            settle(recorder)
    finally:
        recorder.stop()
    assert count(engine) == 200 and recorder.written == 200 and segments(spool) == []
    assert committer.pid() is None
    assert "proxy database unavailable (writer process died)" in caplog.text


def test_refused_events_are_set_aside_by_the_child(sqlite_engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    bad = make_event()
    del bad["ts"]  # cannot be stored: set aside, never retried forever
    spool.append([make_event(), bad, make_event()])
    recorder = Recorder(sqlite_engine, spool, batch_size=10, committer=WriterProcess(url_of(sqlite_engine), 10))
    recorder.start()
    recorder.stop()
    assert recorder.db_ok and count(sqlite_engine) == 2 and segments(spool) == []
    (kept,) = spool.folder.glob("rejected-*.json")
    assert json.loads(kept.read_text())["id"] == bad["id"]


def test_an_unreachable_database_keeps_the_segment_and_never_logs_the_url(tmp_path, caplog):
    secret = "pw-SECRETMARKER-41"
    url = f"postgresql+psycopg://collector:{secret}@127.0.0.1:9/nowhere?connect_timeout=2"
    spool = Spool(tmp_path / "spool")
    spool.append([make_event(), make_event()])
    committer = WriterProcess(url, batch_size=10)
    with pytest.raises(CommitFailed) as failed:
        committer.commit(segments(spool)[0])
    committer.close()
    assert failed.value.reason == "OperationalError" and secret not in str(failed.value)
    # Through the recorder: the database is marked down, the events wait on disk.
    engine = create_engine(url)
    recorder = Recorder(engine, spool, committer=WriterProcess(url, 10), retry_seconds=60)
    with caplog.at_level(logging.INFO):
        recorder.start()
        recorder.stop()  # its final round tries the database once more
    assert not recorder.db_ok and len(segments(spool)) == 1 and recorder.written == 0
    assert "proxy database unavailable (OperationalError)" in caplog.text
    assert secret not in caplog.text


def test_the_app_uses_a_child_only_for_a_database_another_process_can_open(sqlite_engine, tmp_path):
    settings = get_settings().model_copy(update={"data_dir": tmp_path})
    on_file = ProxyApp(settings, engine=sqlite_engine)._committer()
    assert isinstance(on_file, WriterProcess) and on_file.url == url_of(sqlite_engine)
    memory = create_engine("sqlite://")
    assert ProxyApp(settings, engine=memory)._committer() is None
    off = settings.model_copy(update={"proxy_writer_process": False})
    assert ProxyApp(off, engine=sqlite_engine)._committer() is None
    configured = ProxyApp(settings.model_copy(update={"database_url": ""}))._committer()
    assert configured is not None and configured.url == settings.resolved_database_url()


def test_the_rollup_runs_in_the_child_on_its_own_engine(engine, tmp_path):
    assert insert_events(engine, [make_event() for _ in range(40)]) == 40
    writer = WriterProcess(url_of(engine), batch_size=10)
    job = writer.offloaded_rollup(retention_days=30)
    try:
        assert job.__name__ == "rollup_and_purge"  # what the recorder's log names a failing job
        job(None)  # the serving process's engine is not used: the child has its own
    finally:
        writer.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM proxy_events WHERE NOT rolled_up")).scalar_one() == 0
        c = USAGE.c
        usage = conn.execute(select(func.sum(c.requests), func.sum(c.input_tokens)).where(c.source == "proxy"))
        assert tuple(usage.one()) == (40, 40 * 1000)


def test_a_failing_child_job_names_its_error_type_only():
    writer = WriterProcess("postgresql+psycopg://u:pw-SECRET-9@127.0.0.1:9/x?connect_timeout=2", batch_size=10)
    try:
        with pytest.raises(CommitFailed) as failed:
            writer.offloaded_rollup(retention_days=30)(None)
    finally:
        writer.close()
    assert failed.value.reason == "OperationalError" and "SECRET" not in str(failed.value)
