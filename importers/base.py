"""The importer contract and the CSV plumbing every importer shares (code-anchors §11.10).

An importer is a provider whose transport is a file. It declares the columns it reads (each
with the header spellings the exports are documented to use), says whether a header is its
format, and turns one CSV row into one :class:`~collector.core.schema.UsageRecord`. Everything else
lives here, once:

* :class:`CsvFile` opens bytes as CSV whatever Excel or a cloud console did to them: gzip,
  UTF-8 with or without BOM, UTF-16 (Excel's "Unicode text"), cp1252 as a last resort, comma /
  semicolon / tab / pipe delimiters, quoted newlines, leading ``#`` comment lines (our fixtures
  carry their provenance there; no real export starts with ``#``).
* :class:`ImportContext` parses numbers (thousands separators, currency symbols, accounting
  brackets, decimal commas in semicolon files) and dates (cached per distinct string: an export
  has a few thousand distinct hours and a million rows).
* :meth:`Importer.map_batch` maps rows in batches, turning every bad value into an
  :class:`ImportIssue` that names the file, line, column, value and rule.

Performance matters (a billing export can hold millions of rows): row mappers are closures over
precomputed column indexes, numbers become ``Decimal`` only where they are money or quantities,
and no per-row model object is built besides the record itself.

The module is long because these three pieces are shared by every format and tested once here;
splitting them would make each importer import three modules for what is one contract.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import IO, Any, ClassVar, cast

from collector.core.cloud_billing import NO_TOKENS as NO_TOKENS
from collector.core.cloud_billing import slug, token_direction, token_fields, unit_multiplier
from collector.core.schema import InvariantError, UsageRecord
from collector.core.store import RowColumns

#: Errors collected per file before the import stops reading: enough to fix a file in one go.
MAX_ISSUES = 50
#: Rows mapped per batch; also the window in which repeated keys are merged in memory.
BATCH_ROWS = 5000
SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
#: Years a billing export can plausibly describe; anything else is a garbled date.
YEAR_RANGE = (1990, 2200)
#: Bounds that keep values inside the store's exact column types (SQLite keeps money as scaled
#: 64-bit integers, collector/sqltypes.py); anything beyond is a garbled cell, not a bill.
MONEY_LIMIT = Decimal(10) ** 8
NUMBER_LIMIT = Decimal(10) ** 12
COUNT_LIMIT = 10**15
HOUR = timedelta(hours=1)
END_RULE = "the end must be after the start (half-open window, design rule 2)"
DAY = timedelta(days=1)

RowMapper = Callable[[list[str]], UsageRecord | None]


@dataclass
class ColumnBatch:
    """One Arrow batch mapped by a columnar mapper (``importers/columnar.py``)."""

    #: Rows mapped column-wise (None when none was).
    columns: RowColumns | None
    #: Rows the columnar mapper handed to the row mapper (values it does not map itself).
    records: list[UsageRecord]
    #: Rows out of scope (non-AI services).
    skipped: int


@dataclass
class ArrowColumns(RowColumns):
    """:class:`RowColumns` that also carry some of their columns as the Arrow arrays they came from.

    The import's running totals group every batch with Arrow; converting the rows' Python lists
    back (days, tokens, money, providers) took about a quarter of their time (0.14 of 0.51 s of CPU
    for a million rows).
    """

    #: Arrow arrays of some columns, one value per row: ``start_ts``, ``cost`` (``int64``) and any
    #: field of ``values`` (tokens ``int64``, strings ``string``), each equal to the Python column.
    arrow: dict[str, Any] = field(default_factory=dict)


#: From an Arrow record batch of string columns ``c0 .. cN`` to its mapped rows.
BatchMapper = Callable[[Any], ColumnBatch]


# -- errors -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """One problem found in a file: where it is and which rule it breaks."""

    file: str
    line: int
    column: str
    value: str
    rule: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}"]
        if self.column:
            parts.append(f"column {self.column!r}")
        if self.value:
            parts.append(f"value {self.value!r}")
        return ": ".join([*parts, self.rule])


class RowError(ValueError):
    """A value in a row breaks a rule; the mapper raises it and the batch loop records it."""

    def __init__(self, column: str, value: str, rule: str) -> None:
        super().__init__(f"{column}={value!r}: {rule}")
        self.column = column
        self.value = value
        self.rule = rule


class ColumnarFallback(Exception):
    """A file or batch cannot be read column-wise exactly as the row path reads it (``importers/columnar.py``)."""


class FileFormatError(ValueError):
    """The file as a whole cannot be read (empty, unknown format, missing columns, bad bytes)."""

    def __init__(self, rule: str, *, line: int = 0, column: str = "", value: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.line = line
        self.column = column
        self.value = value


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


# -- header handling ----------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_header(name: str) -> str:
    """Compare header names without case, spaces, dots, slashes or underscores.

    So ``BilledCost``, ``billed_cost`` and ``Billed Cost`` are one column, and legacy CUR's
    ``lineItem/UsageType`` is CUR 2.0's ``line_item_usage_type`` (provider-apis.md §6.2).
    """
    return _NON_ALNUM.sub("", name.strip().lstrip("\ufeff").lower())


class Columns:
    """Where each logical column of an importer sits in one file's header."""

    def __init__(self, header: list[str], spec: dict[str, tuple[str, ...]]) -> None:
        positions: dict[str, int] = {}
        for index, name in enumerate(header):
            positions.setdefault(normalize_header(name), index)
        self.header = header
        self.index: dict[str, int] = {}
        self.names: dict[str, str] = {}
        for logical, variants in spec.items():
            for variant in variants:
                pos = positions.get(normalize_header(variant))
                if pos is not None:
                    self.index[logical] = pos
                    self.names[logical] = header[pos].strip().lstrip("\ufeff")
                    break

    def has(self, logical: str) -> bool:
        """Whether the file has this logical column."""
        return logical in self.index

    def at(self, logical: str) -> int:
        """Index of the column, or -1 (the empty cell every row gets appended) when absent."""
        return self.index.get(logical, -1)

    def name(self, logical: str) -> str:
        """The header as spelled in this file (for error messages)."""
        return self.names.get(logical, logical)


# -- reading the bytes --------------------------------------------------------------------------


def _sniff_encoding(sample: bytes, complete: bool) -> str:
    """Pick the text encoding from a BOM, UTF-16 NUL patterns, or a strict UTF-8 trial."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = sample[:4096]
    if len(head) >= 4 and head.count(0) * 3 >= len(head):
        # UTF-16 without BOM: ASCII text has a NUL in every other byte.
        odd_nuls = head[1::2].count(0)
        return "utf-16-le" if odd_nuls > head[0::2].count(0) else "utf-16-be"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if complete or exc.start < len(sample) - 4:  # not merely a character cut at the sample's end
            return "cp1252"
    return "utf-8"


def _count_outside_quotes(line: str, char: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == char and not quoted:
            count += 1
    return count


def sniff_delimiter(header_line: str) -> str:
    """The delimiter is whichever candidate splits the header line most often."""
    best, best_count = ",", 0
    for candidate in DELIMITERS:
        n = _count_outside_quotes(header_line, candidate)
        if n > best_count:
            best, best_count = candidate, n
    return best


@dataclass(frozen=True, slots=True)
class Limits:
    """What one file may cost to read; a file past a limit is refused, naming the limit and its setting.

    Hostile or broken files are cheap to make and expensive to read: a few hundred kilobytes
    of gzip can hold one 300 MB line (all of it in memory before a line-based reader sees its
    end) or millions of tiny rows (minutes of CPU). ``0`` switches a limit off.
    """

    max_bytes: int = 2 * 1024**3
    max_line: int = 1024 * 1024
    max_rows: int = 5_000_000


class _Bounded(io.RawIOBase):
    """A binary stream that refuses to yield more than ``limit`` (decompressed) bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self.stream, self.limit, self.read_bytes = stream, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        self.read_bytes += len(data)
        if self.limit and self.read_bytes > self.limit:
            raise FileFormatError(
                f"the file holds more than {self.limit:,} bytes once decompressed "
                "(limit LLM_USAGE_IMPORT_MAX_BYTES); split it or raise the limit"
            )
        buffer[: len(data)] = data
        return len(data)


PARQUET_MAGIC = b"PAR1"


class ParquetFile:
    """A Parquet file read as CSV-like rows of text, so every importer maps it unchanged.

    FOCUS exports often come as Parquet (AWS Data Exports, this product's ``export --format
    parquet``). Cells are turned into the text a CSV export would hold: exact decimals without
    exponent, ISO 8601 UTC times, ``true``/``false``; nulls become empty cells. A row's "line" is
    its position counted as in the CSV form of the file (the header is line 1).

    Args:
        fp: a seekable binary file object holding a Parquet file.
        name: the file name used in messages.
        limits: the data rows the file may have (:class:`Limits`; bytes and lines are a CSV's).
    """

    decimal_comma = False
    header_line = 1

    def __init__(self, fp: IO[bytes], name: str, limits: Limits | None = None) -> None:
        import pyarrow.parquet as pq

        self.name = name
        self.limits = limits or Limits()
        fp.seek(0)
        try:
            self._file = pq.ParquetFile(fp)
        except Exception as exc:  # noqa: BLE001  (pyarrow raises several types for a bad file)
            raise FileFormatError(f"not a readable Parquet file: {exc}", line=1) from None
        self.header = [str(name) for name in self._file.schema_arrow.names]
        if not self.header:
            raise FileFormatError("the Parquet file has no columns", line=1)

    def batches(self, size: int = BATCH_ROWS) -> Iterator[tuple[list[int], list[list[str]]]]:
        """Yield ``(line numbers, rows)`` lists of up to ``size`` rows, cells as text."""
        line = self.header_line
        max_rows = self.limits.max_rows
        for batch in self._file.iter_batches(batch_size=size):
            if max_rows and line - self.header_line + batch.num_rows > max_rows:
                raise FileFormatError(
                    f"more than {max_rows:,} data rows (limit LLM_USAGE_IMPORT_MAX_ROWS); split the file "
                    "or raise the limit",
                    line=self.header_line + max_rows + 1,
                )
            columns = [[_cell_text(v) for v in column.to_pylist()] for column in batch.columns]
            rows = [list(cells) for cells in zip(*columns, strict=True)] if columns else []
            lines = list(range(line + 1, line + 1 + len(rows)))
            line += len(rows)
            yield lines, rows


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def open_table(fp: IO[bytes], name: str, limits: Limits | None = None) -> TableFile:
    """A CSV (plain or gzip) or Parquet file, told apart by its first bytes."""
    fp.seek(0)
    magic = fp.read(4)
    fp.seek(0)
    return ParquetFile(fp, name, limits) if magic == PARQUET_MAGIC else CsvFile(fp, name, limits)


class CsvFile:
    """A CSV stream opened from bytes: header, delimiter, encoding, and rows with line numbers.

    Args:
        fp: a seekable binary file object positioned anywhere (it is rewound).
        name: the file name used in messages.
        limits: decompressed bytes, line length and rows the file may have (:class:`Limits`).
    """

    def __init__(self, fp: IO[bytes], name: str, limits: Limits | None = None) -> None:
        self.name = name
        self.limits = limits or Limits()
        fp.seek(0)
        magic = fp.read(2)
        fp.seek(0)
        self.gzipped = magic == b"\x1f\x8b"
        stream: IO[bytes] = cast(IO[bytes], gzip.GzipFile(fileobj=fp, mode="rb")) if self.gzipped else fp
        try:
            sample = stream.read(SAMPLE_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileFormatError(f"cannot read the file: {exc}", line=1) from exc
        if self.gzipped:
            fp.seek(0)
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=fp, mode="rb"))
        else:
            fp.seek(0)
        if not sample.strip(b"\x00\r\n\t \xef\xbb\xbf\xff\xfe"):
            raise FileFormatError("the file is empty", line=1)
        self.encoding = _sniff_encoding(sample, complete=len(sample) < SAMPLE_BYTES)
        bounded = io.BufferedReader(_Bounded(stream, self.limits.max_bytes), 1 << 16)
        self._text = io.TextIOWrapper(bounded, encoding=self.encoding, newline="")
        self.line_offset = 0
        header_line = self._first_line()
        if "\x00" in header_line:
            raise FileFormatError("NUL character in the header (binary or corrupt file?)", line=self.line_offset)
        self.delimiter = sniff_delimiter(header_line)
        self.decimal_comma = self.delimiter == ";"
        try:
            header = next(csv.reader([header_line], delimiter=self.delimiter))
        except (csv.Error, StopIteration) as exc:
            raise FileFormatError(f"unreadable header: {exc}", line=self.line_offset) from exc
        while header and not header[-1].strip():
            header.pop()  # Excel pads rows with empty trailing cells
        if not header:
            raise FileFormatError("the file has no header line", line=self.line_offset)
        self.header = [h.strip().lstrip("\ufeff") for h in header]
        self.header_line = self.line_offset
        self._reader = csv.reader(self._lines(), delimiter=self.delimiter)

    def _physical_lines(self, first: int) -> Iterator[str]:
        """The text's lines, each read with a length cap so one endless line never fills memory."""
        limit = self.limits.max_line
        read = self._text.readline
        number = first
        while line := read(limit + 1) if limit else read():
            number += 1
            if limit and len(line) > limit and line[-1] not in "\r\n":
                raise self._too_long(number)
            yield line

    def _too_long(self, line: int) -> FileFormatError:
        return FileFormatError(
            f"line longer than {self.limits.max_line:,} characters (limit LLM_USAGE_IMPORT_MAX_LINE_LENGTH)", line=line
        )

    def _first_line(self) -> str:
        """Skip blank and ``#`` comment lines; return the header line."""
        try:
            for raw in self._physical_lines(0):
                self.line_offset += 1
                line = raw.lstrip("\ufeff")
                if line.strip() and not line.startswith("#"):
                    return line
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"not valid {self.encoding} text ({exc.reason})", line=self.line_offset + 1) from exc
        raise FileFormatError("the file is empty (no header line)", line=max(self.line_offset, 1))

    def _lines(self) -> Iterator[str]:
        """The text lines after the header, refusing NUL characters (no database stores them in text)."""
        number = self.line_offset
        limit = self.limits.max_line
        read = self._text.readline
        while line := read(limit + 1) if limit else read():  # capped: one endless line never fills memory
            number += 1
            if "\x00" in line:
                raise FileFormatError("NUL character in the text (binary or corrupt file?)", line=number)
            if limit and len(line) > limit and line[-1] not in "\r\n":
                raise self._too_long(number)
            yield line

    def batches(self, size: int = BATCH_ROWS) -> Iterator[tuple[list[int], list[list[str]]]]:
        """Yield ``(line numbers, rows)`` lists of up to ``size`` data rows.

        A row's line number is the physical line it starts on (quoted newlines span lines).

        Raises:
            FileFormatError: on undecodable bytes or CSV structure the reader cannot resume.
        """
        reader = self._reader
        offset = self.line_offset
        prev = 0
        lines: list[int] = []
        rows: list[list[str]] = []
        max_rows, seen = self.limits.max_rows, 0
        try:
            for row in reader:
                lines.append(prev + 1 + offset)
                rows.append(row)
                prev = reader.line_num
                if len(rows) >= size:
                    seen += len(rows)
                    if max_rows and seen > max_rows:
                        raise self._too_many_rows(lines[max_rows - seen + len(rows)])
                    yield lines, rows
                    lines, rows = [], []
        except UnicodeDecodeError as exc:
            raise FileFormatError(
                f"not valid {self.encoding} text ({exc.reason})", line=reader.line_num + offset + 1
            ) from exc
        except csv.Error as exc:
            raise FileFormatError(f"CSV structure error: {exc}", line=reader.line_num + offset) from exc
        except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip stream
            raise FileFormatError(f"cannot read the file: {exc}", line=reader.line_num + offset + 1) from exc
        if rows:
            if max_rows and seen + len(rows) > max_rows:
                raise self._too_many_rows(lines[max_rows - seen])
            yield lines, rows

    def _too_many_rows(self, line: int) -> FileFormatError:
        return FileFormatError(
            f"more than {self.limits.max_rows:,} data rows (limit LLM_USAGE_IMPORT_MAX_ROWS); split the file "
            "or raise the limit",
            line=line,
        )


# -- values -------------------------------------------------------------------------------------

_CURRENCY_AFFIX = re.compile(r"^(?:[A-Z]{3}\s*)|(?:\s*[A-Z]{3})$")
_SYMBOLS = str.maketrans("", "", "$€£¥₹\u00a0\u202f '\u2019")
_THOUSANDS_COMMA = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$")
_THOUSANDS_DOT = re.compile(r"^\d{1,3}(\.\d{3}){2,}(,\d*)?$")
_SLASH_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$")


def parse_decimal(text: str, *, decimal_comma: bool = False) -> Decimal:
    """Parse a human- or machine-written number exactly.

    Accepts plain decimals and exponents, thousands separators (``1,234.50``, ``1.234,50``,
    ``1 234,50``, ``1'234.50``), currency symbols or ISO codes around the number, accounting
    negatives ``(12.50)`` and trailing minus. A lone comma is a decimal comma only in files whose
    delimiter is ``;`` (European Excel); elsewhere it must group thousands, otherwise the value is
    ambiguous and rejected rather than guessed.

    Raises:
        ValueError: with the rule broken.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = _parse_decimal_slow(text, decimal_comma)
    if not value.is_finite():
        raise ValueError("number must be finite")
    return value


def _parse_decimal_slow(text: str, decimal_comma: bool) -> Decimal:
    s = text.strip()
    if not s:
        raise ValueError("a number is required here")
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1]
    s = _CURRENCY_AFFIX.sub("", s.strip()).translate(_SYMBOLS)
    if s.startswith("-"):
        negative, s = not negative, s[1:]
    elif s.endswith("-"):
        negative, s = not negative, s[:-1]
    s = s.lstrip("+").translate(_SYMBOLS)
    if "," in s and "." in s:
        # whichever separator comes last is the decimal point
        s = s.replace(".", "").replace(",", ".") if s.rfind(",") > s.rfind(".") else s.replace(",", "")
    elif "," in s:
        if decimal_comma and s.count(",") == 1:
            s = s.replace(",", ".")
        elif _THOUSANDS_COMMA.match(s):
            s = s.replace(",", "")
        else:
            raise ValueError("ambiguous comma in a number (use '.' for decimals in comma-delimited files)")
    elif _THOUSANDS_DOT.match(s):
        s = s.replace(".", "")
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise ValueError("not a number") from None
    return -value if negative else value


def parse_datetime(text: str, *, us_slash_dates: bool = False) -> datetime:
    """Parse an export timestamp or date into an aware UTC datetime.

    ISO 8601 (``Z``, offsets, date only, basic ``20260901``), BigQuery/Fireworks style
    ``2026-09-01 17:16:48 UTC`` (provider-apis.md §10), and with ``us_slash_dates`` Azure EA's
    ``MM/DD/YYYY``. Times without a zone are UTC: every export in provider-apis.md reports UTC.

    Raises:
        ValueError: with the rule broken.
    """
    s = text.strip()
    if not s:
        raise ValueError("a date is required here")
    if s.endswith(" UTC"):
        s = s[:-4]
    try:
        value = datetime.fromisoformat(s)
    except ValueError:
        slashed = _parse_slash(s) if us_slash_dates else None
        if slashed is None:
            raise ValueError("not an ISO 8601 date or time") from None
        value = slashed
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not YEAR_RANGE[0] <= value.year <= YEAR_RANGE[1]:
        raise ValueError(f"date outside {YEAR_RANGE[0]}-{YEAR_RANGE[1]}")
    return value


def _parse_slash(s: str) -> datetime | None:
    m = _SLASH_DATE.match(s)
    if not m:
        return None
    month, day, year = int(m[1]), int(m[2]), int(m[3])
    hour, minute, second = int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
    if m[7]:
        hour = hour % 12 + (12 if m[7].lower() == "pm" else 0)
    try:
        return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001  (made UTC by the caller)
    except ValueError:
        return None


# -- per-file context ---------------------------------------------------------------------------


@dataclass
class ImportContext:
    """What one import run knows while mapping rows: file, options, parsers with their caches."""

    file: str = "<file>"
    account: str | None = None
    keep_all: bool = False
    ai_services: frozenset[str] = frozenset()
    decimal_comma: bool = False
    source_ref: str = "file:0"
    issues: list[ImportIssue] = field(default_factory=list)
    _dates: dict[str, datetime] = field(default_factory=dict)

    def issue(self, line: int, column: str, value: str, rule: str) -> None:
        """Record one problem (the caller stops after :data:`MAX_ISSUES`)."""
        self.issues.append(ImportIssue(self.file, max(line, 1), column, _clip(value), rule))

    @property
    def full(self) -> bool:
        """Whether enough problems are collected to stop reading."""
        return len(self.issues) >= MAX_ISSUES

    def decimal(self, text: str, column: str, limit: Decimal = NUMBER_LIMIT) -> Decimal:
        """A required number, at most ``limit`` in size."""
        try:
            value = parse_decimal(text, decimal_comma=self.decimal_comma)
        except ValueError as exc:
            raise RowError(column, text, str(exc)) from None
        if not -limit < value < limit:
            raise RowError(column, text, f"number out of range (±{limit:,})")
        return value

    def money(self, text: str, column: str) -> Decimal:
        """A required amount of money."""
        return self.decimal(text, column, MONEY_LIMIT)

    def opt_money(self, text: str, column: str) -> Decimal:
        """An optional amount of money; an empty cell is zero."""
        if not text or text.isspace():
            return Decimal(0)
        return self.decimal(text, column, MONEY_LIMIT)

    def opt_decimal(self, text: str, column: str) -> Decimal:
        """An optional number; an empty cell is zero."""
        if not text or text.isspace():
            return Decimal(0)
        return self.decimal(text, column)

    def count(self, text: str, column: str) -> int:
        """A non-negative whole count (tokens, requests); an empty cell is zero."""
        try:
            value = int(text)
        except ValueError:
            if not text or text.isspace():
                return 0
            dec = self.decimal(text, column)
            if dec != dec.to_integral_value():
                raise RowError(column, text, "a count must be a whole number") from None
            value = int(dec)
        if not 0 <= value < COUNT_LIMIT:
            raise RowError(column, text, "a count must be between 0 and 10^15")
        return value

    def tokens(self, quantity: Decimal, multiplier: int, column: str, text: str) -> int:
        """Whole tokens from a quantity in units of ``multiplier`` tokens (rounded half-even)."""
        n = int((quantity * multiplier).to_integral_value())
        if not 0 <= n < COUNT_LIMIT:
            raise RowError(column, text, "a token count must be between 0 and 10^15")
        return n

    def when(self, text: str, column: str, *, us_slash_dates: bool = False) -> datetime:
        """A timestamp, parsed once per distinct string."""
        try:
            return self._dates[text]
        except KeyError:
            pass
        try:
            value = parse_datetime(text, us_slash_dates=us_slash_dates)
        except ValueError as exc:
            raise RowError(column, text, str(exc)) from None
        if len(self._dates) > 200_000:
            self._dates.clear()
        self._dates[text] = value
        return value

    def currency(self, text: str, column: str) -> str:
        """An ISO 4217 code (FOCUS ``BillingCurrency``, §9.3); upper-cased."""
        code = text.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise RowError(column, text, "currency must be an ISO 4217 code such as USD")
        return code

    def is_ai_service(self, *names: str) -> bool:
        """Whether any of these service names is configured as an AI service to keep."""
        return any(n.strip().lower() in self.ai_services for n in names if n)


def day_bucket(day: datetime) -> tuple[datetime, datetime]:
    """The UTC day ``[midnight, midnight + 1 day)`` containing ``day``."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + DAY


def hour_or_span(start: datetime, end: datetime | None) -> tuple[datetime, datetime]:
    """A row's bucket: its own ``[start, end)`` when both ends are whole hours, else the UTC hour of ``start``.

    Fireworks' billing-metrics rows carry ``start_time == end_time`` (provider-apis.md §8); such
    point rows are summed into the hour they fall in, so a key means the same span in every file.
    """
    if end is not None and end > start and _on_hour(start) and _on_hour(end):
        return start, end
    floor = start.replace(minute=0, second=0, microsecond=0)
    return floor, floor + HOUR


def _on_hour(value: datetime) -> bool:
    return value.minute == 0 and value.second == 0 and value.microsecond == 0


# -- the base class -----------------------------------------------------------------------------


class Importer(ABC):
    """One billing-export format.

    Subclasses set :attr:`name` (also the records' ``kind``), :attr:`columns` (logical column ->
    accepted header spellings, the documented one first) and :attr:`required`, and implement
    :meth:`row_mapper`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    columns: ClassVar[dict[str, tuple[str, ...]]]
    required: ClassVar[tuple[str, ...]]
    #: Groups of logical columns of which at least one must be present.
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def bind(self, header: list[str]) -> Columns:
        """Locate this importer's columns in a header."""
        return Columns(header, self.columns)

    def missing(self, header: list[str]) -> list[str]:
        """Required columns this header lacks, each named with its accepted spellings."""
        cols = self.bind(header)
        out = [" / ".join(self.columns[c]) for c in self.required if not cols.has(c)]
        for group in self.one_of:
            if not any(cols.has(c) for c in group):
                out.append(" or ".join(self.columns[c][0] for c in group))
        return out

    def matches(self, header: list[str]) -> bool:
        """Whether the header has every column this format requires."""
        return not self.missing(header)

    @abstractmethod
    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """A function from one row (with ``''`` appended for absent columns) to a record or None (skipped)."""

    def columnar_mapper(self, cols: Columns, ctx: ImportContext) -> BatchMapper | None:
        """A function from an Arrow batch of the file's cells to its rows, or None (row path only).

        It must map every row exactly as :meth:`row_mapper` does, and raise
        :class:`importers.columnar.ColumnarFallback` for anything it cannot.
        """
        return None

    def map_batch(
        self,
        mapper: RowMapper,
        lines: list[int],
        rows: list[list[str]],
        width: int,
        ctx: ImportContext,
    ) -> tuple[list[UsageRecord], list[int], int]:
        """Map a batch of rows; bad rows become issues.

        Returns:
            The records, the line each came from, and how many rows were out of scope (skipped).
        """
        out: list[UsageRecord] = []
        out_lines: list[int] = []
        skipped = 0
        for i, row in enumerate(rows):
            n = len(row)
            if n != width:
                if n < width or any(cell.strip() for cell in row[width:]):
                    if n == 0 or (n == 1 and not row[0].strip()):
                        continue  # blank line
                    ctx.issue(lines[i], "", "", f"row has {n} fields but the header has {width}")
                    if ctx.full:
                        break
                    continue
                del row[width:]
            row.append("")
            try:
                rec = mapper(row)
            except RowError as exc:
                ctx.issue(lines[i], exc.column, exc.value, exc.rule)
                if ctx.full:
                    break
                continue
            except InvariantError as exc:
                ctx.issue(lines[i], "", "", str(exc))
                if ctx.full:
                    break
                continue
            if rec is None:
                skipped += 1
            else:
                out.append(rec)
                out_lines.append(lines[i])
        return out, out_lines, skipped


__all__ = [
    "BATCH_ROWS",
    "MAX_ISSUES",
    "ArrowColumns",
    "BatchMapper",
    "ColumnBatch",
    "ColumnarFallback",
    "Columns",
    "CsvFile",
    "FileFormatError",
    "ImportContext",
    "ImportIssue",
    "Importer",
    "RowError",
    "day_bucket",
    "hour_or_span",
    "normalize_header",
    "parse_datetime",
    "parse_decimal",
    "slug",
    "sniff_delimiter",
    "token_direction",
    "token_fields",
    "unit_multiplier",
]


#: What an import reads rows from.
TableFile = CsvFile | ParquetFile
