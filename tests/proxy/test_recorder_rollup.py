"""Recorder (queue, spool, exactly-once replay, drain) and hourly rollup, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from collector.core.store import USAGE
from collector.proxy.recorder import Recorder, Spool, insert_events, new_event_id, price_event
from collector.proxy.rollup import purge, rollup

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
    }
    event.update(over)
    return event


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM proxy_events")).scalar_one()


def test_replay_is_exactly_once_even_when_repeated_or_interrupted(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    events = [make_event() for _ in range(25)]
    assert insert_events(engine, events[:10]) == 10  # committed, but its acknowledgement was "lost" ...
    spool.append(events)  # ... so the whole batch was spooled too
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise ConnectionError("database went away mid-replay")
        return insert_events(engine, batch)

    with pytest.raises(ConnectionError):
        spool.replay(flaky, batch_size=10)
    assert spool.pending()  # the unfinished file stays
    assert spool.replay(lambda b: insert_events(engine, b), batch_size=10) == 15
    assert not spool.pending()
    assert count(engine) == 25
    assert spool.replay(lambda b: insert_events(engine, b), batch_size=10) == 0


def test_torn_spool_line_is_skipped_and_the_rest_replayed(engine, tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.append([make_event(), make_event()])
    with open(spool.current, "a") as fh:
        fh.write(json.dumps(make_event())[:40])  # a crash in the middle of a write
    assert spool.replay(lambda b: insert_events(engine, b), batch_size=100) == 2


def test_full_queue_spills_to_the_spool_without_blocking(tmp_path, sqlite_engine):
    recorder = Recorder(sqlite_engine, Spool(tmp_path / "spool"), queue_size=2)
    for _ in range(5):
        recorder.record(make_event())  # writer not started: the queue fills
    assert (recorder.depth(), recorder.spilled) == (2, 3)
    assert recorder.spool.overflow.read_text().count("\n") == 3
    recorder.start()  # the writer replays the overflow once the database answers
    recorder.stop()
    assert count(sqlite_engine) == 5 and not recorder.spool.pending()


def test_shutdown_drains_the_queue(engine, tmp_path):
    recorder = Recorder(engine, Spool(tmp_path / "spool"), batch_size=1000, interval=30)
    recorder.start()
    for _ in range(50):
        recorder.record(make_event())
    recorder.stop()
    assert count(engine) == 50 and recorder.written == 50


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
