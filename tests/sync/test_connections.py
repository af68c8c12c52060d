"""Connections: registering admin keys once, through the library and the CLI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from collector.app import app
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from collector.sync.connections import (
    ConnectionsError,
    add_connection,
    get_connection,
    list_connections,
    remove_connection,
    replace_key,
    retest_connection,
    set_active,
)
from collector.sync.engine import connection_lock, sync_connection
from collector.sync.vault import load_vault, new_secret, write_secret_file
from providers.base import KeyFormatError
from tests.conftest import create_database
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings

runner = CliRunner()


@pytest.mark.parametrize(
    ("provider", "key", "hint"),
    [
        ("openai", "sk-proj-test-abcdefghijklmnop", "sk-admin-"),
        ("openai", "sk-test-abcdefghijklmnopqrst", "admin-keys"),
        ("anthropic", "sk-ant-api03-test-abcdefghijkl", "sk-ant-admin01-"),
    ],
)
def test_keys_that_cannot_read_usage_are_refused_with_how_to_get_one(sqlite_engine, tmp_path, provider, key, hint):
    settings = make_settings(tmp_path)
    with pytest.raises(KeyFormatError) as err:
        add_connection(sqlite_engine, settings, load_vault(settings), provider=provider, label="x", key=key)
    assert hint in str(err.value)
    assert key not in str(err.value)
    assert list_connections(sqlite_engine) == []


def test_a_key_that_fails_its_test_call_is_not_stored(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path)
    fake_api.api.faults.auth_fail = True
    with pytest.raises(ConnectionsError) as err:
        add_connection(
            engine,
            settings,
            load_vault(settings),
            provider="openai",
            label="prod",
            key=OPENAI_KEY,
            base_url=fake_api.base_url,
        )
    assert "Incorrect API key provided" in str(err.value)  # the provider's message ...
    assert OPENAI_KEY not in str(err.value)  # ... with the key it echoed redacted
    assert list_connections(engine) == []
    assert fake_api.api.requests["total"] == 1  # 401 is not retried


def test_lifecycle_disable_enable_retest_replace_remove_keeps_rows(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=1)
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="anthropic", label="claude", key=ANTHROPIC_KEY, base_url=fake_api.base_url
    )
    assert (conn.status, conn.key_hint, conn.active) == ("ok", "sk-ant…r0S", True)
    with pytest.raises(ConnectionsError, match="already exists"):
        add_connection(engine, settings, vault, provider="anthropic", label="claude", key=ANTHROPIC_KEY, test=False)
    set_active(engine, conn.id, False)
    assert list_connections(engine, active_only=True) == []
    set_active(engine, conn.id, True)
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"cost_report"}).ok
    fake_api.api.faults.auth_fail = True
    assert retest_connection(engine, settings, vault, conn.id).auth_failed
    assert get_connection(engine, conn.id).paused
    fake_api.api.faults.auth_fail = False
    replaced = replace_key(engine, settings, vault, conn.id, "sk-ant-admin01-test-NewKey123456")
    assert replaced.status == "ok" and not replaced.paused and replaced.key_hint.endswith("456")
    remove_connection(engine, conn.id)
    with pytest.raises(ConnectionsError, match="no connection"):
        get_connection(engine, conn.id)
    with engine.connect() as db:
        assert db.execute(text("SELECT COUNT(*) FROM usage")).scalar() > 0  # collected rows kept
        assert db.execute(text("SELECT COUNT(*) FROM sync_state")).scalar() == 0


def test_cli_add_list_sync_disable_remove(fake_api):
    create_database()
    add = runner.invoke(
        app,
        ["connections", "add", "openai", "--label", "prod", "--base-url", fake_api.base_url],
        input=OPENAI_KEY + "\n",
    )
    assert add.exit_code == 0, add.output
    assert "added connection 1" in add.output and OPENAI_KEY not in add.output
    listed = runner.invoke(app, ["connections", "list"])
    assert "sk-admin…" in listed.output and "org-fake" in listed.output and OPENAI_KEY not in listed.output
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    synced = runner.invoke(app, ["connections", "sync", "1", "--since", since])
    assert synced.exit_code == 0, synced.output
    assert "completions" in synced.output and "ok" in synced.output
    assert runner.invoke(app, ["connections", "disable", "1"]).exit_code == 0
    assert "no " in runner.invoke(app, ["connections", "list"]).output
    assert runner.invoke(app, ["connections", "remove", "1"], input="n\n").exit_code == 1  # asks first
    removed = runner.invoke(app, ["connections", "remove", "1", "--yes"])
    assert removed.exit_code == 0 and "rows are kept" in removed.output


def test_a_sync_that_finds_its_connection_locked_is_skipped_not_failed(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path)
    conn = add_connection(
        engine, settings, load_vault(settings), provider="openai", label="p", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    with connection_lock(engine, settings, conn.id) as held:  # "another process" syncing it
        assert held
        summary = sync_connection(engine, settings, conn.id)
    assert (summary.skipped, summary.error, summary.endpoints) == ("locked", "", [])
    assert summary.note == f"skipped: another process is syncing connection {conn.id}"
    with engine.connect() as db:
        runs = db.execute(text("SELECT provider, endpoint, status, error FROM sync_runs")).all()
    assert runs == [("openai", "", "skipped", f"another process is syncing connection {conn.id}")]
    assert fake_api.api.requests["total"] == 1  # only add_connection's test call: nothing fetched
    assert get_connection(engine, conn.id).status == "ok"  # not marked failing


@pytest.mark.postgres
def test_the_postgresql_sync_lock_is_per_schema(pg_url, tmp_path):
    """Advisory locks are database-wide; connection 1 of another schema is another connection."""
    settings = make_settings(tmp_path)
    base = pg_url.split("options=")[0]
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base.rstrip("?&"), isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(text(f"CREATE SCHEMA {other_schema}"))
    mine, other = create_engine(pg_url), create_engine(f"{base}options={quote(f'-csearch_path={other_schema}')}")
    try:
        with connection_lock(mine, settings, 1) as held:
            assert held
            with connection_lock(mine, settings, 1) as again:
                assert not again  # the same connection: locked
            with connection_lock(other, settings, 1) as elsewhere:
                assert elsewhere  # the same id in another schema: free
    finally:
        mine.dispose()
        other.dispose()
        with admin.connect() as db:
            db.execute(text(f"DROP SCHEMA {other_schema} CASCADE"))
        admin.dispose()


def test_cli_sync_of_a_locked_connection_exits_0_and_only_a_failure_exits_1(fake_api):
    create_database()
    add = runner.invoke(
        app, ["connections", "add", "openai", "--label", "prod", "--base-url", fake_api.base_url], input=OPENAI_KEY
    )
    assert add.exit_code == 0, add.output
    settings = get_settings()
    engine = open_database(settings)
    with connection_lock(engine, settings, 1):
        skipped = runner.invoke(app, ["connections", "sync", "1"])
    assert skipped.exit_code == 0, skipped.output
    assert skipped.output.strip() == "skipped: another process is syncing connection 1"
    status = runner.invoke(app, ["status", "--check"])
    assert "skipped" not in status.output  # a skipped run is no problem and hides no real run
    fake_api.api.faults.auth_fail = True
    failed = runner.invoke(app, ["connections", "sync", "1"])
    assert failed.exit_code == 1
    with engine.connect() as db:
        assert [r[0] for r in db.execute(text("SELECT status FROM sync_runs ORDER BY id"))][:1] == ["skipped"]


def test_cli_refuses_project_key_and_empty_stdin():
    create_database()
    bad = runner.invoke(app, ["connections", "add", "openai", "--label", "p"], input="sk-proj-test-abcdefghijk\n")
    assert bad.exit_code == 1
    assert "admin key" in bad.output and "sk-proj-test-abcdefghijk" not in bad.output
    empty = runner.invoke(app, ["connections", "add", "openai", "--label", "p"], input="")
    assert empty.exit_code == 1 and "no key on stdin" in empty.output


def test_cli_secrets_new_and_rotate_keep_keys_readable(fake_api):
    create_database()
    runner.invoke(app, ["connections", "add", "openai", "--label", "prod", "--skip-test"], input=OPENAI_KEY + "\n")
    settings = get_settings()
    engine = open_database(settings)
    before = get_connection(engine, 1).key_encrypted
    assert runner.invoke(app, ["secrets", "new"]).exit_code == 0
    rotated = runner.invoke(app, ["secrets", "rotate"])
    assert rotated.exit_code == 0 and "re-encrypted 1" in rotated.output
    after = get_connection(engine, 1).key_encrypted
    assert after != before
    assert load_vault(settings).decrypt(after) == OPENAI_KEY


def test_a_database_copied_without_its_secret_fails_clearly(engine, tmp_path, fake_api):
    settings = make_settings(tmp_path)
    conn = add_connection(
        engine, settings, load_vault(settings), provider="openai", label="p", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    other = load_vault(make_settings(tmp_path))  # a different secret
    before = fake_api.api.requests["total"]
    summary = sync_connection(engine, settings, conn.id, vault=other)
    assert "cannot decrypt: wrong or missing secret" in summary.error and not summary.ok
    assert fake_api.api.requests["total"] == before  # nothing was sent with a garbage key
    stored = get_connection(engine, conn.id)
    assert stored.status == "failing" and "cannot decrypt" in stored.last_error


def test_cli_reports_a_missing_or_wrong_secret(fake_api):
    create_database()
    runner.invoke(app, ["connections", "add", "openai", "--label", "p", "--skip-test"], input=OPENAI_KEY + "\n")
    secret = get_settings().data_dir / "secret.key"
    secret.unlink()  # the database was copied without its secret
    missing = runner.invoke(app, ["connections", "test", "1"])
    assert missing.exit_code == 1 and "no secret configured" in missing.output
    assert not secret.exists()  # a test does not invent a secret that could never decrypt
    write_secret_file(secret, [new_secret()])  # ... or with somebody else's
    wrong = runner.invoke(app, ["connections", "test", "1"])
    assert wrong.exit_code == 1 and "cannot decrypt: wrong or missing secret" in wrong.output
