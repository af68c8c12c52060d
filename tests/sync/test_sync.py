"""The sync engine against the fake admin API, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from collector.core.windows import DAY, HOUR, floor
from collector.sync.connections import add_connection, get_connection
from collector.sync.engine import high_water, sync_connection
from collector.sync.tables import SyncRun
from collector.sync.vault import load_vault
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings, totals

RUNS = SyncRun.__table__


def _add(engine, settings, fake_api, provider="openai", key=OPENAI_KEY, label="prod"):
    vault = load_vault(settings)
    conn = add_connection(engine, settings, vault, provider=provider, label=label, key=key, base_url=fake_api.base_url)
    return conn, vault


def test_first_sync_backfills_every_endpoint_and_files_rows_under_the_discovered_org(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=2)
    conn, vault = _add(engine, settings, fake_api)
    assert conn.account == "org-fake"  # discovered by the test call (costs organization_id)
    now = datetime.now(UTC)
    summary = sync_connection(engine, settings, conn.id, vault=vault, now=now)
    assert summary.ok, summary.error
    assert {e.endpoint for e in summary.endpoints} == {
        "completions",
        "embeddings",
        "moderations",
        "images",
        "audio_speeches",
        "audio_transcriptions",
        "vector_stores",
        "code_interpreter_sessions",
        "file_search_calls",
        "web_search_calls",
        "costs",
    }
    with engine.connect() as db:
        assert high_water(db, conn.id, "completions") == floor(now, HOUR)
        assert high_water(db, conn.id, "costs") == floor(now, DAY)
        kinds = dict(db.execute(text("SELECT kind, COUNT(*) FROM usage GROUP BY kind")).all())
        bases = dict(db.execute(text("SELECT basis, COUNT(*) FROM usage GROUP BY basis")).all())
        accounts = {r[0] for r in db.execute(text("SELECT DISTINCT account FROM usage"))}
        refs = {r[0] for r in db.execute(text("SELECT DISTINCT source_ref FROM usage WHERE kind='completions'"))}
        runs = db.execute(select(RUNS.c.status, RUNS.c.rows, RUNS.c.pages)).all()
    assert kinds["completions"] == 48 * 4 and kinds["costs"] == 2 * 4
    assert bases["billed"] == 8 and bases["estimated"] > 0 and bases["unpriced"] > 0
    assert accounts == {"org-fake"}
    assert len(refs) == 1 and next(iter(refs)).startswith(f"conn:{conn.id}/run:")
    assert all(r.status == "ok" for r in runs) and sum(r.rows for r in runs) == summary.rows
    assert get_connection(engine, conn.id).status == "ok"


def test_anthropic_sync_stores_messages_costs_and_claude_code(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=2)
    conn, vault = _add(engine, settings, fake_api, provider="anthropic", key=ANTHROPIC_KEY, label="claude")
    assert conn.account == "claude"  # the report does not name the org: the label is used
    summary = sync_connection(engine, settings, conn.id, vault=vault)
    assert summary.ok, summary.error
    with engine.connect() as db:
        by_kind = text("SELECT kind, COUNT(*) FROM usage WHERE line_item != 'web_search' GROUP BY kind")
        kinds = dict(db.execute(by_kind).all())
        neg = db.execute(text("SELECT COUNT(*) FROM usage WHERE input_tokens < cache_read_tokens")).scalar()
        searches = db.execute(
            text("SELECT COUNT(*), SUM(input_tokens) FROM usage WHERE kind = 'messages' AND line_item = 'web_search'")
        ).one()
    assert kinds == {"messages": 48 * 4, "cost_report": 2 * 4, "claude_code": 2 * 2}
    # Buckets with server-side web searches have a row of their own for them (priced per search).
    assert 0 < searches[0] <= 48 * 4 and searches[1] == 0
    assert neg == 0


def test_idempotent_seven_day_window_synced_three_times(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path)
    conn, vault = _add(engine, settings, fake_api)
    now = datetime.now(UTC)  # one clock for the three runs, so an hour boundary cannot fall between them
    since = floor(now, DAY) - timedelta(days=7)
    seen = []
    for _ in range(3):
        summary = sync_connection(
            engine, settings, conn.id, vault=vault, since=since, endpoints={"completions", "costs"}, now=now,
            refetch=True,
        )  # fmt: skip
        assert summary.ok, summary.error
        seen.append(totals(engine))
    assert seen[0] == seen[1] == seen[2]
    hours_today = int((floor(now, HOUR) - floor(now, DAY)) / HOUR)
    assert seen[0][0] == 7 * 24 * 4 + 7 * 4 + hours_today * 4  # hourly usage + daily costs, 4 groups


def test_late_revision_inside_the_lookback_shows_up_after_the_next_run(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=2, usage_lookback_hours=6)
    conn, vault = _add(engine, settings, fake_api)
    now = datetime.now(UTC)
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"completions"}, now=now).ok
    before = totals(engine, "kind='completions'")
    revise_from = int((floor(now, HOUR) - timedelta(hours=3)).timestamp())
    fake_api.api.faults.revise_from, fake_api.api.faults.revision = revise_from, 1
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"completions"}, now=now).ok
    after = totals(engine, "kind='completions'")
    assert after[0] == before[0]  # same rows, revised values
    assert after[1] == before[1] + 3 * 4 * 1000  # 3 revised hours x 4 groups x +1000 input tokens


def test_the_incomplete_current_bucket_is_never_fetched(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=1)
    conn, vault = _add(engine, settings, fake_api)
    now = datetime.now(UTC)
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"completions"}, now=now).ok
    with engine.connect() as db:
        newest = db.execute(text("SELECT MAX(bucket_end) FROM usage")).scalar()
    # bucket_end of the newest stored bucket is the start of the current hour
    newest = datetime.fromtimestamp(newest, UTC) if isinstance(newest, int) else newest
    assert newest == floor(now, HOUR)


def test_a_back_fill_started_again_resumes_where_it_got_to_unless_refetch(engine, tmp_path, fake_api):
    """``sync --since`` again after an interrupted back-fill fetches only what is missing."""
    settings = make_settings(tmp_path)
    conn, vault = _add(engine, settings, fake_api)
    now = datetime.now(UTC)
    since = floor(now, DAY) - timedelta(days=3)
    first = sync_connection(
        engine,
        settings,
        conn.id,
        vault=vault,
        since=since,
        until=since + timedelta(days=1),
        endpoints={"completions"},
        now=now,
    )  # fmt: skip  (it stopped a day in)
    assert first.ok and first.endpoints[0].window.end == since + timedelta(days=1)
    again = sync_connection(engine, settings, conn.id, vault=vault, since=since, endpoints={"completions"}, now=now)
    assert again.ok and again.endpoints[0].window.start == since + timedelta(days=1)  # resumed, not re-fetched
    after = totals(engine)
    full = sync_connection(engine, settings, conn.id, vault=vault, since=since, endpoints={"completions"}, now=now,
                           refetch=True)  # fmt: skip
    assert full.ok and full.endpoints[0].window.start == since  # --refetch starts over
    assert totals(engine) == after  # and finds the same rows
