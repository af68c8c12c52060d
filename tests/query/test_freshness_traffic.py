"""Freshness, filter values and proxy traffic queries on SQLite and PostgreSQL."""

from datetime import UTC, datetime

from collector.core.store import upsert_records
from collector.query.health import freshness
from tests.dashboard.conftest import seed_records


def test_freshness_since_matches_the_full_version_for_recent_groups(engine):
    upsert_records(engine, seed_records())
    full = {(f.source, f.provider, f.account, f.kind): f for f in freshness(engine)}
    recent = freshness(engine, datetime(2026, 11, 13, tzinfo=UTC))
    keys = {(f.source, f.provider, f.account, f.kind) for f in recent}
    # openai costs (newest day Nov 5) and google billing (Nov 12) have nothing since Nov 13.
    assert keys == {
        ("api", "anthropic", "org-b", "messages"),
        ("api", "openai", "org-a", "completions"),
        ("proxy", "openai", "org-a", "proxy"),
    }
    for f in recent:
        key = (f.source, f.provider, f.account, f.kind)
        assert (f.newest_bucket_end, f.last_ingested) == (full[key].newest_bucket_end, full[key].last_ingested)
    assert freshness(engine, datetime(2027, 1, 1, tzinfo=UTC)) == []


def test_dimension_values_and_has_source(engine):
    from collector.query.report import dimension_values, has_source

    upsert_records(engine, seed_records())
    nov = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    values = dimension_values(engine, *nov)
    assert values["provider"] == ["anthropic", "google", "openai"]
    assert values["account"] == ["billing-1", "org-a", "org-b"]
    assert "gpt-4o" in values["model"] and "mystery-model" in values["model"]
    assert values["team"] == ["", "search", "support"]
    october = dimension_values(engine, datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    assert october["provider"] == ["anthropic", "openai"]
    assert has_source(engine, "proxy", *nov)
    assert not has_source(engine, "proxy", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def test_proxy_stats_over_the_window(engine):
    from datetime import timedelta

    from collector.proxy.recorder import insert_events
    from collector.query.traffic import proxy_stats
    from tests.dashboard.conftest import NOW, proxy_event

    since = NOW - timedelta(hours=1)
    assert proxy_stats(engine, since, NOW).requests == 0
    # 20 calls in the hour (latency 10..200 ms): one 429, one 502 from the proxy, one stream the
    # upstream cut, one client that hung up (not an error); one call just outside each end.
    events = [proxy_event(NOW - timedelta(minutes=2 * (i + 1)), 10.0 * (i + 1)) for i in range(20)]
    events[0]["status"] = 429
    events[1]["status"], events[1]["error"] = 502, "upstream_unreachable"
    events[2]["error"] = "upstream_timeout"
    events[3]["error"] = "client_disconnected"
    events += [proxy_event(since - timedelta(seconds=1), 1.0, 500), proxy_event(NOW, 1.0, 500)]
    insert_events(engine, events)
    stats = proxy_stats(engine, since, NOW)
    assert (stats.requests, stats.errors, stats.seconds) == (20, 3, 3600)
    assert (stats.p50_ms, stats.p95_ms) == (110.0, 200.0)  # offsets 10 and 19 of 10..200
    assert stats.error_rate == 0.15
