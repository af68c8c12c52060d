"""The one CSV writer for every CSV the product writes (reports, exports, chargeback, downloads).

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets ("CSV injection"): a model name, project or
team taken from a provider, a billing file or the proxy could run ``=HYPERLINK(...)`` or
``=cmd|...`` in a finance colleague's spreadsheet. OWASP's recommendation is to prefix such a
cell with a single quote, which spreadsheets show as text and hide; this module does that for
every text cell.

Numbers stay numbers: a cell that is a plain decimal number (``-1.25``, ``+3``, ``1e-7``) is
written as is, because negative money (credits, refunds) is data, not a formula, and a
spreadsheet must still add it up. Only cells that are *not* valid numbers are escaped, and
non-text values (``int``, ``Decimal``) are never touched. Parquet exports keep raw values
(a Parquet cell is typed data, never evaluated).

The product's own readers (the FOCUS importer re-reading an export, the team-rules file) call
:func:`unescape_cell`, so an export still re-imports to the same values.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import IO, Any

#: First characters a spreadsheet evaluates (OWASP "CSV Injection").
FORMULA_LEADS = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def escape_cell(value: str) -> str:
    """``value`` safe to open in a spreadsheet: a formula-leading non-number gets a ``'`` prefix."""
    if value and value[0] in FORMULA_LEADS and _NUMBER.fullmatch(value) is None:
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """The value :func:`escape_cell` was given (reading our own files back)."""
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_LEADS:
        return value[1:]
    return value


class SafeWriter:
    """``csv.writer`` (newline line ends) escaping every text cell with :func:`escape_cell`."""

    __slots__ = ("_quoted", "_writer")

    def __init__(self, fp: IO[str]) -> None:
        self._writer = csv.writer(fp, lineterminator="\n")
        # With "\n" line ends, csv quotes cells holding "\n" but not a lone "\r", which readers
        # then take for a line end: such (rare) rows are written with every cell quoted.
        self._quoted = csv.writer(fp, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: Iterable[Any]) -> None:
        """Write one row; ``str`` cells are escaped, other values written as ``csv`` does."""
        cells = [escape_cell(c) if type(c) is str else c for c in row]
        if any(type(c) is str and "\r" in c for c in cells):
            self._quoted.writerow(cells)
        else:
            self._writer.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write several rows."""
        for row in rows:
            self.writerow(row)


def writer(fp: IO[str]) -> SafeWriter:
    """A :class:`SafeWriter` over a text file object."""
    return SafeWriter(fp)


def to_csv(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> str:
    """A whole CSV document as text: the header, then the rows, every cell escaped."""
    buf = io.StringIO()
    out = SafeWriter(buf)
    out.writerow(header)
    out.writerows(rows)
    return buf.getvalue()


def frame_to_csv(frame: Any) -> bytes:
    """A pandas DataFrame as UTF-8 CSV bytes (the dashboard's downloads), cells escaped.

    Values are written as text the way pandas shows them (``None``/NaN as empty).
    """
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    rows = ([_text(v, pd.isna) for v in row] for row in frame.itertuples(index=False))
    return to_csv(columns, rows).encode()


def _text(value: Any, isna: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        if isna(value):
            return ""
    except (TypeError, ValueError):  # a list or array in a cell: not a missing value
        pass
    return str(value)


__all__ = ["FORMULA_LEADS", "SafeWriter", "escape_cell", "frame_to_csv", "to_csv", "unescape_cell", "writer"]
