"""``llm-usage reconcile`` and ``llm-usage reprice``: the page's figures, the formats, bad input, the diff."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from collector.app import app
from collector.core.pricing import PRICE_VERSION
from collector.core.schema import UsageRecord
from collector.core.settings import get_settings
from collector.core.store import USAGE, upsert_records
from collector.query.reconcile import CAUSES, PARTS, reconcile, summarise
from collector.query.report import Filters, report
from dashboard import queries
from tests.fakes.month import END, START
from tests.query.month_db import WINDOW, load_month

OCTOBER = ["--since", "2026-10", "--until", "2026-10"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def month_db(sqlite_engine: Engine, sqlite_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The fake admin API's month, synced, as the CLI's and the dashboard's database."""
    load_month(sqlite_engine, tmp_path)
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    queries.clear_caches()
    return sqlite_engine


def test_json_totals_equal_the_reconciliation_pages_query(month_db: Engine) -> None:
    code, out, err = run("reconcile", *OCTOBER, "--by", "provider,account", "--format", "json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["window"] == {"since": "2026-10-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
    assert printed["threshold_percent"] == "2.00"
    page = queries.reconciliation_summary(START, END).set_index(["provider", "account"])
    assert len(printed["lines"]) == len(page) == 2
    for line in printed["lines"]:
        row = page.loc[(line["provider"], line["account"])]
        assert float(Decimal(line["billed"])) == row["billed"]
        assert float(Decimal(line["estimated"])) == row["estimated"]
        for name in PARTS:
            assert float(Decimal(line["parts"][name])) == row[name], name
        for name in CAUSES:
            assert float(Decimal(line["causes"][name])) == row[name], name
        assert line["flagged_days"] == row["flagged days"] and line["days"] == row["days"] == 31
    # The totals line adds the providers up (one currency here), exactly as the query layer does.
    [total] = printed["totals"]
    direct = summarise(reconcile(month_db, WINDOW), ())
    assert Decimal(total["billed"]) == direct[0].billed
    assert {k: Decimal(v) for k, v in total["causes"].items()} == direct[0].causes
    assert Decimal(total["billed"]) - Decimal(total["estimated"]) == sum(Decimal(v) for v in total["causes"].values())


def test_table_shows_the_waterfall_and_csv_the_same_figures(month_db: Engine) -> None:
    code, out, err = run("reconcile", *OCTOBER, "--provider", "openai")
    assert code == 0, err
    assert out.startswith("openai (USD): 31 day(s)")
    for label in ("tokens at standard rates", "= estimated (usage x price)", "models in no price table (as billed)"):
        assert label in out
    assert "+ credits                                             -$50.00" in out
    assert "residual (unexplained)" in out and "% of billed)" in out
    assert "anthropic" not in out.split("window:")[0]
    code, out, err = run("reconcile", *OCTOBER, "--by", "provider,day", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 62 and rows[0]["day"] == "2026-10-01T00:00:00Z"
    unbilled = next(r for r in rows if r["provider"] == "openai" and r["day"].startswith("2026-10-31"))
    assert unbilled["billed"] == "" and Decimal(unbilled["one_sided"]) == -Decimal(unbilled["estimated"])
    code, out, _ = run("reconcile", *OCTOBER, "--by", "day")
    assert code == 0 and "2026-10-31" in out and "FLAGGED" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "provider,colour"], "error: --by: unknown dimension 'colour'; accepted: provider, account, day"),
        (["--by", "day,day"], "error: --by: 'day' is given twice"),
        (["--format", "xml"], "error: --format: unknown value 'xml'; accepted: table, json, csv"),
        (["--since", "2026-13-01"], "error: --since"),
        (["--since", "2026-10-05", "--until", "2026-10-01"], "error: --until"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sqlite_engine: Engine, sqlite_url: str, monkeypatch, args, message) -> None:
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    code, out, err = run("reconcile", *args)
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_csv_cells_a_spreadsheet_would_run_are_escaped(sqlite_engine: Engine, sqlite_url: str, monkeypatch) -> None:
    t0 = datetime(2026, 10, 3, tzinfo=UTC)
    hostile = '=HYPERLINK("http://evil.example","x")'
    upsert_records(
        sqlite_engine,
        [
            UsageRecord(
                provider="openai",
                account=hostile,
                source="api",
                kind="costs",
                bucket_start=t0,
                bucket_end=t0 + timedelta(days=1),
                cost=Decimal("-5"),
                currency="USD",
                basis="billed",
                line_item="Promotional credit",
            )
        ],
    )
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    code, out, err = run("reconcile", *OCTOBER, "--by", "provider,account", "--format", "csv")
    assert code == 0, err
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["account"] == "'" + hostile
    assert row["billed"] == row["credits"] == "-5"  # negative money stays a number
    assert row["one_sided"] == "0"  # a credit on a day without usage is a credit, not one side


def _stored_base_priced(engine: Engine) -> UsageRecord:
    """A priority-tier row as the product stored it before tiers were priced: at the base rate."""
    t0 = datetime(2026, 10, 5, 9, tzinfo=UTC)
    rec = UsageRecord(
        provider="openai",
        account="org-a",
        source="api",
        kind="completions",
        bucket_start=t0,
        bucket_end=t0 + timedelta(hours=1),
        model="gpt-4o-mini",
        model_raw="gpt-4o-mini-2024-07-18",
        service_tier="priority",
        input_tokens=2_000_000,
        output_tokens=1_000_000,
        cost=Decimal("0.9"),  # 2M x 0.15 + 1M x 0.60, the standard rates
        currency="USD",
        basis="estimated",
        price_version=PRICE_VERSION,
    )
    images = UsageRecord(
        provider="openai",
        account="org-a",
        source="api",
        kind="images",
        bucket_start=t0,
        bucket_end=t0 + timedelta(hours=1),
        model="dall-e-3",
        variant="size=1024x1024;source=image.generation",
        quantity=Decimal(10),
        quantity_unit="images",
    )
    upsert_records(engine, [rec, images])
    return rec


def _costs(engine: Engine) -> dict[str, tuple[Decimal | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(USAGE.c.kind, USAGE.c.cost, USAGE.c.price_version)).all()
    return {kind: (cost, version) for kind, cost, version in rows}


def test_reprice_shows_the_diff_then_applies_it(engine: Engine, db_url: str, monkeypatch) -> None:
    _stored_base_priced(engine)
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    before = _costs(engine)
    code, out, err = run("reprice", "--since", "2026-10-05", "--until", "2026-10-05")
    assert code == 0, err
    assert "2 estimated or unpriced row(s) read, would re-price 2" in out
    assert "genai-prices" in out and "-> llm-usage 2026.11.1" in out
    assert "$0.90" in out and "$1.50" in out  # 2M x 0.25 + 1M x 1.00 at the priority rates
    assert "unpriced -> llm-usage 2026.11.1" in out and "$0.40" in out  # 10 images at 0.04
    assert "total difference: $1.00" in out and "dry run" in out
    assert _costs(engine) == before  # a dry run writes nothing
    code, out, err = run("reprice", "--since", "2026-10-05", "--until", "2026-10-05", "--apply")
    assert code == 0, err
    assert "re-priced 2" in out and "dry run" not in out
    after = _costs(engine)
    assert after["completions"] == (Decimal("1.5"), "llm-usage 2026.11.1")
    assert after["images"] == (Decimal("0.4"), "llm-usage 2026.11.1")
    # The daily rollup the reports read was rebuilt in the same transactions.
    day = Filters(since=datetime(2026, 10, 5, tzinfo=UTC), until=datetime(2026, 10, 6, tzinfo=UTC))
    totals = report(engine, day, basis="estimated").totals()
    assert totals[("USD", "estimated")].cost == Decimal("1.9")
    code, out, _ = run("reprice", "--since", "2026-10-05", "--until", "2026-10-05")
    assert code == 0 and "nothing changes" in out
