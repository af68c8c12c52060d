"""``llm-usage report``: the same figures as the query layer, people's and machines' formats, bad input."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from collector.app import app
from collector.cli.report import human_int, human_money, machine_rows
from collector.core.settings import get_settings
from collector.core.store import upsert_records
from collector.query.report import report
from tests.query.report_seed import WINDOW, seed_records

RANGE = ["--since", "2026-11-01", "--until", "2026-11-06"]


@pytest.fixture
def cli_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The seeded database, configured as the CLI's database."""
    upsert_records(engine, seed_records())
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return engine


@pytest.fixture
def cli_empty(sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """An empty SQLite database as the CLI's database (argument checks need no data)."""
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    return sqlite_engine


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_json_output_equals_the_query_layer(cli_db: Engine) -> None:
    """The CLI and the dashboard call the same function, so they must print the same figures."""
    code, out, err = run("report", *RANGE, "--by", "provider,model,day", "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    direct = report(cli_db, WINDOW, by=("provider", "model"), grain="day")
    assert printed == json.loads(json.dumps(machine_rows(direct)))
    first = printed[0]
    assert first["period"].endswith("Z") and first["period"].startswith("2026-11-01T00:00:00")
    assert set(first) == {
        "period",
        "provider",
        "model",
        "section",
        "basis",
        "currency",
        "cost",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "requests",
        "quantities",
        "counted_from",
    }
    # Every row with money says which source it came from.
    assert all(r["counted_from"] for r in printed if r["cost"] is not None)
    # Exact decimal strings: the sum of the printed costs is the report's total to the last digit.
    usd_billed = sum(Decimal(r["cost"]) for r in printed if r["basis"] == "billed" and r["currency"] == "USD")
    assert usd_billed == direct.totals()[("USD", "billed")].cost


def test_csv_output_has_stable_columns_and_exact_values(cli_db: Engine) -> None:
    code, out, _ = run("report", *RANGE, "--by", "provider", "--format", "csv", "--basis", "estimated")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:5] == ["provider", "section", "basis", "currency", "cost"]
    direct = report(cli_db, WINDOW, by=("provider",), basis="estimated")
    provider_rows = [r for r in rows if r["section"] == "provider"]
    assert sum(Decimal(r["cost"]) for r in provider_rows if r["cost"]) == direct.totals()[("USD", "estimated")].cost
    unpriced = [r for r in rows if r["basis"] == "unpriced"]
    assert unpriced and all(r["cost"] == "" for r in unpriced)
    images = [r for r in rows if r["quantities"]]
    assert images and images[0]["quantities"].startswith("images=")


def test_table_has_totals_and_footer(cli_db: Engine) -> None:
    code, out, _ = run("report", *RANGE, "--by", "provider")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["provider", "basis", "cost"]
    assert any(line.startswith("TOTAL") and "billed" in line for line in lines)
    assert any(line.startswith("TOTAL") and "unpriced" in line for line in lines)
    footer = [line for line in lines if line.startswith("window:")]
    assert footer == [
        "window: 2026-11-01 .. 2026-11-06 (UTC; [2026-11-01T00:00:00Z, 2026-11-07T00:00:00Z))"
        " · basis: preferred · prices: seed-prices 1"
    ]
    assert "€" not in out and "EUR" in out  # the EUR bill is its own total, never converted
    assert "proxy" not in out


def test_proxy_section_only_when_asked(cli_db: Engine) -> None:
    code, out, _ = run("report", *RANGE, "--by", "provider", "--source", "api,csv,proxy")
    assert code == 0
    assert "proxy (its own source: never added to the numbers above)" in out
    code, out, _ = run("report", *RANGE, "--format", "json", "--source", "proxy")
    assert {r["section"] for r in json.loads(out)} == {"proxy"}


def test_filters_and_top(cli_db: Engine) -> None:
    code, out, _ = run(
        "report", *RANGE, "--provider", "openai", "--model", "gpt-4o,o3", "--by", "model", "--format", "json"
    )
    assert code == 0
    f = replace(WINDOW, providers=("openai",), models=("gpt-4o", "o3"))
    assert json.loads(out) == json.loads(json.dumps(machine_rows(report(cli_db, f, by=("model",)))))
    code, out, _ = run("report", *RANGE, "--by", "model", "--top", "2", "--format", "json")
    assert code == 0
    assert "(other)" in {r["model"] for r in json.loads(out)}


def test_tz_footer_says_daily_buckets_stay_utc(cli_db: Engine) -> None:
    code, out, _ = run("report", *RANGE, "--by", "provider,day", "--tz", "Asia/Seoul")
    assert code == 0
    assert "(Asia/Seoul;" in out
    assert "note: daily-bucket sources (cost APIs, daily CSV exports) stay on their UTC days" in out
    code, out, _ = run("report", *RANGE, "--by", "day", "--tz", "Asia/Seoul", "--format", "json")
    first = json.loads(out)[0]
    assert (first["period"], first["period_local"]) == ("2026-10-31T15:00:00Z", "2026-11-01T00:00:00+09:00")


def test_empty_result(cli_db: Engine) -> None:
    code, out, err = run("report", "--since", "2025-01-01", "--until", "2025-01-31", "--by", "provider")
    assert code == 0, err
    assert out.splitlines()[0] == "2025-01-01 .. 2025-01-31 (UTC): no usage recorded"
    code, out, _ = run("report", "--since", "2025-01", "--until", "2025-01", "--format", "json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "provider,colour"], "error: --by: unknown dimension 'colour'; accepted: provider, account,"),
        (["--by", "day,week"], "error: --by: only one time grain is allowed"),
        (["--provider", "openia"], "error: --provider: unknown provider 'openia'; accepted: anthropic,"),
        (["--since", "2026-11-05", "--until", "2026-11-01"], "error: --until: '2026-11-01' is before --since"),
        (["--since", "Nov 1"], "error: --since: cannot read 'Nov 1'; accepted: YYYY-MM-DD, YYYY-MM, today"),
        (["--until", "2026-02-30"], "error: --until: '2026-02-30' is not a real date; accepted: YYYY-MM-DD"),
        (["--basis", "list"], "error: --basis: unknown value 'list'; accepted: preferred, billed, estimated"),
        (["--format", "xml"], "error: --format: unknown value 'xml'; accepted: table, json, csv"),
        (["--source", "api,ftp"], "error: --source: unknown source 'ftp'; accepted: api, csv, proxy"),
        (["--tz", "Mars/Base"], "error: --tz: unknown time zone 'Mars/Base'; accepted: an IANA name"),
        (["--top", "0"], "error: --top: cannot read '0'; accepted: a positive whole number"),
        (["--top", "many"], "error: --top: cannot read 'many'; accepted: a positive whole number"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli_empty: Engine, args: list[str], message: str) -> None:
    code, out, err = run("report", *args)
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1 and "Traceback" not in err


def test_human_numbers() -> None:
    assert human_int(999) == "999"
    assert human_int(1_234) == "1.23k"
    assert human_int(12_345_678) == "12.3M"
    assert human_int(250_000_000) == "250M"
    assert human_int(3_000_000_000) == "3B"
    assert human_money(Decimal("1234.565"), "USD") == "$1,234.57"
    assert human_money(Decimal("-1.5"), "USD") == "-$1.50"
    assert human_money(Decimal("0.001"), "USD") == "<$0.01"
    assert human_money(Decimal("7"), "EUR") == "7.00 EUR"
    assert human_money(None, "") == "—"


def test_cli_json_equals_the_dashboard_query(cli_db: Engine) -> None:
    """The dashboard's cached query (a thin wrapper) and the CLI print the same figures."""
    from dashboard import queries

    queries.clear_caches()
    frame = queries.report_frame(WINDOW, by=("provider", "model"), grain="day")
    code, out, _ = run("report", *RANGE, "--by", "provider,model,day", "--format", "json")
    assert code == 0
    printed = json.loads(out)
    assert len(printed) == len(frame) > 0
    for item, (_, rec) in zip(printed, frame.iterrows(), strict=True):
        assert (item["provider"], item["model"], item["basis"], item["currency"]) == (
            rec["provider"],
            rec["model"],
            rec["basis"],
            rec["currency"],
        )
        assert item["period"] == rec["period"].isoformat().replace("+00:00", "Z")
        assert (Decimal(item["cost"]) if item["cost"] is not None else None) == rec["cost_exact"]
        for name in ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens", "requests"):
            assert item[name] == rec[name], name


@pytest.mark.parametrize("command", [["report"], ["status", "--check"]])
def test_unreachable_database_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """A database that cannot be opened is one line (password hidden), exit 1, no traceback."""
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", "postgresql+psycopg://u:hunter2-test@127.0.0.1:1/none")
    get_settings.cache_clear()
    code, out, err = run(*command)
    assert code == 1 and out == ""
    assert err.startswith("error: cannot open the database postgresql+psycopg://u:***@127.0.0.1:1/none: ")
    assert err.count("\n") == 1 and "hunter2" not in err and "Traceback" not in err


def test_table_without_dims_lists_each_basis_once(cli_db: Engine) -> None:
    code, out, _ = run("report", *RANGE)
    assert code == 0
    body = out.split("\n\n")[0].splitlines()[2:]
    # billed in USD, billed in EUR, and the usage on billed days (its charge is in both bills)
    assert sorted(line.split()[0] for line in body) == ["billed", "billed", "billed", "estimated", "unpriced"]
    assert any(line.split()[:2] == ["billed", "(in"] for line in body)
    assert "TOTAL" not in out


def test_csv_report_escapes_formula_text(cli_db: Engine) -> None:
    """A model name from a provider, a file or the proxy never becomes a spreadsheet formula."""
    base = next(r for r in seed_records() if r.model == "o3" and r.bucket_start.day == 2)
    hostile = replace(base, model="=1+cmd|'/C calc'!A0", project="@x")
    upsert_records(cli_db, [hostile])
    code, out, err = run("report", *RANGE, "--by", "model,project", "--format", "csv")
    assert code == 0, err
    cells = [c for row in csv.reader(io.StringIO(out)) for c in row]
    assert "'=1+cmd|'/C calc'!A0" in cells and "'@x" in cells
    assert not [c for c in cells if c and c[0] in "=+-@" and not c.lstrip("+-").replace(".", "", 1).isdigit()]
