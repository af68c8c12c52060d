"""``llm-usage status`` and ``status --check``, on the real tables of the other features.

Rows are made through the features' own code wherever it exists: connections by
``collector.sync.connections.add_connection`` / ``mark_status`` / ``set_active``, a real sync
against the fake admin API on 127.0.0.1, imports by ``importers.service.import_file`` of the
documented CSV fixtures, proxy events by ``collector.proxy.recorder.insert_events``. Only
``sync_state`` / ``sync_runs`` rows that a sync would take minutes of fake time to produce are
inserted directly, through their SQLModel tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, insert, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from collector.app import app
from collector.cli.report import parse_age
from collector.core.http import mask_key
from collector.core.settings import Settings, get_settings
from collector.core.store import upsert_records
from collector.proxy.recorder import Spool, insert_events
from collector.query.health import (
    CONNECTION_COLUMNS,
    IMPORT_FILE_COLUMNS,
    connection_listing,
    database_info,
    import_file_listing,
    newest_day,
    status,
    sync_run_listing,
)
from collector.sync.connections import CONNECTIONS, add_connection, mark_status, set_active
from collector.sync.engine import sync_connection
from collector.sync.tables import SyncRun, SyncState
from collector.sync.vault import load_vault, new_secret
from importers.service import import_file
from tests.proxy.test_recorder_rollup import make_event
from tests.query.report_seed import seed_records
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings

SYNC_STATE = SyncState.__table__
SYNC_RUNS = SyncRun.__table__
GCP = Path(__file__).parents[1] / "fixtures" / "csv" / "gcp_billing.csv"
GCP_ACCOUNT = "0123AB-4567CD-89EF01"  # the fixture's billing_account_id
OPENAI_HINT = mask_key(OPENAI_KEY)
ANTHROPIC_HINT = mask_key(ANTHROPIC_KEY)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    monkeypatch.setenv("LLM_USAGE_SECRET_KEYS", new_secret())  # a shared database needs one
    get_settings.cache_clear()
    yield engine


def _import_gcp(engine: Engine, tmp_path: Path, month: str) -> None:
    """The GCP fixture moved to another month (other bytes, so not a duplicate), imported for real."""
    path = tmp_path / f"gcp-{month}.csv"
    path.write_text(GCP.read_text().replace("2026-09-", f"2026-{month}-"))
    result = import_file(path, engine=engine, settings=get_settings(), who="test")
    assert result.status == "imported", result.summary()


@pytest.fixture
def with_tables(db: Engine, tmp_path: Path) -> Engine:
    """Two connections (one active and ok, one inactive with a refused key), imports, proxy events."""
    settings = get_settings()
    vault = load_vault(settings)
    now = datetime.now(UTC)
    prod = add_connection(db, settings, vault, provider="openai", label="Prod OpenAI", key=OPENAI_KEY, test=False)
    old = add_connection(
        db, settings, vault, provider="anthropic", label="Old Anthropic", key=ANTHROPIC_KEY, test=False
    )
    assert (prod.id, old.id) == (1, 2)
    mark_status(db, 1, "ok", last_synced_at=now - timedelta(minutes=10))
    mark_status(db, 2, "auth_failed", "401 invalid x-api-key")
    set_active(db, 2, False)
    with db.begin() as conn:
        conn.execute(
            insert(SYNC_STATE),
            [
                {"connection_id": 1, "endpoint": "completions", "high_water": now.replace(minute=0), "updated_at": now},
                {
                    "connection_id": 1,
                    "endpoint": "costs",
                    "high_water": now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1),
                    "updated_at": now,
                },
            ],
        )
        conn.execute(insert(SYNC_RUNS), [_run_row(1, "completions", "ok", now - timedelta(minutes=10))])
    _import_gcp(db, tmp_path, "09")
    _import_gcp(db, tmp_path, "10")
    bad = tmp_path / "bad.csv"
    bad.write_text(GCP.read_text().replace("2026-09-03 01:00:00 UTC", "not a time", 1))
    assert import_file(bad, importer="gcp_billing", engine=db, settings=settings).status == "failed"
    # 19 events every 5 minutes: 12 of them (3..58 minutes ago) in the last hour.
    assert insert_events(db, [make_event(now - timedelta(minutes=5 * i - 2)) for i in range(1, 20)]) == 19
    return db


def _run_row(connection_id: int, endpoint: str, state: str, when: datetime, error: str = "") -> dict:
    return {
        "connection_id": connection_id,
        "provider": "openai",
        "endpoint": endpoint,
        "window_start": when - timedelta(hours=1),
        "window_end": when,
        "started_at": when,
        "finished_at": when,
        "status": state,
        "error": error,
        "runner": "test",
    }


def test_nothing_configured(db: Engine) -> None:
    code, out, _ = run("status")
    assert code == 0
    assert "  no connections configured" in out
    assert "  no CSV imports recorded" in out
    assert "  no proxy events recorded" in out
    assert f"{db.dialect.name} " in out and "0 usage rows" in out
    code, out, _ = run("status", "--check")
    assert (code, out.strip()) == (0, "ok: no problems (max age 3h)")


def test_status_lists_connections_imports_proxy_and_database(with_tables: Engine) -> None:
    upsert_records(with_tables, seed_records())
    code, out, _ = run("status")
    assert code == 0, out
    assert f"Prod OpenAI (openai, key {OPENAI_HINT}): ok" in out
    assert f"Old Anthropic (anthropic, key {ANTHROPIC_HINT}): auth_failed [inactive]" in out
    assert "last error: 401 invalid x-api-key" in out
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    assert f"costs: complete up to {yesterday:%Y-%m-%dT%H:%M:%SZ}" in out
    assert "completions: complete up to " in out and "; last run ok " in out
    assert f"gcp_billing / {GCP_ACCOUNT}: newest period ends 2026-10-03; 2 file(s); last import" in out
    assert "gcp_billing / (no account): newest period ends none; 1 file(s), 1 failed" in out
    assert "events in the last hour: 12;" in out and "19 event(s) not rolled up yet" in out
    assert f"csv/google/{GCP_ACCOUNT}/gcp_billing: up to 2026-10-03T01:00:00Z" in out
    assert "usage rows" in out and "migration " in out


def test_status_json(with_tables: Engine) -> None:
    code, out, _ = run("status", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["connections"][0]["key_hint"] == OPENAI_HINT
    assert [e["endpoint"] for e in data["connections"][0]["endpoints"]] == ["completions", "costs"]
    assert data["connections"][0]["endpoints"][0]["last_run_status"] == "ok"
    imports = {i["account"]: i for i in data["imports"]}
    assert imports[GCP_ACCOUNT]["newest_period_end"] == "2026-10-03T01:00:00Z"
    assert (imports[GCP_ACCOUNT]["files"], imports[""]["failed"]) == (2, 1)
    assert data["proxy"]["events_last_hour"] == 12
    assert data["database"]["backend"] == with_tables.dialect.name
    assert data["problems"] == []


def test_spool_files_are_counted(db: Engine) -> None:
    """Events waiting in the proxy's spool (database down) show although no event is stored."""
    Spool(get_settings().resolved_spool_dir()).append([make_event()])
    result = status(db, get_settings())
    assert result.proxy is not None and result.proxy.spool_files == 1 and result.proxy.spool_bytes > 100
    assert result.proxy.events_last_hour == 0 and result.proxy.newest_event is None


def test_check_exits_1_on_stale_then_0_once_fresh(with_tables: Engine) -> None:
    assert run("status", "--check")[0] == 0
    mark_status(with_tables, 1, "ok", last_synced_at=datetime.now(UTC) - timedelta(hours=5))
    code, out, _ = run("status", "--check")
    assert code == 1
    assert out.splitlines() == ["connection Prod OpenAI (openai): stale: last success 5h00m ago (max age 3h00m)"]
    assert run("status", "--check", "--max-age", "6h")[0] == 0
    mark_status(with_tables, 1, "ok", last_synced_at=datetime.now(UTC))
    code, out, _ = run("status", "--check")
    assert (code, out.strip()) == (0, "ok: no problems (max age 3h)")


def test_check_exits_1_on_a_failing_connection(with_tables: Engine) -> None:
    mark_status(with_tables, 1, "failing", "completions: RetriableAPIError: 429 rate limited")
    code, out, _ = run("status", "--check")
    assert code == 1
    assert out.splitlines() == [
        "connection Prod OpenAI (openai): failing: completions: RetriableAPIError: 429 rate limited"
    ]


def test_failed_run_after_the_last_success_fails_an_ok_connection(with_tables: Engine) -> None:
    now = datetime.now(UTC)
    with with_tables.begin() as conn:
        conn.execute(insert(SYNC_RUNS).values(_run_row(1, "costs", "failed", now, "FatalAPIError: 403 forbidden")))
    assert status(with_tables, get_settings()).problems == [
        "connection Prod OpenAI (openai): failing: FatalAPIError: 403 forbidden"
    ]
    mark_status(with_tables, 1, "ok", last_synced_at=now + timedelta(minutes=1))  # a later success clears it
    assert status(with_tables, get_settings(), now=now + timedelta(minutes=2)).problems == []


def test_connection_without_any_success_is_a_problem(with_tables: Engine) -> None:
    set_active(with_tables, 2, True)
    mark_status(with_tables, 2, "untested")
    result = status(with_tables, get_settings())
    assert "connection Old Anthropic (anthropic): no successful sync yet" in result.problems


def test_status_after_a_real_sync_then_a_refused_key(
    db: Engine, tmp_path: Path, fake_api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real sync fills connections / sync_state / sync_runs; a 401 afterwards fails ``--check``."""
    settings: Settings = make_settings(tmp_path, backfill_days=1)
    vault = load_vault(settings)
    conn = add_connection(
        db, settings, vault, provider="openai", label="prod", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    assert conn.id is not None
    now = datetime.now(UTC)
    assert sync_connection(db, settings, conn.id, vault=vault, now=now, endpoints={"completions", "costs"}).ok
    result = status(db, settings, now=now)
    (c,) = result.connections or []
    assert (c.status, c.account, c.key_hint) == ("ok", "org-fake", OPENAI_HINT)
    assert [(e.endpoint, e.last_run_status) for e in c.endpoints] == [("completions", "ok"), ("costs", "ok")]
    assert c.endpoints[0].newest_complete == now.replace(minute=0, second=0, microsecond=0)
    assert result.problems == []
    assert run("status", "--check")[0] == 0
    fake_api.api.faults.auth_fail = True
    assert sync_connection(db, settings, conn.id, vault=vault, endpoints={"completions"}).auth_failed
    code, out, _ = run("status", "--check")
    assert code == 1 and out.startswith("connection prod (openai): failing: ") and "401" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-age", "soon"], "error: --max-age: cannot read 'soon'; accepted: a positive number with s, m, h or d"),
        (["--format", "yaml"], "error: --format: unknown value 'yaml'; accepted: table, json"),
    ],
)
def test_status_bad_input(db: Engine, args: list[str], message: str) -> None:
    code, out, err = run("status", *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_parse_age() -> None:
    assert parse_age("3h") == timedelta(hours=3)
    assert parse_age("90m") == timedelta(minutes=90)
    assert parse_age("2d") == timedelta(days=2)
    with pytest.raises(ValueError, match="--max-age"):
        parse_age("0h")


def test_status_never_reads_the_encrypted_key_and_masks_long_hints(with_tables: Engine) -> None:
    leaked = "sk-admin-test-0123456789abcdefXYZ"
    with with_tables.begin() as conn:  # a hint stored unmasked by some older code path
        conn.execute(update(CONNECTIONS).where(CONNECTIONS.c.id == 1).values(key_hint=leaked))
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(with_tables, "before_cursor_execute", record)
    try:
        result = status(with_tables, get_settings())
    finally:
        event.remove(with_tables, "before_cursor_execute", record)
    assert statements and not [st for st in statements if "key_encrypted" in st]
    assert (result.connections or [])[0].key_hint == "sk-admin…XYZ"
    code, out, _ = run("status")
    assert code == 0
    assert leaked not in out and "sk-admin…XYZ" in out


# -- the admin listings (dashboard's Data & health and Connections pages) -------------------------


def test_listings_name_their_columns_mask_keys_and_never_read_the_encrypted_key(with_tables: Engine) -> None:
    leaked = "sk-admin-test-0123456789abcdefXYZ"
    mark_status(with_tables, 2, "auth_failed", f"401 invalid x-api-key {leaked}")
    with with_tables.begin() as conn:
        conn.execute(
            insert(SYNC_RUNS),
            [_run_row(2, "messages", "failed", datetime.now(UTC) - timedelta(minutes=1), f"401 for {leaked}")],
        )
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(with_tables, "before_cursor_execute", record)
    try:
        conns = connection_listing(with_tables)
        runs = sync_run_listing(with_tables)
    finally:
        event.remove(with_tables, "before_cursor_execute", record)
    assert statements and not [st for st in statements if "key_encrypted" in st]
    assert conns.columns == CONNECTION_COLUMNS and "key_encrypted" not in conns.columns
    rows = [dict(zip(conns.columns, r, strict=True)) for r in conns.rows]
    assert [(r["id"], r["label"], r["key_hint"]) for r in rows] == [
        (1, "Prod OpenAI", OPENAI_HINT),
        (2, "Old Anthropic", ANTHROPIC_HINT),
    ]
    assert rows[1]["last_error"] == "401 invalid x-api-key sk-admi…" and rows[1]["active"] is False
    text = repr(conns.rows) + repr(runs.rows)
    assert leaked not in text and OPENAI_KEY not in text and ANTHROPIC_KEY not in text
    newest = dict(zip(runs.columns, runs.rows[0], strict=True))  # newest first
    assert (newest["connection_id"], newest["status"], newest["error"]) == (2, "failed", "401 for sk-admi…")
    assert newest["started_at"].tzinfo is not None
    assert len(sync_run_listing(with_tables, limit=1).rows) == 1


def test_import_file_listing_newest_first(with_tables: Engine) -> None:
    files = import_file_listing(with_tables)
    assert files.columns == IMPORT_FILE_COLUMNS
    rows = [dict(zip(files.columns, r, strict=True)) for r in files.rows]
    assert [r["status"] for r in rows] == ["failed", "imported", "imported"]  # bad.csv came last
    assert [r["name"] for r in rows[1:]] == ["gcp-10.csv", "gcp-09.csv"]
    assert rows[1]["account"] == GCP_ACCOUNT and rows[1]["rows"] > 0
    assert len(import_file_listing(with_tables, limit=2).rows) == 2


def test_database_info_and_newest_day_from_the_rollup(db: Engine) -> None:
    from collector.db.migrate import current_revision

    empty = database_info(db)
    assert (empty.usage_rows, empty.daily_rows, newest_day(db)) == (0, 0, None)
    records = seed_records()
    upsert_records(db, records)
    info = database_info(db)
    assert info.backend == db.dialect.name and info.revision == current_revision(db)
    assert info.usage_rows == len({r.natural_key() for r in records})
    assert 0 < info.daily_rows < info.usage_rows
    assert info.url.startswith(db.dialect.name)
    newest = max(r.bucket_start for r in records)
    assert newest_day(db) == newest.replace(hour=0, minute=0, second=0, microsecond=0)


def test_check_is_red_when_the_data_is_old_even_though_syncs_succeed(with_tables: Engine) -> None:
    """Syncs that succeed while the provider returns nothing new keep "last success" fresh: the data's age counts."""
    nine_days = datetime.now(UTC) - timedelta(days=9)
    with with_tables.begin() as conn:
        conn.execute(SYNC_STATE.update().where(SYNC_STATE.c.endpoint == "completions").values(high_water=nine_days))
    code, out, _ = run("status", "--check")
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith("connection Prod OpenAI (openai): completions: stale data: the newest complete bucket")
    assert "ended 9d ago (the provider publishes within 2h00m; max age 3h00m)" in line


def test_a_successful_key_test_clears_an_earlier_failed_run(db: Engine, fake_api) -> None:
    """After a 401 the key is replaced; ``connections test`` passing clears the check before the next sync."""
    from collector.sync.connections import retest_connection

    settings = get_settings()
    vault = load_vault(settings)
    now = datetime.now(UTC)
    conn = add_connection(db, settings, vault, provider="openai", label="Prod", key=OPENAI_KEY,
                          base_url=fake_api.base_url, test=False)  # fmt: skip
    assert conn.id is not None
    mark_status(db, conn.id, "ok", last_synced_at=now - timedelta(hours=1))
    with db.begin() as tx:
        tx.execute(insert(SYNC_STATE), [{"connection_id": conn.id, "endpoint": "completions",
                                         "high_water": now.replace(minute=0), "updated_at": now}])  # fmt: skip
        tx.execute(insert(SYNC_RUNS), [_run_row(conn.id, "completions", "failed", now - timedelta(minutes=5),
                                                "401 Incorrect API key")])  # fmt: skip
    code, out, _ = run("status", "--check")
    assert code == 1 and "failing: 401 Incorrect API key" in out
    assert retest_connection(db, settings, vault, conn.id).ok
    code, out, _ = run("status", "--check")
    assert (code, out.strip()) == (0, "ok: no problems (max age 3h)")


def test_each_endpoint_is_allowed_its_providers_documented_delay() -> None:
    """Hourly usage: an hour late; daily costs: a day; Cost Explorer and Cost Management: 24-48 h."""
    from providers import aws_bedrock, azure_openai, openai

    hourly = next(e for e in openai.ENDPOINTS if e.name == "completions")
    daily = next(e for e in openai.ENDPOINTS if e.name == "costs")
    assert hourly.expected_lag == timedelta(hours=2) and daily.expected_lag == timedelta(days=2, hours=1)
    assert aws_bedrock.ENDPOINTS[0].expected_lag == azure_openai.ENDPOINTS[0].expected_lag == timedelta(days=3)
