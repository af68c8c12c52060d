"""Recorder (journal, exactly-once replay, drain on stop) and hourly rollup, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from collector.core.store import USAGE
from collector.proxy import recorder as recorder_module
from collector.proxy import spool as spool_module
from collector.proxy.recorder import Recorder, insert_events, new_event_id, price_event
from collector.proxy.rollup import purge, rollup
from collector.proxy.spool import Spool, SpoolBusyError, encode

T0 = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def make_event(at: datetime = T0, **over) -> dict:
    event = {
        "id": new_event_id(),
        "ts": at.timestamp(),
        "provider": "openai",
        "upstream": "openai",
        "endpoint": "chat.completions",
        "method": "POST",
        "model": "gpt-4o-mini",
        "status": 200,
        "stream": False,
        "partial": False,
        "usage_known": True,
        "error": "",
        "input_tokens": 1000,
        "cache_read_tokens": 200,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "output_tokens": 100,
        "reasoning_tokens": 0,
        "latency_ms": 12.5,
        "ttfb_ms": 3.0,
        "team": "search",
        "project": "ranker",
        "token_id": 1,
        "api_key_fp": "fp_0123456789abcdef0123",
        "service_tier": "default",
        "response_id": "chatcmpl-x",
        "client_gone": False,
    }
    event.update(over)
    return event


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM proxy_events")).scalar_one()


def segments(spool: Spool) -> list:
    return sorted(p for p in spool.folder.glob("*.jsonl") if p.stat().st_size)


def wait_until(predicate, timeout: float = 15.0) -> None:
    """Wait for a condition the recorder's thread brings about (checked at each of its rounds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_replay_is_exactly_once_even_when_repeated_or_interrupted(engine, tmp_path, monkeypatch):
    spool = Spool(tmp_path / "spool")
    events = [make_event() for _ in range(25)]
    assert insert_events(engine, events[:10]) == 10  # committed, but the segment was not deleted ...
    spool.append(events)  # ... (a kill between the commit and the unlink): it is replayed whole
    calls = []

    def flaky(eng, batch):  # the seam to the database: it goes away at the second batch
        calls.append(len(batch))
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, ConnectionError("database went away mid-replay"))
        return insert_events(eng, batch)

    monkeypatch.setattr(recorder_module, "insert_events", flaky)
    recorder = Recorder(engine, spool, batch_size=10, retry_seconds=0.05)
    recorder.start()
    try:
        wait_until(lambda: len(calls) >= 3 and not spool.pending())  # failed, probed again, replayed
    finally:
        recorder.stop()
    assert recorder.db_ok and count(engine) == 25
    assert recorder.written == 15  # the first batch twice, stored once
    assert segments(spool) == []


def test_torn_spool_line_is_skipped_and_the_rest_replayed(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.append([make_event(), make_event()])
    (segment,) = segments(spool)
    with open(segment, "a") as fh:
        fh.write(json.dumps(make_event())[:40])  # a kill in the middle of a write
    recorder = Recorder(engine, spool)
    recorder.start()
    recorder.stop()
    assert count(engine) == 2 and segments(spool) == []


def park(recorder: Recorder) -> threading.Event:
    """Stop the writer at the start of its next round (not the final one) until the event returned is set.

    Returns once the writer waits there, so no round runs meanwhile: a test can then record
    events and look at the spool and the counters while nothing commits them. Waiting for
    ``flush`` is not enough, as it may have woken one more round (it asks for one every 50 ms
    until the round it waits for ends).
    """
    gate, parked = threading.Event(), threading.Event()
    real_round = recorder._round

    def gated(*, final: bool = False) -> None:
        if not final:
            parked.set()
            gate.wait(30)
        real_round(final=final)

    recorder._round = gated  # type: ignore[method-assign]
    recorder._wake.set()
    assert parked.wait(30)
    return gate


def test_every_event_is_on_disk_as_recorded_and_committed_on_stop(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    recorder = Recorder(engine, spool, batch_size=7, interval=30)  # only the stop commits
    recorder.start()
    gate = park(recorder)  # after the first round (which start() runs): none during the records
    events = [make_event() for _ in range(50)]
    for event in events:
        recorder.record(event)
    (active,) = segments(spool)
    assert [json.loads(line)["id"] for line in active.read_text().splitlines()] == [e["id"] for e in events]
    assert count(engine) == 0 and recorder.depth() == 50
    gate.set()
    recorder.stop()
    assert count(engine) == 50 and recorder.written == 50 and recorder.depth() == 0
    assert segments(spool) == [] and not list(spool.folder.glob("*.jsonl"))  # the empty active one too


def test_a_round_takes_the_segment_it_sealed_from_memory_and_older_ones_from_disk(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    older = [make_event(model="from-disk") for _ in range(3)]
    spool.append(older)  # as a previous run left it: read back from its file
    spool.open()  # the writer thread is not started: the test runs its round
    recorder = Recorder(engine, spool, batch_size=4)
    events = [make_event(input_tokens=i) for i in range(10)]
    for event in events:
        recorder.record(event)
    (active,) = (p for p in segments(spool) if p.name != older_name(spool, older))
    active.write_bytes(b"")  # the file no longer says anything: only memory can
    recorder._round()
    spool.close()
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, input_tokens FROM proxy_events")).all())
    assert rows == {**{e["id"]: 1000 for e in older}, **{e["id"]: e["input_tokens"] for e in events}}
    assert segments(spool) == [] and recorder.depth() == 0


def older_name(spool: Spool, older: list[dict]) -> str:
    """The segment holding ``older``'s events."""
    return next(p.name for p in segments(spool) if older[0]["id"] in p.read_text())


def test_a_killed_run_leaves_its_segment_and_the_next_run_replays_it(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    first = Recorder(engine, spool, interval=30)
    first.start()
    for _ in range(5):
        first.record(make_event())
    # What SIGKILL leaves: the writer never ran and the folder's lock goes with the process.
    first._stopping = True
    spool._lock_file.close()
    assert count(engine) == 0 and len(segments(spool)) == 1
    second = Recorder(engine, Spool(tmp_path / "spool"))
    second.start()
    assert second.flush(0)
    second.stop()
    assert count(engine) == 5 and segments(second.spool) == []


def test_two_processes_never_share_a_spool_folder(tmp_path):
    first = Spool(tmp_path / "spool")
    first.open()
    with pytest.raises(SpoolBusyError, match="LLM_USAGE_PROXY_SPOOL_DIR"):
        Spool(tmp_path / "spool").open()
    first.close()
    second = Spool(tmp_path / "spool")
    second.open()  # released with the first
    second.close()


def test_unwritable_spool_holds_events_in_memory_then_the_database_takes_them(sqlite_engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    recorder = Recorder(sqlite_engine, spool, queue_size=3, interval=30)
    recorder.start()
    recorder.record(make_event())
    assert recorder.flush(1)
    gate = park(recorder)  # a round would commit what memory holds while the disk is full
    os.dup2(os.open("/dev/full", os.O_WRONLY), spool._fd)  # the disk is full: every write() fails
    for _ in range(5):
        recorder.record(make_event())  # never raises
    assert (recorder.spilled, recorder.lost, recorder.depth()) == (3, 2, 3)
    gate.set()
    recorder.stop()
    assert count(sqlite_engine) == 4 and recorder.depth() == 0


def test_spool_lines_of_an_older_version_and_bad_events_are_handled(sqlite_engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    old = make_event()
    del old["client_gone"]  # written before the column existed
    bad = make_event()
    del bad["ts"]  # cannot be stored: set aside, never retried forever
    spool.folder.mkdir(parents=True)
    (spool.folder / "current.jsonl").write_text(json.dumps(old) + "\n")  # the pre-journal spool's name
    spool.append([make_event(), bad, make_event()])
    recorder = Recorder(sqlite_engine, spool, batch_size=10)
    recorder.start()
    recorder.stop()
    assert recorder.db_ok and count(sqlite_engine) == 3 and segments(spool) == []
    (kept,) = spool.folder.glob("rejected-*.json")
    assert json.loads(kept.read_text())["id"] == bad["id"]


def test_fsync_interval(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(spool_module.os, "fsync", lambda fd: synced.append(fd))
    spool = Spool(tmp_path / "spool", fsync_seconds=2.0)
    spool.open()
    synced.clear()
    spool.write(encode(make_event()))
    spool.tick(100.0)
    spool.tick(101.0)  # not yet due
    spool.tick(102.5)
    assert synced == [spool._fd, spool._fd]
    spool.rotate()  # a sealed segment and the folder's new entry are made durable too
    assert len(synced) == 4
    spool.close()
    before = len(synced)
    quiet = Spool(tmp_path / "quiet")
    quiet.open()
    quiet.write(encode(make_event()))
    quiet.tick(1e9)
    quiet.rotate()
    quiet.close()
    assert len(synced) == before  # 0 = never


def test_pricing_uses_tiers_and_never_prices_unknown_models_at_zero():
    cost, basis, version = price_event(make_event())
    assert basis == "estimated" and cost > 0 and version.startswith("genai-prices")
    assert price_event(make_event(model="my-own-model"))[:2] == (None, "unpriced")
    assert price_event(make_event(usage_known=False))[:2] == (None, "unpriced")
    # One Claude request over 200k input tokens is priced at the long-context tier (a per-request rule).
    small = price_event(make_event(provider="anthropic", model="claude-sonnet-4-5", input_tokens=100_000))[0]
    large = price_event(make_event(provider="anthropic", model="claude-sonnet-4-5", input_tokens=300_000))[0]
    assert large > 3 * small


def usage_rows(engine) -> list[dict]:
    names = "provider source kind team project api_key_id model variant requests input_tokens"
    names += " cache_read_tokens output_tokens cost basis details"
    c = USAGE.c
    stmt = select(*(c[n] for n in names.split())).order_by(c.bucket_start, c.team, c.model)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def test_rollup_groups_hourly_by_attribution_and_recomputes_late_hours(engine):
    hour2 = T0 + timedelta(hours=1)
    events = [make_event() for _ in range(3)]
    events += [make_event(team="ads", project="", status=500, error="http_500", usage_known=False, input_tokens=0,
                          cache_read_tokens=0, output_tokens=0)]  # fmt: skip
    events += [make_event(hour2, model="my-own-model", stream=True)]
    insert_events(engine, events)
    assert rollup(engine) == 3
    rows = usage_rows(engine)
    assert [(r["team"], r["model"], r["requests"]) for r in rows] == [
        ("ads", "gpt-4o-mini", 1),
        ("search", "gpt-4o-mini", 3),
        ("search", "my-own-model", 1),
    ]
    search = rows[1]
    assert (search["provider"], search["source"], search["kind"], search["project"]) == (
        "openai",
        "proxy",
        "proxy",
        "ranker",
    )
    assert search["api_key_id"] == "fp_0123456789abcdef0123" and search["variant"] == "endpoint=chat.completions"
    assert (search["input_tokens"], search["cache_read_tokens"], search["output_tokens"]) == (3000, 600, 300)
    single = price_event(events[0])[0]
    assert Decimal(search["cost"]) == pytest.approx(3 * single, abs=Decimal("1e-9"))
    assert (rows[2]["basis"], rows[2]["cost"]) == ("unpriced", None)
    assert json.loads(rows[0]["details"])["errors"] == 1
    assert rollup(engine) == 0  # nothing new: nothing rewritten
    assert [r["requests"] for r in usage_rows(engine)] == [1, 3, 1]
    insert_events(engine, [make_event()])  # a late event (e.g. replayed from the spool) in the first hour
    rollup(engine)
    assert [r["requests"] for r in usage_rows(engine)] == [1, 4, 1]
    with engine.connect() as conn:
        daily = conn.execute(text("SELECT SUM(requests) FROM usage_daily WHERE source = 'proxy'")).scalar_one()
    assert daily == 6


def test_purge_keeps_events_not_rolled_up(engine):
    old, new = T0 - timedelta(days=40), T0
    insert_events(engine, [make_event(old), make_event(new)])
    rollup(engine)
    insert_events(engine, [make_event(old)])  # old but not rolled up yet
    assert purge(engine, 30, now=T0) == 1
    assert count(engine) == 2
    rollup(engine)
    assert purge(engine, 30, now=T0) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT SUM(requests) FROM usage")).scalar_one() == 3  # usage outlives events


def test_rollup_in_small_chunks_adds_up_exactly(engine):
    insert_events(engine, [make_event(T0 + timedelta(minutes=i)) for i in range(7)])
    rollup(engine, chunk=3)
    rows = usage_rows(engine)
    assert [(r["requests"], r["input_tokens"]) for r in rows] == [(7, 7000)]
    assert Decimal(rows[0]["cost"]) == pytest.approx(7 * price_event(make_event())[0], abs=Decimal("1e-9"))
    assert json.loads(rows[0]["details"])["latency_ms_sum"] == 7 * 12.5
