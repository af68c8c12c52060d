"""Pure parsing pieces shared by every importer: numbers, dates, units, directions, CSV sniffing."""

import codecs
import gzip
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from importers.base import (
    CsvFile,
    FileFormatError,
    hour_or_span,
    normalize_header,
    parse_datetime,
    parse_decimal,
    token_direction,
    token_fields,
    unit_multiplier,
)


@pytest.mark.parametrize(
    ("text", "comma", "expected"),
    [
        ("12.5", False, "12.5"),
        ("1e-5", False, "0.00001"),
        ("1,234.50", False, "1234.50"),
        ("$1,234.50", False, "1234.50"),
        ("€1.234,56", False, "1234.56"),
        ("1.234,56", True, "1234.56"),
        ("1 234,56", True, "1234.56"),
        ("1,5", True, "1.5"),
        ("(12.50)", False, "-12.50"),
        ("-$5.00", False, "-5.00"),
        ("12-", False, "-12"),
        ("USD 12.00", False, "12.00"),
        ("12.00 EUR", False, "12.00"),
        ("1.234.567", False, "1234567"),
        ("1'234.50", False, "1234.50"),
        (" 7 ", False, "7"),
    ],
)
def test_parse_decimal_accepts_what_exports_write(text, comma, expected):
    assert parse_decimal(text, decimal_comma=comma) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("1,5", "ambiguous comma"),
        ("12,34,5", "ambiguous comma"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("abc", "not a number"),
        ("", "required"),
        ("1.2.3", "not a number"),
    ],
)
def test_parse_decimal_rejects_with_the_rule(text, rule):
    with pytest.raises(ValueError, match=rule):
        parse_decimal(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-01T00:00:00Z", datetime(2026, 9, 1, tzinfo=UTC)),
        ("2026-09-01T02:00:00+02:00", datetime(2026, 9, 1, tzinfo=UTC)),
        ("2026-09-01 17:16:48 UTC", datetime(2026, 9, 1, 17, 16, 48, tzinfo=UTC)),
        ("2026-09-01", datetime(2026, 9, 1, tzinfo=UTC)),
        ("2026-09-01T10:00:00.000Z", datetime(2026, 9, 1, 10, tzinfo=UTC)),
        ("20260901", datetime(2026, 9, 1, tzinfo=UTC)),
    ],
)
def test_parse_datetime_gives_aware_utc(text, expected):
    value = parse_datetime(text)
    assert value == expected
    assert value.utcoffset() is not None and not value.utcoffset()


def test_parse_datetime_slash_dates_only_when_asked():
    assert parse_datetime("09/05/2026", us_slash_dates=True) == datetime(2026, 9, 5, tzinfo=UTC)
    assert parse_datetime("9/5/2026 1:30 PM", us_slash_dates=True) == datetime(2026, 9, 5, 13, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime("09/05/2026")
    with pytest.raises(ValueError, match="outside"):
        parse_datetime("0001-01-01")
    with pytest.raises(ValueError, match="required"):
        parse_datetime("  ")


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("1000 Tokens", (1000, "tokens")),
        ("1K tokens", (1000, "tokens")),
        ("1K", (1000, "")),
        ("1M Tokens", (1_000_000, "tokens")),
        ("Tokens", (1, "tokens")),
        ("Hours", (1, "hours")),
        ("1 Hour", (1, "hour")),
    ],
)
def test_unit_multiplier(unit, expected):
    assert unit_multiplier(unit) == expected


@pytest.mark.parametrize(
    ("text", "direction"),
    [
        ("Generative Language API - Gemini 2.0 Flash - Input tokens", "input"),
        ("Gemini 2.5 Pro Output Tokens", "output"),
        ("USE1-Claude4.6Sonnet-cache-read-input-token-count", "cache_read"),
        ("USE1-Claude4.6Sonnet-cache-write-input-token-count", "cache_write"),
        ("gpt-4o-mini-0718-Inp-glbl", "input"),
        ("gpt-4o-mini-0718-Outp-glbl", "output"),
        ("gpt 4.1 cached Input glbl Tokens", "cache_read"),
        ("Context cache storage per hour", ""),
        ("N2 Instance Core running in Americas", ""),
    ],
)
def test_token_direction(text, direction):
    assert token_direction(text) == direction


def test_token_fields_keep_input_as_total():
    assert token_fields("cache_read", 5) == (5, 5, 0, 0, 0)
    assert token_fields("cache_write", 5, "1h cache write") == (5, 0, 0, 5, 0)
    assert token_fields("output", 5) == (0, 0, 0, 0, 5)
    assert token_fields("", 5) == (0, 0, 0, 0, 0)


def test_header_names_compare_loosely():
    assert normalize_header("\ufeffBilledCost ") == normalize_header("billed_cost") == "billedcost"
    assert normalize_header("lineItem/UsageType") == normalize_header("line_item_usage_type")


def test_point_rows_bucket_to_their_hour():
    t = datetime(2025, 10, 20, 17, 16, 48, tzinfo=UTC)
    assert hour_or_span(t, t) == (datetime(2025, 10, 20, 17, tzinfo=UTC), datetime(2025, 10, 20, 18, tzinfo=UTC))
    day = datetime(2025, 10, 20, tzinfo=UTC)
    assert hour_or_span(day, day.replace(day=21)) == (day, day.replace(day=21))


def _rows(data: bytes):
    f = CsvFile(io.BytesIO(data), "t.csv")
    return f, [(line, row) for lines, rows in f.batches() for line, row in zip(lines, rows, strict=True)]


TEXT = 'a,b,c\n1,"two\nlines",3\n4,5,6\n'


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode(),
        codecs.BOM_UTF8 + TEXT.encode(),
        TEXT.encode("utf-16"),  # Excel "Unicode text": BOM + UTF-16-LE
        TEXT.encode("utf-16-le"),  # without BOM
        TEXT.replace("\n", "\r\n").encode(),
        gzip.compress(TEXT.encode()),
    ],
    ids=["utf8", "bom", "utf16", "utf16-nobom", "crlf", "gzip"],
)
def test_csv_file_reads_every_encoding_with_line_numbers(data):
    f, rows = _rows(data)
    assert f.header == ["a", "b", "c"]
    assert [line for line, _ in rows] == [2, 4]  # the quoted newline spans lines 2-3
    assert rows[0][1][1].replace("\r\n", "\n") == "two\nlines"


@pytest.mark.parametrize(("delim", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_csv_file_sniffs_the_delimiter(delim, name):
    f, rows = _rows(TEXT.replace(",", delim).encode())
    assert f.delimiter == delim
    assert f.decimal_comma is (delim == ";")
    assert rows[1][1] == ["4", "5", "6"]


def test_csv_file_skips_leading_comment_lines():
    f, rows = _rows(b"# provenance note\n# second\n" + TEXT.encode())
    assert f.header == ["a", "b", "c"]
    assert rows[0][0] == 4


def test_cp1252_from_excel_is_read():
    f, rows = _rows("a,b\ncafé,2\n".encode("cp1252"))
    assert f.encoding == "cp1252"
    assert rows[0][1] == ["café", "2"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\n\n  \n", "empty"),
        (b"# only a comment\n", "empty"),
        (b"\x1f\x8b\x08\x00garbage", "cannot read"),
    ],
)
def test_csv_file_refuses_unreadable_files(data, message):
    with pytest.raises(FileFormatError, match=message) as info:
        _rows(data)
    assert info.value.line >= 1


def test_nul_characters_are_refused_with_their_line():
    with pytest.raises(FileFormatError, match="NUL") as info:
        _rows(b"a,b\n1,2\n3,\x004\n")
    assert info.value.line == 3
