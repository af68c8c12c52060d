"""Every cloud billing provider through its fake on loopback: back-fill, re-syncs, faults, a revoked credential.

Runs on a SQLite file and on PostgreSQL. The fakes answer in each API's own wire format
(tests/fakes/cloud_api.py) and the SDKs (boto3, azure-identity, google-cloud-bigquery) are real,
pointed at 127.0.0.1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from collector.core.windows import DAY, floor
from collector.db.migrate import open_database
from collector.sync.connections import add_connection, get_connection, retest_connection
from collector.sync.engine import high_water, sync_connection
from collector.sync.tables import SyncRun
from collector.sync.vault import load_vault
from providers import get_provider
from tests.cloud.helpers import CLOUD, connection
from tests.sync.sync_helpers import make_settings, totals

RUNS = SyncRun.__table__
#: What each provider's requests are counted under in the fake (its first request of a sync).
COUNTER = {
    "openrouter": ("openrouter",),
    "xai": ("xai",),
    "aws_bedrock": ("aws", "aws_sts"),
    "azure_openai": ("azure", "azure_token"),
    "google": ("google", "google_token"),
}
KIND = {
    "openrouter": "activity",
    "xai": "usage",
    "aws_bedrock": "cost_explorer",
    "azure_openai": "cost_management",
    "google": "bigquery_billing",
}


def _add(engine, settings, cloud, provider, label=None):
    vault = load_vault(settings)
    conn = add_connection(
        engine,
        settings,
        vault,
        provider=provider,
        label=label or provider,
        **connection(provider, cloud.url, cloud.authority_url),
    )
    return conn, vault


def _asked(cloud, provider) -> int:
    return sum(cloud.api.requests[c] for c in COUNTER[provider])


@pytest.mark.parametrize("provider", CLOUD)
def test_backfill_then_three_resyncs_give_identical_totals(provider, engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=20)
    conn, vault = _add(engine, settings, cloud, provider)
    now = datetime.now(UTC)
    first = sync_connection(engine, settings, conn.id, vault=vault, now=now)
    assert first.ok, first.error
    seen = [totals(engine)]
    for _ in range(3):
        summary = sync_connection(engine, settings, conn.id, vault=vault, now=now)
        assert summary.ok, summary.error
        seen.append(totals(engine))
    assert seen[0] == seen[1] == seen[2] == seen[3]
    rows, cost = seen[0][0], seen[0][6]
    assert rows > 20 and cost > 0  # a real back-fill: every day has rows
    with engine.connect() as db:
        assert high_water(db, conn.id, KIND[provider]) == floor(now, DAY)
    assert get_connection(engine, conn.id).status == "ok"


@pytest.mark.parametrize("provider", CLOUD)
def test_transient_faults_change_nothing(provider, sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=15, http_timeout_seconds=0.3, http_max_attempts=12)
    clean = open_database(url=f"sqlite:///{tmp_path / 'clean.db'}")
    conn, vault = _add(clean, settings, cloud, provider)
    now = datetime.now(UTC)
    assert sync_connection(clean, settings, conn.id, vault=vault, now=now).ok
    clean_asked = _asked(cloud, provider)

    faults = cloud.api.faults
    faults.transient_rate, faults.timeout_sleep = 0.3, 0.6  # 429, 500, a read timeout, truncated JSON
    conn, vault = _add(sqlite_engine, settings, cloud, provider)
    summary = sync_connection(sqlite_engine, settings, conn.id, vault=vault, now=now)
    assert summary.ok, summary.error
    assert totals(sqlite_engine) == totals(clean)
    assert sum(v for k, v in cloud.api.statuses.items() if k >= 429) > 0  # faults really happened
    assert _asked(cloud, provider) > 2 * clean_asked  # and were retried


@pytest.mark.parametrize("provider", CLOUD)
def test_a_revoked_credential_pauses_the_connection_after_one_request(provider, engine, tmp_path, cloud):
    settings = make_settings(tmp_path)
    conn, vault = _add(engine, settings, cloud, provider)
    cloud.api.revoked.add(provider.split("_")[0])
    before = _asked(cloud, provider)
    summary = sync_connection(engine, settings, conn.id, vault=vault)
    assert summary.auth_failed and not summary.ok
    assert _asked(cloud, provider) - before == 1  # one request: no retry storm
    stored = get_connection(engine, conn.id)
    assert stored.status == "auth_failed" and stored.paused
    assert sync_connection(engine, settings, conn.id, vault=vault, scheduled=True).skipped == "paused"
    assert _asked(cloud, provider) - before == 1
    cloud.api.revoked.clear()
    assert retest_connection(engine, settings, vault, conn.id).ok
    assert sync_connection(engine, settings, conn.id, vault=vault, scheduled=True).ok


def test_a_lost_permission_is_an_auth_failure_too(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path)
    for provider in ("aws_bedrock", "azure_openai", "google"):
        conn, vault = _add(sqlite_engine, settings, cloud, provider)
        cloud.api.forbidden.add(provider.split("_")[0])
        summary = sync_connection(sqlite_engine, settings, conn.id, vault=vault)
        assert summary.auth_failed, (provider, summary.error)
        assert any(word in summary.error for word in ("AccessDenied", "authorization", "Access Denied")), summary.error


def test_account_levels_are_facts_beside_the_connection_not_spend(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=2)
    for provider, expected in (
        ("openrouter", {"balance_usd": "74.75", "credits_usd": "100.5"}),
        ("xai", {"balance_usd": "7.99", "invoice_preview_usd": "12.34"}),
    ):
        conn, vault = _add(sqlite_engine, settings, cloud, provider)
        assert sync_connection(sqlite_engine, settings, conn.id, vault=vault).ok
        facts = get_connection(sqlite_engine, conn.id).fact_values
        assert expected.items() <= facts.items() and "as_of" in facts
    assert totals(sqlite_engine, "kind NOT IN ('activity', 'usage')")[0] == 0  # no balance row in usage


def test_cost_explorer_is_asked_once_per_window_rereads_estimated_days_and_waits_between_scheduled_calls(
    sqlite_engine, tmp_path, cloud
):
    settings = make_settings(tmp_path, backfill_days=20, aws_cost_explorer_min_hours=8)
    conn, vault = _add(sqlite_engine, settings, cloud, "aws_bedrock")
    today = floor(datetime.now(UTC), DAY)
    cloud.api.aws_estimated_from = today - timedelta(days=4)
    cloud.api.ce_requests.clear()
    assert sync_connection(sqlite_engine, settings, conn.id, vault=vault).ok
    firsts = [r for r in cloud.api.ce_requests if "NextPageToken" not in r]
    assert len(firsts) == 1  # one query for the whole 20-day window; the rest are its pages
    assert len(cloud.api.ce_requests) == 3  # 20 days at 7 days a page
    assert firsts[0]["TimePeriod"] == {
        "Start": (today - timedelta(days=20)).strftime("%Y-%m-%d"),
        "End": today.strftime("%Y-%m-%d"),
    }
    assert firsts[0]["Granularity"] == "DAILY" and firsts[0]["Metrics"] == ["UnblendedCost", "UsageQuantity"]
    with sqlite_engine.connect() as db:
        assert high_water(db, conn.id, "cost_explorer") == today - timedelta(days=4)  # estimated days stay open
    cloud.api.ce_requests.clear()
    assert sync_connection(sqlite_engine, settings, conn.id, vault=vault, scheduled=True).ok
    assert cloud.api.ce_requests == []  # charged API: not again within 8 hours
    assert sync_connection(sqlite_engine, settings, conn.id, vault=vault).ok  # a manual sync runs
    assert cloud.api.ce_requests[0]["TimePeriod"]["Start"] == (today - timedelta(days=7)).strftime("%Y-%m-%d")


def test_a_role_is_assumed_with_the_key_pair(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=2)
    cls = get_provider("aws")
    spec = connection("aws_bedrock", cloud.url)
    parts = cls.credential(spec["key"])
    spec["key"] = cls.pack_credential({**parts, "role_arn": "arn:aws:iam::999988887777:role/billing-reader"})
    conn = add_connection(sqlite_engine, settings, load_vault(settings), provider="aws", label="role", **spec)
    assert conn.provider == "aws_bedrock" and conn.account == "999988887777"
    assert conn.key_hint == "AKIA…EST, role billing-reader"
    assert cloud.api.requests["aws_sts"] == 2  # AssumeRole, then GetCallerIdentity as the role


def test_xai_splits_a_window_the_api_answers_with_limit_reached(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=25)
    conn, vault = _add(sqlite_engine, settings, cloud, "xai")
    assert conn.account == "team-fake-123"  # discovered from the key's validation
    cloud.api.xai_limit_days = 4
    summary = sync_connection(sqlite_engine, settings, conn.id, vault=vault)
    assert summary.ok, summary.error
    assert totals(sqlite_engine)[0] == 25 * 3  # every day of every description, nothing dropped
    cloud.api.xai_limit_days = 0  # even one day is too much: refuse rather than store a truncated answer
    summary = sync_connection(sqlite_engine, settings, conn.id, vault=vault)
    assert not summary.ok and "limitReached" in summary.error


def test_azure_never_sends_its_token_to_a_next_link_on_another_host(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=20)
    conn, vault = _add(sqlite_engine, settings, cloud, "azure_openai")
    cloud.api.base_url = "http://127.0.0.2:9"  # the fake now writes nextLinks to another host
    summary = sync_connection(sqlite_engine, settings, conn.id, vault=vault)
    assert not summary.ok and "another host" in summary.error


def test_openrouter_refuses_an_inference_key_with_the_providers_message(sqlite_engine, tmp_path, cloud):
    from collector.sync.connections import ConnectionsError

    settings = make_settings(tmp_path)
    spec = connection("openrouter", cloud.url)
    spec["key"] = "sk-or-v1-inference-0000000000000000"
    with pytest.raises(ConnectionsError, match="Only management keys"):
        add_connection(sqlite_engine, settings, load_vault(settings), provider="openrouter", label="x", **spec)


def test_google_tests_with_a_free_dry_run_and_files_rows_under_the_export_account(sqlite_engine, tmp_path, cloud):
    settings = make_settings(tmp_path, backfill_days=3)
    conn, vault = _add(sqlite_engine, settings, cloud, "google")
    assert conn.account == "0123AB-4567CD-89EF01"  # from the table name
    assert cloud.api.bq_queries == []  # the test call was a dry run (jobs.insert), not a query
    assert sync_connection(sqlite_engine, settings, conn.id, vault=vault).ok
    query = cloud.api.bq_queries[0]
    assert "`billing-proj.billing_export.gcp_billing_export_v1_0123AB_4567CD_89EF01`" in query["query"]
    assert set(query["params"]["services"]) >= {"Vertex AI", "Generative Language API"}
    with sqlite_engine.connect() as db:
        runs = db.execute(select(RUNS.c.status, RUNS.c.pages)).all()
    assert runs and all(r.status == "ok" for r in runs)


def test_status_shows_each_cloud_connection_and_its_freshness(cloud):
    from typer.testing import CliRunner

    from collector.app import app
    from collector.core.settings import get_settings

    settings = get_settings()
    engine = open_database(settings)
    vault = load_vault(settings)
    for provider in CLOUD:
        spec = connection(provider, cloud.url, cloud.authority_url)
        conn = add_connection(engine, settings, vault, provider=provider, label=provider, **spec)
        assert sync_connection(engine, settings, conn.id, vault=vault, since=datetime.now(UTC) - timedelta(days=3)).ok
    engine.dispose()
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    for provider in CLOUD:
        assert f"{provider} ({provider}, key " in result.output  # the connection and its health
        assert KIND[provider] in result.output  # the freshness of its rows
