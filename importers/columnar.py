"""Read a CSV export column by column with ``pyarrow.csv``, streaming record batches.

The row reader (:class:`importers.base.CsvFile`) decodes, splits and validates every cell in
Python, which costs more than the whole database write of the row. This reader lets Arrow's C++
parser split the file into batches of string columns, and importers that can map a batch
column-wise (:meth:`importers.base.Importer.columnar_mapper`) work on those columns: each
distinct string (a timestamp, a SKU, a currency) goes through the same Python function the row
path calls, once, and the per-row work left is a few C-level array operations.

It reads only files it reads exactly as the row path would: UTF-8 text, no blank lines but
trailing ones, no lone carriage returns, no NUL characters, every row as wide as the header,
lines within the length limit. Anything else, and any cell the columnar mapper cannot prove it
maps exactly as the row mapper does (a bad value, an unusual number), raises
:class:`ColumnarFallback`; the import then starts again on the row path, which reports the
file's real line numbers (quoted newlines included), collects up to 50 problems, and writes
nothing from the columnar attempt (the attempt's transaction is rolled back).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from importers.base import BATCH_ROWS, ColumnarFallback, CsvFile, _Bounded

#: Encodings Arrow reads natively (the BOM of ``utf-8-sig`` sits before the header, skipped here).
ENCODINGS = ("utf-8", "utf-8-sig")
#: Bytes Arrow parses per block (its read-ahead holds a few: memory grows with it); a row longer
#: than a block makes Arrow fail, and the row path then reads the file.
BLOCK_BYTES = 512 * 1024


def _lean_memory_pool() -> None:
    """Make jemalloc Arrow's allocator in this process, unless ``ARROW_DEFAULT_MEMORY_POOL`` chose one.

    Arrow's default (mimalloc) keeps more of what a batch freed for later batches: importing the
    1M-row bench file peaked about 22 MB higher with it (291 against 270 MB), at the same CPU
    time. Wheels built without jemalloc keep their default.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    with contextlib.suppress(NotImplementedError, pa.ArrowNotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_lean_memory_pool()


class _Watched(io.RawIOBase):
    """The raw bytes after the header, checked for what Arrow reads differently from ``csv.reader``.

    ``csv.reader`` yields an empty row for a blank line (counted in ``rows_read``), and splits
    lines on a lone carriage return too; Arrow skips blank lines silently. Blank lines at the very
    end of a file are counted here (:attr:`trailing_blanks`); a blank line anywhere else, or a lone
    carriage return, raises :class:`ColumnarFallback` (through Arrow, which re-raises it on read).
    """

    def __init__(self, stream: IO[bytes], max_line: int) -> None:
        self.stream = stream
        #: ``\n`` in the current run of line-break bytes (the header's own ends the first run).
        self.run = 1
        self.pending_cr = False
        #: Lines are measured only under a limit smaller than a block (Arrow fails on longer rows).
        self.max_line = max_line if 0 < max_line < BLOCK_BYTES else 0
        self.line = 0
        self.lock = threading.Lock()
        self.stopped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self.lock:  # Arrow reads from its own thread; stop() waits for a read in progress
            if self.stopped:
                return 0
            data = self.stream.read(len(buffer))
        if data:
            self._check(data)
        buffer[: len(data)] = data
        return len(data)

    def stop(self) -> None:
        """Make every later read an end of file, once no read is in progress.

        Arrow's read-ahead thread may still be reading when the batches are abandoned; the row
        path then reads the same file object, which must not move under it.
        """
        with self.lock:
            self.stopped = True

    def _check(self, data: bytes) -> None:
        """Raise :class:`ColumnarFallback` on what Arrow would read differently (see the class).

        Everything is counted from one split of the block on line feeds and single-byte searches:
        Python's two-byte substring search (CR LF, LF LF) steps through a block a few bytes at a
        time, and cost about 1 s of CPU for the 450 MB bench file.
        """
        if b"\x00" in data:
            raise ColumnarFallback("NUL character")
        pieces = data.split(b"\n")
        if self.max_line:
            open_line = self.line + len(pieces[0])  # the line the previous read left open
            self.line = open_line if len(pieces) == 1 else len(pieces[-1])
            # bytes, at least the characters the row path counts
            if max(open_line, max(map(len, pieces[1:]), default=0)) >= self.max_line:
                raise ColumnarFallback("a line may pass the length limit")
        if self.pending_cr or b"\r" in data:  # memchr: a file with LF endings pays nothing more
            crlf = sum(map(bytes.endswith, pieces[:-1], repeat(b"\r")))  # each "\r\n" ends a piece with "\r"
            lone = data.count(b"\r") - crlf
            if data.endswith(b"\r"):
                lone -= 1
            if self.pending_cr and not data.startswith(b"\n"):
                lone += 1
            self.pending_cr = data.endswith(b"\r")
            if lone:
                raise ColumnarFallback("a lone carriage return")
        last = len(pieces) - 1  # the last piece with a character other than line-break bytes
        while last >= 0 and not pieces[last].rstrip(b"\r"):
            last -= 1
        if last < 0:  # nothing but line breaks
            self.run += len(pieces) - 1
            return
        lead = len(data) - len(data.lstrip(b"\r\n"))
        inner = pieces[1:last]  # between two line breaks of the block's text: a blank line if empty
        if self.run + data[:lead].count(b"\n") > 1 or b"" in inner or b"\r" in inner:
            raise ColumnarFallback("a blank line inside the file")
        self.run = len(pieces) - 1 - last

    @property
    def trailing_blanks(self) -> int:
        """Blank lines after the last row (each an empty row to ``csv.reader``)."""
        return max(self.run - 1, 0)


class ColumnarCsv:
    """A CSV file already opened by :class:`CsvFile`, read again as Arrow record batches.

    Args:
        csv_file: the opened file (its header, delimiter, encoding and limits are reused).
        fp: the same binary file object.

    Raises:
        ColumnarFallback: the file's encoding or the lines before its header are not read
            the same way by Arrow.
    """

    def __init__(self, csv_file: CsvFile, fp: IO[bytes]) -> None:
        if csv_file.encoding not in ENCODINGS:
            raise ColumnarFallback(f"encoding {csv_file.encoding}")
        self.file = csv_file
        self.fp = fp
        self.width = len(csv_file.header)
        #: Rows that ``csv.reader`` yields besides data rows (whitespace-only and trailing blank lines).
        self.blank_rows = 0
        self._watched: _Watched | None = None

    def close(self) -> None:
        """Stop Arrow reading the file object (before anything else reads it again)."""
        if self._watched is not None:
            self._watched.stop()

    def _stream(self) -> tuple[_Watched, int]:
        """The bytes after the header line, and the number of cells of the header line."""
        fp = self.fp
        fp.seek(0)
        raw: IO[bytes] = cast(IO[bytes], gzip.GzipFile(fileobj=fp, mode="rb")) if self.file.gzipped else fp
        bounded = io.BufferedReader(_Bounded(raw, self.file.limits.max_bytes), 1 << 20)
        line = b""
        for _ in range(self.file.header_line):
            line = bounded.readline()
            if b"\r" in line[:-2] or (line.endswith(b"\r") and not line.endswith(b"\r\n")):
                raise ColumnarFallback("a carriage return before the end of the header")
        text = line.decode("utf-8-sig")
        cells = next(csv.reader([text], delimiter=self.file.delimiter))
        return _Watched(cast(IO[bytes], bounded), self.file.limits.max_line), len(cells)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Record batches of string columns ``c0 .. cN`` (one per header cell), empty cells ``''``.

        Raises:
            ColumnarFallback: on anything Arrow parses differently from the row path, or cannot parse.
        """
        try:
            watched, cells = self._stream()
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ColumnarFallback(str(exc)) from None
        self._watched = watched
        if cells < self.width:
            raise ColumnarFallback("header cells")
        names = [f"c{i}" for i in range(cells)]
        blanks = [0]

        def invalid(row: Any) -> str:
            if row.text.strip():
                return "error"
            blanks[0] += 1
            return "skip"

        try:
            reader = pa_csv.open_csv(
                cast(Any, watched),
                read_options=pa_csv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
                parse_options=pa_csv.ParseOptions(
                    delimiter=self.file.delimiter, newlines_in_values=True, invalid_row_handler=invalid
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
                ),
            )
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                self._check(batch, cells)
                pending.append(batch)
                rows += batch.num_rows
                if rows >= BATCH_ROWS:
                    yield _combined(pending)
                    pending, rows = [], 0
            if pending:
                yield _combined(pending)
        except (pa.ArrowException, OSError, EOFError, ValueError, zlib.error) as exc:
            raise ColumnarFallback(str(exc)) from None
        finally:
            watched.stop()
        self.blank_rows = blanks[0] + watched.trailing_blanks

    def _check(self, batch: pa.RecordBatch, cells: int) -> None:
        """Refuse cells past the header's names (Excel pads rows; the row path drops blank ones)."""
        for column in batch.columns[self.width : cells]:
            if pc.max(pc.binary_length(column)).as_py():
                raise ColumnarFallback("cells beyond the header")


def _combined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of several.

    Arrow's blocks are small to keep its read-ahead small; a mapped batch costs a fixed number of
    array operations, so fewer, larger ones are cheaper.
    """
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


# -- mapping columns through per-value functions -------------------------------------------------


def distinct(columns: Sequence[pa.Array]) -> tuple[pa.Array, list[tuple[str, ...]]]:
    """Each row's index into the list of distinct value combinations of ``columns``.

    Several string columns are joined with NUL, which no cell holds (the reader refuses it), and
    encoded once: three Arrow calls instead of eight per column. Each call gives up the GIL and
    must take it back from the thread writing the previous batch, so their number, more than
    their work, set this step's time. Should a value hold a NUL after all (a column not read
    from the file), its combination splits into too many parts and the columns are encoded one
    by one instead.

    Returns:
        ``(indices, combos)``: an int array (one per row) and the distinct tuples it points into.
    """
    if len(columns) > 1 and all(pa.types.is_string(c.type) and not c.null_count for c in columns):
        joined = pc.dictionary_encode(pc.binary_join_element_wise(*columns, "\x00"))
        split = [tuple(v.split("\x00")) for v in joined.dictionary.to_pylist()]
        if all(len(combo) == len(columns) for combo in split):
            return joined.indices, split
    encoded = pc.dictionary_encode(columns[0])
    indices = encoded.indices
    combos: list[tuple[str, ...]] = [(v,) for v in encoded.dictionary.to_pylist()]
    for column in columns[1:]:
        part = pc.dictionary_encode(column)
        size = len(part.dictionary)
        values = part.dictionary.to_pylist()
        code = pc.add(pc.multiply(pc.cast(indices, pa.int64()), size), pc.cast(part.indices, pa.int64()))
        joined = pc.dictionary_encode(code)
        indices = joined.indices
        combos = [(*combos[c // size], values[c % size]) for c in joined.dictionary.to_pylist()]
    return indices, combos


def per_row(indices: pa.Array, values: list[Any]) -> list[Any]:
    """``values[i]`` for each row's index ``i`` (shared objects, no per-row allocation)."""
    return [values[i] for i in indices.to_pylist()]


def mapped(columns: Sequence[pa.Array], fn: Callable[..., Any]) -> tuple[pa.Array, list[Any]]:
    """``fn`` applied once per distinct combination: ``(row indices, results)``."""
    indices, combos = distinct(columns)
    return indices, [fn(*combo) for combo in combos]


__all__ = ["ColumnarCsv", "ColumnarFallback", "distinct", "mapped", "per_row"]
