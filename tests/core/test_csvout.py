"""The shared CSV writer: formula-leading text is escaped, numbers stay numbers, our readers undo it."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pandas as pd
import pytest

from collector.core import csvout

HOSTILE = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "-", "+"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_leading_text_is_prefixed_and_reads_back(value):
    escaped = csvout.escape_cell(value)
    assert escaped == "'" + value
    assert csvout.unescape_cell(escaped) == value


@pytest.mark.parametrize("value", ["-1.25", "+3", "-0.0000001", "1e-7", "-4E+2", ".5", "12", "gpt-4o", "", "'quoted"])
def test_numbers_and_harmless_text_are_kept(value):
    assert csvout.escape_cell(value) == value
    assert csvout.unescape_cell(value) == value


def test_writer_escapes_text_cells_only():
    buf = io.StringIO()
    w = csvout.writer(buf)
    w.writerow(["=1+1", Decimal("-1.25"), -3, "-1.25", "@x"])
    (row,) = list(csv.reader(io.StringIO(buf.getvalue())))
    assert row == ["'=1+1", "-1.25", "-3", "-1.25", "'@x"]


def test_frame_to_csv_escapes_and_keeps_missing_values_empty():
    frame = pd.DataFrame({"model": ["=evil()", "gpt-4o", None], "cost": [-1.5, 2.0, float("nan")]})
    rows = list(csv.reader(io.StringIO(csvout.frame_to_csv(frame).decode())))
    assert rows == [["model", "cost"], ["'=evil()", "-1.5"], ["gpt-4o", "2.0"], ["", ""]]


def test_every_written_cell_is_safe_for_spreadsheets():
    text = csvout.to_csv(["a"], [[v] for v in HOSTILE])
    for (cell,) in list(csv.reader(io.StringIO(text, newline="")))[1:]:
        assert cell[0] not in csvout.FORMULA_LEADS
