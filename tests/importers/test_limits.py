"""Hostile files are bounded: decompressed bytes, line length and rows, refused with the file and limit named."""

from __future__ import annotations

import gzip
import io
import tracemalloc

import pytest

from collector.core.settings import Settings
from importers.service import import_file

HEADER = b"date,provider,model,input_tokens,output_tokens\n"
ROW = b"2026-10-01,openai,gpt-4o,10,2\n"


def gz(*parts: bytes, repeat_last: int = 1) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as out:
        for part in parts[:-1]:
            out.write(part)
        for _ in range(repeat_last):
            out.write(parts[-1])
    return buf.getvalue()


@pytest.fixture(scope="module")
def one_huge_line() -> bytes:
    """About 300 KB of gzip holding a 300 MB line with no line end."""
    return gz(HEADER, b"2026-10-01,openai,", b"x" * (1 << 20), repeat_last=300)


def dry_run(data: bytes, name: str, **limits: int):
    return import_file(io.BytesIO(data), dry_run=True, name=name, settings=Settings(**limits), who="t")


def test_one_endless_line_is_refused_without_reading_it_into_memory(one_huge_line):
    assert len(one_huge_line) < 2 << 20
    tracemalloc.start()
    try:
        result = dry_run(one_huge_line, "bomb.csv.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status == "failed"
    (issue,) = result.issues
    assert issue.file == "bomb.csv.gz" and issue.line == 2
    assert "line longer than 1,048,576 characters" in issue.rule and "LLM_USAGE_IMPORT_MAX_LINE_LENGTH" in issue.rule
    assert peak < 64 << 20, f"peak {peak / 1e6:.0f} MB"


def test_decompressed_bytes_are_capped(one_huge_line):
    result = dry_run(one_huge_line, "big.csv.gz", import_max_bytes=5 << 20, import_max_line_length=0)
    assert result.status == "failed"
    assert "more than 5,242,880 bytes once decompressed" in str(result.issues[0])
    assert "LLM_USAGE_IMPORT_MAX_BYTES" in result.issues[0].rule and result.issues[0].file == "big.csv.gz"


@pytest.mark.parametrize("rows", [5000, 12_345])
def test_rows_past_the_limit_refuse_the_file_at_the_first_row_too_many(rows):
    data = gz(HEADER, ROW, repeat_last=rows + 1)
    result = dry_run(data, "many.csv.gz", import_max_rows=rows)
    assert result.status == "failed"
    (issue,) = result.issues
    assert issue.line == rows + 2  # header on line 1, row N+1 on line N+2
    assert f"more than {rows:,} data rows" in issue.rule and "LLM_USAGE_IMPORT_MAX_ROWS" in issue.rule
    exact = dry_run(gz(HEADER, ROW, repeat_last=rows), "exact.csv.gz", import_max_rows=rows)
    assert exact.status == "dry_run" and exact.rows_read == rows


def test_millions_of_tiny_rows_stop_at_the_limit():
    data = gz(HEADER, ROW, repeat_last=2_000_000)  # ~60 MB of CSV in well under 1 MB of gzip
    assert len(data) < 1 << 20
    result = dry_run(data, "tiny-rows.csv.gz", import_max_rows=20_000)
    assert result.status == "failed" and "more than 20,000 data rows" in result.issues[0].rule
