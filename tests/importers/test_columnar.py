"""The columnar FOCUS reader stores what the row path stores, and hands it every file it cannot read alike."""

from __future__ import annotations

import csv
import gzip
import io
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from collector.core.store import USAGE, USAGE_DAILY
from importers.service import import_file

from .conftest import FIXTURES

HEADER = (
    "BilledCost,EffectiveCost,BillingAccountId,BillingCurrency,ChargeCategory,ChargeClass,ChargeDescription,"
    "ChargePeriodStart,ChargePeriodEnd,ConsumedQuantity,ConsumedUnit,ProviderName,ResourceId,ServiceCategory,"
    "ServiceName,SkuId,SkuMeter,SubAccountId,Tags"
)
AI = "AI and Machine Learning"
H0, H1, H2, H3, H4 = (f"2026-09-01T0{h}:00:00Z" for h in range(5))
#: Rows the columnar mapper maps itself, and rows it hands to the row mapper one by one (a decimal
#: token quantity, requests, thousands separators, a negative token reversal, an exponent zero).
CELLS: list[tuple[str, ...]] = [
    (
        "1.25",
        "1.25",
        "ba-1",
        "USD",
        "Usage",
        "",
        "gpt-4o input",
        H0,
        H1,
        "1200",
        "Tokens",
        "OpenAI",
        "r1",
        AI,
        "OpenAI API",
        "S1",
        "gpt-4o input tokens",
        "p1",
        '{"team": "a"}',
    ),
    (
        "0.5",
        "0.4",
        "ba-1",
        "USD",
        "Usage",
        "",
        "gpt-4o output",
        H0,
        H1,
        "300",
        "Tokens",
        "OpenAI",
        "r1",
        AI,
        "OpenAI API",
        "S2",
        "gpt-4o output tokens",
        "p1",
        "",
    ),
    (
        "0.1",
        "0.1",
        "ba-1",
        "USD",
        "Usage",
        "",
        "cached",
        H1,
        H2,
        "90",
        "1K Tokens",
        "OpenAI",
        "r2",
        AI,
        "OpenAI API",
        "S3",
        "gpt-4o cached input tokens",
        "p2",
        "",
    ),
    (
        "0.2",
        "0.2",
        "ba-1",
        "USD",
        "Usage",
        "",
        "cache write",
        H1,
        H2,
        "7",
        "1M Tokens",
        "Anthropic",
        "",
        AI,
        "Claude API",
        "S4",
        "claude-sonnet-4 cache write 1h tokens",
        "p2",
        "",
    ),
    (
        "0.3",
        "0.3",
        "ba-1",
        "USD",
        "Usage",
        "",
        "decimal tokens",
        H2,
        H3,
        "1.5",
        "1K Tokens",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S5",
        "gpt-4o input tokens",
        "p1",
        "",
    ),
    (
        "0.4",
        "0.4",
        "ba-1",
        "USD",
        "Usage",
        "",
        "requests",
        H2,
        H3,
        "12",
        "Requests",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S6",
        "web search calls",
        "p1",
        "",
    ),
    (
        "1,234.50",
        "1234.5",
        "ba-1",
        "USD",
        "Usage",
        "",
        "thousands",
        H2,
        H3,
        "5",
        "Tokens",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S7",
        "gpt-4o output tokens",
        "p1",
        "",
    ),
    (
        "-0.2",
        "-0.2",
        "ba-1",
        "USD",
        "Usage",
        "",
        "reversal",
        H3,
        H4,
        "-100",
        "Tokens",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S8",
        "gpt-4o input tokens",
        "p1",
        "",
    ),
    (
        "0E-10",
        "0E-10",
        "ba-1",
        "USD",
        "Usage",
        "",
        "zero",
        H3,
        H4,
        "10",
        "Tokens",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S9",
        "gpt-4o input tokens",
        "p1",
        "",
    ),
    (
        "-3.5",
        "-3.5",
        "ba-1",
        "USD",
        "Credit",
        "",
        "credit",
        H3,
        H4,
        "1.25",
        "Tokens",
        "OpenAI",
        "",
        AI,
        "OpenAI API",
        "S1",
        "gpt-4o input tokens",
        "p1",
        "",
    ),
    (
        "2.0",
        "2.0",
        "ba-2",
        "EUR",
        "Adjustment",
        "Correction",
        "fix",
        "2026-09-02T00:00:00Z",
        "2026-09-03T00:00:00Z",
        "",
        "",
        "Microsoft",
        "",
        AI,
        "Azure AI Services",
        "M1",
        "gpt-4o-Output-glbl",
        "sub-1",
        "",
    ),
    (
        "0.7",
        "0.7",
        "ba-2",
        "eur",
        "Usage",
        "",
        "a description\nover two lines",
        "2026-09-02T00:00:00Z",
        "2026-09-03T00:00:00Z",
        "42",
        "Tokens",
        "Microsoft",
        "",
        AI,
        "Azure AI Services",
        "M2",
        "gpt-4o-Input-glbl",
        "sub-1",
        "",
    ),
    (
        "9.0",
        "9.0",
        "ba-1",
        "USD",
        "Usage",
        "",
        "EC2",
        H0,
        "2026-09-02T00:00:00Z",
        "24",
        "Hours",
        "AWS",
        "i-1",
        "Compute",
        "Amazon EC2",
        "E1",
        "BoxUsage",
        "p1",
        "",
    ),
]


def csv_line(cells: tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)  # quotes cells holding the terminator
    return out.getvalue()[:-1]


ROWS = [csv_line(cells) for cells in CELLS]


def write(path: Path, rows: list[str], *, trailer: str = "\n") -> Path:
    path.write_text("# a comment line before the header\n" + HEADER + "\n" + "\n".join(rows) + trailer)
    return path


def stored(engine) -> tuple[list[dict], list[dict]]:
    """Every usage and rollup row, without the write stamps and surrogate ids."""
    with engine.connect() as conn:
        usage = [dict(r._mapping) for r in conn.execute(select(USAGE).order_by(USAGE.c.record_key))]
        daily = [dict(r._mapping) for r in conn.execute(select(USAGE_DAILY))]
    for row in usage:  # the two imports are two files of the log: file:1 and file:2
        del row["ingested_at"], row["updated_at"]
        assert row.pop("source_ref").startswith("file:")
    for row in daily:
        del row["id"]
    daily.sort(key=repr)
    return usage, daily


def both_paths(engine, path: Path, **kwargs):
    """Import ``path`` column-wise, then (on an emptied database) row by row; both results and stored rows."""
    columnar = import_file(path, engine=engine, who="t", **kwargs)
    first = stored(engine)
    with engine.begin() as conn:
        conn.execute(delete(USAGE))
        conn.execute(delete(USAGE_DAILY))
    rows = import_file(path, engine=engine, who="t", force=True, columnar=False, **kwargs)
    return columnar, rows, first, stored(engine)


def summary(result) -> tuple:
    totals = result.totals.items()
    return (
        result.status,
        result.rows_read,
        result.records,
        result.skipped,
        result.duplicate_rows,
        result.period_start,
        result.period_end,
        result.accounts,
        {k: (t.records, t.input_tokens, t.output_tokens, t.requests, t.cost, t.unpriced) for k, t in totals},
        {k: bill.money for k, bill in result.bills.items()},
        [str(i) for i in result.issues],
    )


def test_columnar_and_row_paths_store_identical_rows(engine, tmp_path):
    path = write(tmp_path / "focus.csv", [*ROWS[:5], "   ", *ROWS[5:]], trailer="\n\n\n")
    columnar, rows, first, second = both_paths(engine, path)
    assert columnar.columnar and not rows.columnar
    assert columnar.ok and columnar.records == 12 and columnar.skipped == 1
    # 13 rows, a line of spaces and the two blank lines at the end, as csv.reader counts them
    assert columnar.rows_read == 16
    assert summary(columnar) == summary(rows)
    assert first == second
    assert len(first[0]) == 12 and first[1]


def test_fixture_and_gzip_read_columnar_store_the_same(engine, tmp_path):
    gz = tmp_path / "focus_ai.csv.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "focus_ai.csv").read_bytes()))
    for path in (FIXTURES / "focus_ai.csv", gz):
        columnar, rows, first, second = both_paths(engine, path, keep_all=True)
        assert columnar.columnar and columnar.ok
        assert summary(columnar) == summary(rows)
        assert first == second


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        ("a bad cell after a quoted newline", [*ROWS[:12], ROWS[0].replace("2026-09-01T00:00:00Z", "soon", 1)]),
        ("a bad currency", [*ROWS[:3], ROWS[3].replace(",USD,", ",US,")]),
        ("a row ending before it starts", [ROWS[0].replace("2026-09-01T01:00:00Z", "2026-08-01T01:00:00Z")]),
        ("a blank line inside", [*ROWS[:2], "", *ROWS[2:4]]),
        ("a short row", [*ROWS[:2], "1,2,3"]),
        ("rows sharing a key", [ROWS[0], ROWS[0], ROWS[1]]),
    ],
)
def test_files_the_columnar_reader_cannot_read_alike_go_to_the_row_path(sqlite_engine, tmp_path, case, rows):
    path = write(tmp_path / "focus.csv", rows)
    columnar, by_rows, first, second = both_paths(sqlite_engine, path)
    assert not columnar.columnar, case
    assert summary(columnar) == summary(by_rows), case
    assert first == second, case


def test_a_bad_cell_is_reported_at_its_line_and_nothing_is_written(sqlite_engine, tmp_path):
    bad = ROWS[1].replace("0.5,0.4", "zero,0.4")
    path = write(tmp_path / "focus.csv", [*ROWS[:12], bad])
    result = import_file(path, engine=sqlite_engine, who="t")
    assert not result.ok
    # comment, header, 11 one-line rows, one row over two lines: the bad row starts on line 16
    assert [str(i) for i in result.issues] == ["focus.csv:16: column 'BilledCost': value 'zero': not a number"]
    assert stored(sqlite_engine) == ([], [])


def test_dry_run_totals_match_the_row_path(tmp_path):
    path = write(tmp_path / "focus.csv", ROWS)
    columnar = import_file(path, dry_run=True)
    rows = import_file(path, dry_run=True, columnar=False)
    assert columnar.columnar and columnar.status == "dry_run"
    assert summary(columnar) == summary(rows)


def _reference_check(blocks: list[bytes]) -> str:
    """What the byte checks must find, by plain search over the whole text: the first reason to refuse, or ''."""
    text = b"".join(blocks)
    if b"\x00" in text:
        return "NUL character"
    if text.count(b"\r") != text.count(b"\r\n") + text.endswith(b"\r"):
        return "a lone carriage return"
    body = text.rstrip(b"\r\n")
    if body and (b"\n\n" in b"\n" + body or b"\n\r\n" in b"\n" + body):
        return "a blank line inside the file"
    return ""


@settings(max_examples=400, deadline=None)
@given(
    text=st.lists(st.sampled_from([b"a", b",", b"\r", b"\n", b"\r\n", b"\x00"]), max_size=24).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=24), max_size=4),
)
def test_block_checks_find_what_a_search_of_the_whole_text_finds(text, cuts):
    """Blocks are checked one by one (split on line feeds): a break between blocks changes nothing."""
    from importers.columnar import ColumnarFallback, _Watched

    edges = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    blocks = [text[a:b] for a, b in pairwise(edges)]
    watched = _Watched(io.BytesIO(), 0)
    watched.run = 1  # the header's own line break precedes the first block
    found = ""
    try:
        for block in blocks:
            watched._check(block)
    except ColumnarFallback as exc:
        found = str(exc)
    expected = _reference_check(blocks)
    if found == "" or expected == "":
        assert found == expected
    else:  # the first block that shows two problems names the one it checks first: both are refused
        assert {found, expected} <= {"NUL character", "a lone carriage return", "a blank line inside the file"}
    if not found:
        body = text.rstrip(b"\r\n")
        breaks = text[len(body) :].count(b"\n") + (0 if body else 1)  # the header's line break starts a run
        assert watched.trailing_blanks == max(breaks - 1, 0)


def _many_rows(count: int) -> list[str]:
    """``count`` distinct one-line rows (a resource id each), spread over several Arrow batches."""
    first = list(CELLS[0])
    rows = []
    for i in range(count):
        first[12] = f"r{i}"
        first[7], first[8] = f"2026-09-{1 + i % 28:02d}T00:00:00Z", f"2026-09-{1 + i % 28:02d}T01:00:00Z"
        rows.append(csv_line(tuple(first)))
    return rows


def test_a_file_of_several_batches_stores_what_the_row_path_stores(engine, tmp_path):
    path = write(tmp_path / "focus.csv", _many_rows(12_000))
    columnar, rows, first, second = both_paths(engine, path)
    assert columnar.columnar and columnar.ok and columnar.records == 12_000
    assert summary(columnar) == summary(rows)
    assert first == second


def test_a_bad_cell_in_the_middle_of_a_batch_names_its_line_and_nothing_is_written(engine, tmp_path):
    rows = _many_rows(12_000)
    rows[7_499] = rows[7_499].replace("1.25,1.25", "1.2.5,1.25", 1)  # data row 7,500: inside the second batch
    path = write(tmp_path / "focus.csv", rows)
    result = import_file(path, engine=engine, who="t")
    by_rows = import_file(path, engine=engine, who="t", columnar=False)
    assert not result.ok
    # a comment line and the header come first: data row 7,500 is line 7,502
    assert [str(i) for i in result.issues] == ["focus.csv:7502: column 'BilledCost': value '1.2.5': not a number"]
    assert [str(i) for i in result.issues] == [str(i) for i in by_rows.issues]
    assert stored(engine) == ([], [])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.sampled_from(["", "a", "b", "a\x00", "\x00b", "é", "a,b"]), min_size=3, max_size=3),
        min_size=1,
        max_size=30,
    ),
    width=st.integers(1, 3),
)
def test_distinct_points_each_row_at_its_own_combination(rows, width):
    """Joined or column by column (a value holding NUL), every row's index names its own values, once each."""
    import pyarrow as pa

    from importers.columnar import distinct

    columns = [pa.array([row[i] for row in rows], pa.string()) for i in range(width)]
    indices, combos = distinct(columns)
    assert len(set(combos)) == len(combos)
    assert [combos[i] for i in indices.to_pylist()] == [tuple(row[:width]) for row in rows]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.binary(min_size=16, max_size=16), max_size=40), min_size=1, max_size=6),
    st.booleans(),
)
def test_key_repeats_are_found_within_and_across_batches(batches, repeat_one):
    """``_repeats`` over ``_key_prefixes`` says what a set of the keys' first 8 bytes says."""
    from importers.service import _key_prefixes, _repeats

    if repeat_one and any(batches):
        first = next(b for b in batches if b)[0]
        batches = [*batches, [first]]  # the same key again, in a later batch
    chunks = [_key_prefixes(b) for b in batches]
    prefixes = [k[:8] for b in batches for k in b]
    assert _repeats(chunks) == (len(set(prefixes)) != len(prefixes))
    assert [int.from_bytes(p, "little") for p in prefixes] == [v for c in chunks for v in c.to_pylist()]
