"""FX: rates table, CSV import (all or nothing), conversion that always names its rate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from collector.app import app
from collector.core.schema import UsageRecord
from collector.core.store import upsert_records
from collector.finance import budgets, fx
from tests.conftest import create_database

D = Decimal

RATES = """date,base,quote,rate,source
2026-11-02,USD,EUR,0.9200,ecb
2026-11-03,USD,EUR,0.9300,
2026-11-03,GBP,USD,1.2500,
"""


def test_import_and_convert_with_the_rate_day_and_source(engine):
    assert fx.import_rates_csv(engine, RATES, "rates.csv") == (3, 0)
    assert fx.import_rates_csv(engine, RATES, "rates.csv") == (0, 3)  # re-import replaces, adds nothing
    book = fx.RateBook.load(engine)
    same_day = book.convert(D(100), "USD", "EUR", date(2026, 11, 2))
    assert same_day.amount == D(92) and same_day.rate_day == date(2026, 11, 2) and same_day.source == "ecb"
    weekend = book.convert(D(100), "USD", "EUR", date(2026, 11, 8))  # newest earlier rate
    assert weekend.amount == D(93) and weekend.rate_day == date(2026, 11, 3) and weekend.source == "csv:rates.csv"
    assert "0.93 EUR/USD of 2026-11-03 (csv:rates.csv)" in weekend.note()
    inverse = book.convert(D(125), "USD", "GBP", date(2026, 11, 3))
    assert inverse.amount == D(100) and "inverted" in inverse.source
    unchanged = book.convert(D(5), "USD", "USD", date(2026, 11, 3))
    assert unchanged.amount == D(5) and unchanged.note() == ""
    with pytest.raises(fx.FxError, match="no USD->EUR rate on or before 2026-11-01"):
        book.convert(D(1), "USD", "EUR", date(2026, 11, 1))
    with pytest.raises(fx.FxError, match="no USD->JPY"):
        book.convert(D(1), "USD", "JPY", date(2026, 11, 5))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date,base,rate\n2026-11-02,USD,1\n", "missing column"),
        ("date,base,quote,rate\n2026-11-02,USD,EUR,0.9\n2026-13-02,USD,EUR,0.9\n", "line 3"),
        ("date,base,quote,rate\n2026-11-02,USD,EURO,0.9\n", "line 2: quote must be a 3-letter"),
        ("date,base,quote,rate\n2026-11-02,USD,EUR,-1\n", "line 2: a rate must be a positive"),
        ("date,base,quote,rate\n2026-11-02,USD,EUR,abc\n", "line 2"),
        ("date,base,quote,rate\n2026-11-02,USD,USD,1\n", "both USD"),
    ],
)
def test_bad_rate_files_name_the_line_and_write_nothing(sqlite_engine, text, message):
    with pytest.raises(fx.FxError, match=message):
        fx.import_rates_csv(sqlite_engine, text, "bad.csv")
    assert fx.list_rates(sqlite_engine) == []


def test_a_eur_budget_converts_usd_spend_and_notes_days_without_a_rate(engine):
    fx.set_rate(engine, date(2026, 11, 2), "USD", "EUR", D("0.5"))
    records = []
    for day in (1, 2, 3):
        start = datetime(2026, 11, day, 9, tzinfo=UTC)
        records.append(
            UsageRecord(
                provider="openai",
                source="api",
                kind="completions",
                bucket_start=start,
                bucket_end=start + timedelta(hours=1),
                account="org",
                model="gpt-4o",
                input_tokens=1,
                cost=D(10),
                currency="USD",
                basis="estimated",
                price_version="t",
            )
        )
    upsert_records(engine, records)
    bid = budgets.create_budget(engine, name="eu", scope="all", amount="100", currency="EUR")
    status = budgets.budget_status(engine, budgets.get_budget(engine, bid), datetime(2026, 11, 3, 20, tzinfo=UTC))
    assert status is not None
    assert status.spent == D(10)  # Nov 2 and 3 at 0.5; Nov 1 has no rate yet
    assert any("2026-11-01" in n and "no USD->EUR rate" in n for n in status.notes)


def test_fx_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'fx.db'}")
    create_database()
    runner = CliRunner()
    f = tmp_path / "rates.csv"
    f.write_text(RATES)
    assert "imported 3 new" in runner.invoke(app, ["fx", "import", str(f)]).output
    out = runner.invoke(app, ["fx", "convert", "10", "usd", "--to", "eur", "--day", "2026-11-04"])
    assert out.exit_code == 0 and "9.30 EUR at 0.93 EUR/USD of 2026-11-03" in out.output
    missing = runner.invoke(app, ["fx", "convert", "10", "USD", "--to", "JPY", "--day", "2026-11-04"])
    assert missing.exit_code == 1 and "fx import" in missing.output
    assert "1 USD = 0.5 EUR" in runner.invoke(app, ["fx", "set", "2026-11-05", "USD", "EUR", "0.5"]).output
    assert runner.invoke(app, ["fx", "list", "--quote", "EUR"]).output.count("EUR") == 3


def test_bad_rates_files_name_the_line_and_the_problem_in_words():
    with pytest.raises(fx.FxError, match=r"^rates file line 3: rate 'O.92' is not a number \(write it like 0.92"):
        fx.parse_rates_csv("date,base,quote,rate\n2026-11-02,USD,EUR,0.92\n2026-11-03,USD,EUR,O.92\n", "t")
    with pytest.raises(fx.FxError, match=r"^rates file line 2: date '03/11/2026' is not a day written YYYY-MM-DD"):
        fx.parse_rates_csv("date,base,quote,rate\n03/11/2026,USD,EUR,0.92\n", "t")


def test_an_inverted_rate_keeps_ten_decimals():
    book = fx.RateBook(fx.parse_rates_csv("date,base,quote,rate\n2026-11-02,USD,EUR,0.92\n", "t"))
    rate, day, source = book.rate("EUR", "USD", date(2026, 11, 5))
    assert day == date(2026, 11, 2)
    assert rate == D("1.0869565217") and str(rate) == "1.0869565217" and source == "t, inverted"


def test_report_in_the_readers_currency_day_by_day_with_one_note_for_missing_days(engine, monkeypatch):
    """``report --currency EUR``: each day's money at that day's rate; days without a rate said once."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [
        UsageRecord(
            provider="openai",
            account="o",
            source="api",
            kind="costs",
            bucket_start=start + timedelta(days=i),
            bucket_end=start + timedelta(days=i + 1),
            line_item="x",
            cost=D("100"),
            currency="USD",
            basis="billed",
        )
        for i in range(5)
    ]
    upsert_records(engine, rows)
    fx.set_rate(engine, date(2026, 11, 3), "USD", "EUR", D("0.9"))
    fx.set_rate(engine, date(2026, 11, 4), "EUR", "USD", D("1.25"))  # inverted: 0.8
    from collector.query.report import Filters, report

    result = report(engine, Filters(start, start + timedelta(days=5)), by=("provider",), currency="EUR",
                    converter=fx.RateBook.load(engine).day_rate)  # fmt: skip
    totals = result.totals()
    # Nov 1 and 2 have no rate on or before them: kept in USD; Nov 3 at 0.9; Nov 4 and 5 at 0.8 (inverted).
    assert totals[("EUR", "billed")].cost == D("90") + D("80") + D("80")
    assert totals[("USD", "billed")].cost == D("200")
    missing = [n for n in result.notes if n.startswith("no USD->EUR rate")]
    assert missing == ["no USD->EUR rate for 2 day(s) (2026-11-01 .. 2026-11-02): that money is shown in USD"]
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    monkeypatch.setenv("LLM_USAGE_DISPLAY_CURRENCY", "EUR")
    from collector.core.settings import get_settings

    get_settings.cache_clear()
    out = CliRunner().invoke(app, ["report", "--since", "2026-11-01", "--until", "2026-11-05", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert {(r["currency"], r["cost"]) for r in __import__("json").loads(out.output)} == {
        ("EUR", "250"),
        ("USD", "200"),
    }


def test_budgets_status_shows_each_spend_in_the_display_currency_once(tmp_path, monkeypatch):
    """``budgets status`` gives the same converted figure as the page; days without a rate are named once."""
    url = f"sqlite:///{tmp_path / 'status.db'}"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", url)
    monkeypatch.setenv("LLM_USAGE_DISPLAY_CURRENCY", "EUR")
    engine = create_database()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fx.set_rate(engine, today.date(), "USD", "EUR", D("0.5"))
    record = UsageRecord(
        provider="openai",
        source="api",
        kind="completions",
        bucket_start=today,
        bucket_end=today + timedelta(hours=1),
        account="org",
        model="gpt-4o",
        input_tokens=1,
        cost=D(10),
        currency="USD",
        basis="estimated",
        price_version="t",
    )
    upsert_records(engine, [record])
    budgets.create_budget(engine, name="a", scope="all", amount="100")
    budgets.create_budget(engine, name="b", scope="provider", scope_value="openai", amount="50")
    runner = CliRunner()
    out = runner.invoke(app, ["budgets", "status"])
    assert out.exit_code == 0, out.output
    assert out.output.count("10.00 of") == 2 and out.output.count("= 5.00 EUR (each day at its own rate)") == 2
    yen = runner.invoke(app, ["budgets", "status", "--currency", "jpy"])
    assert yen.exit_code == 0 and yen.output.count("no USD->JPY rate") == 1  # one note, not one per budget
    plain = runner.invoke(app, ["budgets", "status", "--currency", ""])
    assert "EUR" not in plain.output and "10.00 of 100.00 USD" in plain.output
    assert runner.invoke(app, ["budgets", "status", "--currency", "euro"]).exit_code == 2
    engine.dispose()
