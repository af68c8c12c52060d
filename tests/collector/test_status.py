"""``llm-usage status`` and ``status --check``.

The connections, sync and import tables belong to other issues (API sync, CSV import, proxy) that
are not on this branch; the tables below follow the column names those issues use, built with the
same column types (aware UTC time), so the readers are exercised on both backends as they will run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, Text, event, insert, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from collector.cli import app
from collector.cli_report import parse_age
from collector.query import status
from collector.settings import get_settings
from collector.sqltypes import UTCDateTime
from collector.store import upsert_records
from tests.collector.test_report_seed import seed_records

META = MetaData()
CONNECTIONS = Table(
    "connections",
    META,
    Column("id", Integer, primary_key=True),
    Column("provider", String(64), nullable=False),
    Column("label", String(255), nullable=False),
    Column("key_hint", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("last_error", Text, nullable=False, default=""),
    Column("last_success", UTCDateTime(), nullable=True),
)
SYNC_STATE = Table(
    "sync_state",
    META,
    Column("connection_id", Integer, primary_key=True),
    Column("endpoint", String(64), primary_key=True),
    Column("high_water_mark", UTCDateTime(), nullable=True),
)
SYNC_RUNS = Table(
    "sync_runs",
    META,
    Column("id", Integer, primary_key=True),
    Column("connection_id", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
)
IMPORT_FILES = Table(
    "import_files",
    META,
    Column("id", Integer, primary_key=True),
    Column("importer", String(64), nullable=False),
    Column("account", String(255), nullable=False),
    Column("period_start", UTCDateTime(), nullable=True),
    Column("period_end", UTCDateTime(), nullable=True),
    Column("status", String(32), nullable=False),
    Column("imported_at", UTCDateTime(), nullable=False),
)
PROXY_EVENTS = Table(
    "proxy_events",
    META,
    Column("id", Integer, primary_key=True),
    Column("ts", UTCDateTime(), nullable=False),
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield engine


@pytest.fixture
def with_tables(db: Engine) -> Engine:
    """Two connections (one active, one inactive and failing), imports, proxy events."""
    META.create_all(db)
    now = datetime.now(UTC)
    with db.begin() as conn:
        conn.execute(
            insert(CONNECTIONS),
            [
                {
                    "id": 1,
                    "provider": "openai",
                    "label": "Prod OpenAI",
                    "key_hint": "sk-admin…7Qx",
                    "active": True,
                    "status": "ok",
                    "last_error": "",
                    "last_success": now - timedelta(minutes=10),
                },
                {
                    "id": 2,
                    "provider": "anthropic",
                    "label": "Old Anthropic",
                    "key_hint": "sk-ant-admin…x9Z",
                    "active": False,
                    "status": "error",
                    "last_error": "401 invalid x-api-key",
                    "last_success": None,
                },
            ],
        )
        conn.execute(
            insert(SYNC_STATE),
            [
                {"connection_id": 1, "endpoint": "completions", "high_water_mark": now.replace(minute=0, second=0)},
                {"connection_id": 1, "endpoint": "costs", "high_water_mark": datetime(2026, 11, 25, tzinfo=UTC)},
            ],
        )
        conn.execute(
            insert(SYNC_RUNS),
            [{"id": 1, "connection_id": 1, "status": "ok", "error": "", "started_at": now, "finished_at": now}],
        )
        conn.execute(
            insert(IMPORT_FILES),
            [
                {
                    "id": 1,
                    "importer": "gcp_billing",
                    "account": "billing-01",
                    "period_start": datetime(2026, 9, 1, tzinfo=UTC),
                    "period_end": datetime(2026, 10, 1, tzinfo=UTC),
                    "status": "ok",
                    "imported_at": now - timedelta(days=20),
                },
                {
                    "id": 2,
                    "importer": "gcp_billing",
                    "account": "billing-01",
                    "period_start": datetime(2026, 10, 1, tzinfo=UTC),
                    "period_end": datetime(2026, 11, 1, tzinfo=UTC),
                    "status": "ok",
                    "imported_at": now - timedelta(days=2),
                },
                {
                    "id": 3,
                    "importer": "gcp_billing",
                    "account": "billing-01",
                    "period_start": datetime(2026, 11, 1, tzinfo=UTC),
                    "period_end": datetime(2026, 12, 1, tzinfo=UTC),
                    "status": "failed",
                    "imported_at": now - timedelta(days=1),
                },
            ],
        )
        conn.execute(
            insert(PROXY_EVENTS),
            [{"id": i, "ts": now - timedelta(minutes=5 * i - 2)} for i in range(1, 20)],
        )
    return db


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
    assert "Prod OpenAI (openai, key sk-admin…7Qx): ok" in out
    assert "Old Anthropic (anthropic, key sk-ant-admin…x9Z): error [inactive]" in out
    assert "last error: 401 invalid x-api-key" in out
    assert "costs: complete up to 2026-11-25T00:00:00Z" in out
    assert "gcp_billing / billing-01: newest period ends 2026-11-01; 3 file(s), 1 failed" in out
    # 19 events every 5 minutes: 12 of them (3..58 minutes ago) in the last hour.
    assert "events in the last hour: 12;" in out
    assert "csv/google/billing-01/gcp_billing: up to 2026-11-08T00:00:00Z" in out
    assert "usage rows" in out and "migration " in out


def test_status_json(with_tables: Engine) -> None:
    code, out, _ = run("status", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["connections"][0]["key_hint"] == "sk-admin…7Qx"
    assert data["connections"][0]["endpoints"][0]["endpoint"] == "completions"
    assert data["imports"][0]["newest_period_end"] == "2026-11-01T00:00:00Z"
    assert data["proxy"]["events_last_hour"] == 12
    assert data["database"]["backend"] == with_tables.dialect.name
    assert data["problems"] == []


def test_check_exits_1_on_stale_then_0_once_fresh(with_tables: Engine) -> None:
    assert run("status", "--check")[0] == 0
    with with_tables.begin() as conn:
        conn.execute(
            update(CONNECTIONS).where(CONNECTIONS.c.id == 1).values(last_success=datetime.now(UTC) - timedelta(hours=5))
        )
    code, out, _ = run("status", "--check")
    assert code == 1
    assert out.splitlines() == ["connection Prod OpenAI (openai): stale: last success 5h00m ago (max age 3h00m)"]
    assert run("status", "--check", "--max-age", "6h")[0] == 0
    with with_tables.begin() as conn:
        conn.execute(update(CONNECTIONS).where(CONNECTIONS.c.id == 1).values(last_success=datetime.now(UTC)))
    code, out, _ = run("status", "--check")
    assert (code, out.strip()) == (0, "ok: no problems (max age 3h)")


def test_check_exits_1_on_a_failing_connection(with_tables: Engine) -> None:
    with with_tables.begin() as conn:
        conn.execute(
            update(CONNECTIONS).where(CONNECTIONS.c.id == 1).values(status="error", last_error="429 rate limited")
        )
    code, out, _ = run("status", "--check")
    assert code == 1
    assert out.splitlines() == ["connection Prod OpenAI (openai): failing: 429 rate limited"]


def test_failed_last_run_fills_a_missing_status(with_tables: Engine) -> None:
    now = datetime.now(UTC)
    with with_tables.begin() as conn:
        conn.execute(update(CONNECTIONS).where(CONNECTIONS.c.id == 1).values(status=""))
        conn.execute(
            insert(SYNC_RUNS).values(
                id=2, connection_id=1, status="failed", error="500 upstream", started_at=now, finished_at=now
            )
        )
    result = status(with_tables, get_settings())
    assert result.problems == ["connection Prod OpenAI (openai): failing: 500 upstream"]


def test_connection_without_any_success_is_a_problem(with_tables: Engine) -> None:
    with with_tables.begin() as conn:
        conn.execute(update(CONNECTIONS).where(CONNECTIONS.c.id == 2).values(active=True, status="pending"))
    result = status(with_tables, get_settings())
    assert "connection Old Anthropic (anthropic): no successful sync yet" in result.problems


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


def test_failed_run_after_the_last_success_fails_an_ok_connection(with_tables: Engine) -> None:
    now = datetime.now(UTC)
    with with_tables.begin() as conn:
        conn.execute(
            insert(SYNC_RUNS).values(
                id=3, connection_id=1, status="error", error="403 forbidden", started_at=now, finished_at=now
            )
        )
    assert status(with_tables, get_settings()).problems == ["connection Prod OpenAI (openai): failing: 403 forbidden"]
    with with_tables.begin() as conn:  # a later success clears it
        conn.execute(update(CONNECTIONS).values(last_success=now + timedelta(minutes=1)))
    assert status(with_tables, get_settings(), now=now + timedelta(minutes=2)).problems == []


def test_state_keyed_by_provider_and_long_hints_masked(db: Engine) -> None:
    """A ``sync_state`` keyed by provider (code-anchors §11.6) still lists endpoints; hints stay masked."""
    meta = MetaData()
    conns = Table(
        "connections",
        meta,
        Column("id", Integer, primary_key=True),
        Column("provider", String(64)),
        Column("name", String(64)),
        Column("key_hint", String(128)),
        Column("is_active", Boolean),
        Column("last_synced_at", UTCDateTime()),
        Column("encrypted_key", Text),
    )
    state = Table(
        "sync_state",
        meta,
        Column("provider", String(64), primary_key=True),
        Column("endpoint", String(64), primary_key=True),
        Column("high_water_mark", UTCDateTime()),
    )
    meta.create_all(db)
    now = datetime.now(UTC)
    leaked = "sk-admin-test-0123456789abcdefXYZ"
    with db.begin() as conn:
        conn.execute(
            insert(conns).values(
                id=7,
                provider="anthropic",
                name="Claude org",
                key_hint=leaked,
                is_active=True,
                last_synced_at=now,
                encrypted_key="gAAAA-test-ciphertext",
            )
        )
        conn.execute(insert(state).values(provider="anthropic", endpoint="messages", high_water_mark=now))
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db, "before_cursor_execute", record)
    result = status(db, get_settings())
    assert not [st for st in statements if "encrypted_key" in st], "status must never read the encrypted key"
    (c,) = result.connections or []
    assert (c.label, c.active, c.key_hint) == ("Claude org", True, "sk-admin…XYZ")
    assert [e.endpoint for e in c.endpoints] == ["messages"]
    code, out, _ = run("status")
    assert code == 0
    assert leaked not in out and "sk-admin…XYZ" in out
