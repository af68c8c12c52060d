"""import_file: whole-file transactions, re-imports, overlapping exports, errors, sources (SQLite + PostgreSQL)."""

import io
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from collector.core.settings import get_settings
from collector.core.store import USAGE, USAGE_DAILY
from importers import service
from importers.service import import_file
from tests.importers.conftest import FIXTURES, import_file_rows, usage_count, usage_rows

HEADER = "date,provider,model,project,input_tokens,output_tokens,requests,cost,currency\n"


def generic(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def totals(engine, table=USAGE):
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                select(
                    func.count(),
                    func.sum(table.c.input_tokens),
                    func.sum(table.c.output_tokens),
                    func.sum(table.c.cost),
                )
            ).one()
        )


def test_import_twice_changes_nothing_and_says_so(engine):
    first = import_file(FIXTURES / "focus_ai.csv", engine=engine, who="alice")
    before = totals(engine)
    again = import_file(FIXTURES / "focus_ai.csv", engine=engine, who="bob")
    assert again.status == "duplicate" and again.ok
    assert f"already imported as import #{first.import_id}" in again.message
    assert totals(engine) == before
    files = import_file_rows(engine)
    assert len(files) == 1
    row = files[0]
    assert (row["name"], row["importer"], row["status"], row["rows"], row["rows_read"]) == (
        "focus_ai.csv",
        "focus",
        "imported",
        6,
        7,
    )
    assert row["imported_by"] == "alice" and len(row["sha256"]) == 64
    assert row["size"] == (FIXTURES / "focus_ai.csv").stat().st_size
    assert row["period_start"] is not None and row["period_end"] > row["period_start"]


def test_overlapping_exports_update_instead_of_doubling(engine, tmp_path):
    old = generic(
        tmp_path,
        "sept-a.csv",
        ["2026-09-01,xai,grok-4,p,100,10,1,1.00,USD", "2026-09-02,xai,grok-4,p,200,20,2,2.00,USD"],
    )
    new = generic(
        tmp_path,
        "sept-b.csv",  # revises 09-02 and adds 09-03
        ["2026-09-02,xai,grok-4,p,250,25,3,2.50,USD", "2026-09-03,xai,grok-4,p,300,30,3,3.00,USD"],
    )
    assert import_file(old, engine=engine).ok
    result = import_file(new, engine=engine)
    assert result.ok and result.records == 2
    assert totals(engine) == (3, 650, 65, Decimal("6.5"))
    daily = totals(engine, USAGE_DAILY)
    assert daily[1:] == (650, 65, Decimal("6.5"))  # rollups followed
    refs = {r["bucket_start"].day: r["source_ref"] for r in usage_rows(engine)}
    assert refs[1] == "file:1" and refs[2] == refs[3] == f"file:{result.import_id}"


def test_rows_sharing_a_key_are_summed_within_and_across_batches(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(service, "BATCH_ROWS", 2)  # force the cross-batch (read-back) path
    lines = [
        "2026-09-01,xai,grok-4,p,100,10,1,1.00,USD",
        "2026-09-01,xai,grok-4,p,100,10,1,1.00,USD",  # same batch
        "2026-09-01,xai,grok-3,p,5,5,1,0.10,USD",
        "2026-09-02,xai,grok-4,p,1,1,1,0.01,USD",
        "2026-09-01,xai,grok-4,p,100,10,1,1.00,USD",  # a later batch
        "2026-09-01,xai,grok-4,p,100,10,1,1.00,USD",
    ]
    result = import_file(generic(tmp_path, "dups.csv", lines), engine=engine)
    assert result.ok, result.summary()
    assert result.records == 3
    rows = {(r["model_raw"], r["bucket_start"].day): r for r in usage_rows(engine)}
    assert rows[("grok-4", 1)]["input_tokens"] == 400
    assert rows[("grok-4", 1)]["cost"] == Decimal("4")
    assert rows[("grok-4", 1)]["requests"] == 4
    assert totals(engine)[3] == Decimal("4.11")
    assert rows[("grok-4", 1)]["model"] == "grok-4-0709"  # the price table's id for the model
    assert result.totals[("xai", "grok-4-0709")].cost == {("billed", "USD"): Decimal("4.01")}


def test_a_bad_row_rolls_back_the_whole_file(engine, tmp_path):
    lines = [f"2026-09-01,xai,grok-4,p{i},100,10,1,1.00,USD" for i in range(30)]
    lines.insert(20, "2026-09-01,xai,grok-4,px,lots,10,1,1.00,USD")
    result = import_file(generic(tmp_path, "bad.csv", lines), engine=engine)
    assert not result.ok and result.status == "failed"
    assert usage_count(engine) == 0
    (issue,) = result.issues
    assert (issue.file, issue.line, issue.column, issue.value) == ("bad.csv", 22, "input_tokens", "lots")
    assert "not a number" in issue.rule
    assert str(issue).startswith("bad.csv:22: column 'input_tokens': value 'lots': ")
    files = import_file_rows(engine)
    assert [f["status"] for f in files] == ["failed"]
    assert "bad.csv:22" in files[0]["message"]
    # the refused file is not a duplicate: fixed, it imports
    fixed = generic(tmp_path, "bad.csv", [ln.replace("lots", "100") for ln in lines])
    assert import_file(fixed, engine=engine).ok and usage_count(engine) == 31


def test_errors_stop_after_fifty(sqlite_engine, tmp_path):
    lines = [f"2026-13-{i:02d},xai,grok-4,p,1,1,1,1,USD" for i in range(1, 90)]
    result = import_file(generic(tmp_path, "dates.csv", lines), engine=sqlite_engine)
    assert len(result.issues) == 50
    assert result.issues[0].line == 2 and result.issues[-1].line == 51
    assert {i.column for i in result.issues} == {"date"}
    assert "stopped after 50" in result.message


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"", "empty"),
        (HEADER.encode(), "no data rows"),
        (b"foo,bar\n1,2\n", "unrecognised export format"),
        (HEADER.encode() + b"2026-09-01,xai,grok-4\n", "row has 3 fields but the header has 9"),
        (HEADER.encode() + b"2026-09-01,xai,grok-4,p,1,1,1,1,1,234,USD\n", "row has 11 fields"),
        (HEADER.encode() + b'2026-09-01,xai,grok-4,p,1,1,1,"1,5",USD\n', "ambiguous comma"),
        (HEADER.encode() + b"2026-09-01,xai,grok-4,p,1,1,1,1.0,DOLLARS\n", "ISO 4217"),
        (HEADER.encode() + b"2026-09-01,xai,grok-4,p,-5,1,1,1.0,USD\n", "between 0"),
        (HEADER.encode() + b"2026-09-01,xai,grok-4,p,1,1,1,1e300,USD\n", "out of range"),
    ],
)
def test_bad_files_are_refused_clearly(sqlite_engine, content, rule):
    result = import_file(io.BytesIO(content), name="upload.csv", engine=sqlite_engine)
    assert not result.ok
    assert any(rule in i.rule for i in result.issues), result.issues
    assert all(i.file == "upload.csv" and i.line >= 1 for i in result.issues)
    assert usage_count(sqlite_engine) == 0


def test_forced_importer_names_missing_columns(sqlite_engine):
    result = import_file(FIXTURES / "generic.csv", importer="focus", engine=sqlite_engine)
    assert not result.ok
    rule = result.issues[0].rule
    assert "not a focus file" in rule and "BilledCost" in rule and "ChargePeriodStart" in rule
    unknown = import_file(FIXTURES / "generic.csv", importer="nope", engine=sqlite_engine)
    assert "unknown importer 'nope'" in unknown.issues[0].rule


def test_dry_run_writes_nothing_and_reports_totals(sqlite_engine):
    result = import_file(FIXTURES / "generic.csv", dry_run=True, engine=sqlite_engine)
    assert result.status == "dry_run" and result.records == 4
    assert result.period_start.day == 6
    assert usage_count(sqlite_engine) == 0 and import_file_rows(sqlite_engine) == []
    lines = result.summary()
    assert "dry run, nothing written" in lines[0]
    assert any("xai" in line and "4.3500 USD billed" in line for line in lines)


def test_dry_run_without_an_engine_touches_no_database():
    result = import_file(FIXTURES / "aws_cur.csv", dry_run=True)
    assert result.status == "dry_run" and result.records == 6
    data_dir = get_settings().data_dir
    assert data_dir.is_dir() and not list(data_dir.glob("*.db"))


class _Stream(io.RawIOBase):
    """A non-seekable upload stream."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_file_objects_seekable_or_not(sqlite_engine):
    data = (FIXTURES / "gcp_billing.csv").read_bytes()
    upload = io.BytesIO(data)
    upload.name = "uploads/billing-sept.csv"
    first = import_file(upload, engine=sqlite_engine)
    assert first.ok and first.file == "billing-sept.csv"
    again = import_file(_Stream(data), name="again.csv", engine=sqlite_engine)
    assert again.status == "duplicate"


def test_token_only_rows_are_estimated_or_unpriced_never_zero(sqlite_engine, tmp_path):
    path = generic(
        tmp_path,
        "tokens.csv",
        ["2026-09-01,openai,gpt-4o,p,1000000,100000,10,,", "2026-09-01,acme,acme-internal-7b,p,5000,500,1,,"],
    )
    assert import_file(path, engine=sqlite_engine).ok
    rows = {r["provider"]: r for r in usage_rows(sqlite_engine)}
    assert rows["openai"]["basis"] == "estimated" and rows["openai"]["cost"] > 0
    assert rows["openai"]["currency"] == "USD"
    assert rows["acme"]["basis"] == "unpriced" and rows["acme"]["cost"] is None


def test_excel_unicode_text_and_european_semicolon_files(sqlite_engine, tmp_path):
    rows = [line for line in (FIXTURES / "generic.csv").read_text().splitlines() if not line.startswith("#")]
    utf16 = tmp_path / "excel-unicode.txt"
    tabbed = "\r\n".join(line.replace('"1,200,000"', "1200000").replace(",", "\t") for line in rows) + "\r\n"
    utf16.write_bytes(tabbed.encode("utf-16"))
    first = import_file(utf16, engine=sqlite_engine)
    assert first.ok and first.records == 4, first.summary()
    european = tmp_path / "eu.csv"
    european.write_bytes(
        (
            "\ufeff"
            + HEADER.replace(",", ";")
            + "2026-09-08;mistral;mistral-small-latest;p;1.000.000;2000;3;1.234,56;EUR\n"
        ).encode("utf-8")
    )
    second = import_file(european, engine=sqlite_engine)
    assert second.ok, second.summary()
    (row,) = usage_rows(sqlite_engine, provider="mistral", model="mistral-small-latest")
    assert (row["input_tokens"], row["cost"], row["currency"]) == (1_000_000, Decimal("1234.56"), "EUR")
