"""Property test: corrupted exports never crash the importer, never half-import, always name the line.

Valid fixture files are corrupted the ways real files break: a column dropped, a number or date
garbled, the file cut short, random bytes inserted. Whatever happens, ``import_file`` returns a
result; a refused file leaves the database exactly as it was; every problem names a line.
"""

import csv
import io

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from collector.core.store import USAGE
from importers.log import IMPORT_FILES
from importers.service import import_file
from tests.importers.conftest import FIXTURES

NAMES = ["focus_ai.csv", "gcp_billing.csv", "aws_cur.csv", "azure_cost.csv", "fireworks.csv", "generic.csv"]
GARBAGE = [
    "abc",
    "1,2,3",
    "NaN",
    "-Infinity",
    "2026-13-45",
    "",
    "-1",
    "1e400",
    "(5)",
    "9" * 30,
    '"',
    "\x00",
    "😀",
    "12/31",
]


def _table(name: str) -> tuple[str, list[list[str]]]:
    text = (FIXTURES / name).read_bytes().decode("utf-8-sig")
    lines = text.splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    delimiter = ";" if name == "azure_cost.csv" else ","
    return delimiter, list(csv.reader(io.StringIO(body), delimiter=delimiter))


def _write(delimiter: str, rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@st.composite
def corrupted(draw):
    name = draw(st.sampled_from(NAMES))
    delimiter, rows = _table(name)
    kind = draw(st.sampled_from(["drop_column", "garble", "truncate", "insert_bytes", "mixed"]))
    if kind in ("drop_column", "mixed"):
        col = draw(st.integers(0, len(rows[0]) - 1))
        rows = [[c for i, c in enumerate(r) if i != col] for r in rows]
    if kind in ("garble", "mixed"):
        for _ in range(draw(st.integers(1, 3))):
            r = draw(st.integers(1, len(rows) - 1))
            c = draw(st.integers(0, len(rows[r]) - 1))
            rows[r][c] = draw(st.one_of(st.sampled_from(GARBAGE), st.text(max_size=12)))
    data = _write(delimiter, rows)
    if kind in ("truncate", "mixed"):
        data = data[: draw(st.integers(0, len(data)))]
    if kind in ("insert_bytes", "mixed"):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    return name, kind, data


def _counts(engine):
    with engine.connect() as conn:
        usage = conn.execute(select(func.count()).select_from(USAGE)).scalar_one()
        imported = conn.execute(
            select(func.count()).select_from(IMPORT_FILES).where(IMPORT_FILES.c.status == "imported")
        ).scalar_one()
    return usage, imported


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=corrupted(), keep_all=st.booleans())
def test_corrupted_files_are_refused_cleanly_or_imported_whole(engine, case, keep_all):
    name, kind, data = case
    before = _counts(engine)
    result = import_file(io.BytesIO(data), name=name, engine=engine, keep_all=keep_all)
    event(f"{kind}: {result.status}")
    after = _counts(engine)
    physical_lines = data.count(b"\n") + data.count(b"\r") + 2
    if result.ok:
        assert result.status in ("imported", "duplicate")
        assert after[0] - before[0] <= result.records
        assert not result.issues
    else:
        assert after == before, "a refused file must not write anything"
        assert 1 <= len(result.issues) <= 50
        for issue in result.issues:
            assert issue.file == name
            assert 1 <= issue.line <= physical_lines
            assert issue.rule


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash(sqlite_engine, data):
    before = _counts(sqlite_engine)
    result = import_file(io.BytesIO(data), name="noise.bin", engine=sqlite_engine)
    if not result.ok:
        assert _counts(sqlite_engine) == before
        assert all(i.line >= 1 for i in result.issues)
