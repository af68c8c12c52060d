"""Faults from the provider side: transient errors, revoked keys, a looping cursor."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from collector.core.windows import HOUR, floor
from collector.db.migrate import open_database
from collector.sync.connections import add_connection, get_connection, retest_connection
from collector.sync.engine import high_water, sync_connection
from collector.sync.tables import SyncRun
from collector.sync.vault import load_vault
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings, totals

RUNS = SyncRun.__table__
ENDPOINTS = {"completions", "embeddings", "costs", "messages", "cost_report", "claude_code"}


def _add_both(engine, settings, base_url):
    vault = load_vault(settings)
    ids = [
        add_connection(engine, settings, vault, provider=p, label=p, key=k, base_url=base_url).id
        for p, k in (("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY))
    ]
    return ids, vault


def _backfill(engine, settings, ids, vault, now):
    for cid in ids:
        summary = sync_connection(engine, settings, cid, vault=vault, endpoints=ENDPOINTS, now=now)
        assert summary.ok, summary.error


def test_thirty_day_backfill_with_20_percent_transient_faults_equals_the_clean_run(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=30, http_timeout_seconds=0.3, http_max_attempts=10)
    now = datetime.now(UTC)
    clean = open_database(url=f"sqlite:///{tmp_path / 'clean.db'}")
    ids, vault = _add_both(clean, settings, fake_api.base_url)
    _backfill(clean, settings, ids, vault, now)
    clean_requests = fake_api.api.requests["total"]

    faults = fake_api.api.faults
    faults.transient_rate, faults.timeout_sleep = 0.2, 0.6  # 429+Retry-After, 500, read timeout, truncated JSON
    faults.retry_after = "0"
    ids, vault = _add_both(engine, settings, fake_api.base_url)
    _backfill(engine, settings, ids, vault, now)
    assert totals(engine) == totals(clean)
    assert totals(engine)[0] > 30 * 24 * 4 * 3  # a real 30-day back-fill, not an empty one
    assert sum(v for k, v in fake_api.api.statuses.items() if k >= 429) > 0  # faults really happened
    assert fake_api.api.requests["total"] > 2 * clean_requests - 4  # and were retried


def test_revoked_key_stops_at_once_with_the_providers_message_and_pauses(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path)
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="openai", label="prod", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    fake_api.api.faults.auth_fail = True
    before = fake_api.api.requests["total"]
    summary = sync_connection(engine, settings, conn.id, vault=vault)
    assert summary.auth_failed and not summary.ok
    assert fake_api.api.requests["total"] - before == 1  # one request: no retry storm, no other endpoint
    stored = get_connection(engine, conn.id)
    assert stored.status == "auth_failed" and stored.paused
    assert "Incorrect API key provided" in stored.last_error and OPENAI_KEY not in stored.last_error
    # the scheduled job is paused: no request at all until the key is re-tested or replaced
    assert sync_connection(engine, settings, conn.id, vault=vault, scheduled=True).skipped == "paused"
    assert fake_api.api.requests["total"] - before == 1
    fake_api.api.faults.auth_fail = False
    assert retest_connection(engine, settings, vault, conn.id).ok
    assert sync_connection(engine, settings, conn.id, vault=vault, scheduled=True, endpoints={"costs"}).ok


def test_a_repeating_cursor_stops_the_walk_keeps_the_pages_and_the_next_run_goes_on(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=15)  # 360 hourly buckets = 3 pages of <= 168
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="anthropic", label="c", key=ANTHROPIC_KEY, base_url=fake_api.base_url
    )
    fake_api.api.faults.repeat_cursor = True
    now = datetime.now(UTC)
    summary = sync_connection(engine, settings, conn.id, vault=vault, now=now)
    by_name = {e.endpoint: e for e in summary.endpoints}
    assert by_name["messages"].status == "ok" and by_name["cost_report"].status == "ok"  # not a failure
    assert get_connection(engine, conn.id).status == "ok"
    with engine.connect() as db:
        mark = high_water(db, conn.id, "messages")
        run = db.execute(select(RUNS).where(RUNS.c.endpoint == "messages")).one()
    assert run.pages == 2  # page 2 repeated the cursor of page 1: read once, the walk stopped there
    assert mark is not None and mark < floor(now, HOUR)  # never marked done past what was read
    fake_api.api.faults.repeat_cursor = False
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"messages"}).ok
    # Token rows only (buckets with web searches have a second row for them).
    assert totals(engine, "kind='messages' AND line_item=''")[0] == 360 * 4
