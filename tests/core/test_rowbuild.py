"""The store's C row builder gives exactly what its Python fallback gives (``collector/core/_rowbuild.c``).

Each function is compared with the Python code it replaces on generated records, and a whole
write through each path must leave the same ``usage`` and ``usage_daily`` rows (SQLite and
PostgreSQL, by the ``engine`` fixture).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from collector.core import sqltypes, store
from collector.core.schema import KEY_PARTS, UsageRecord
from collector.core.store import USAGE, USAGE_DAILY, _Fresh, _Writer, upsert_records
from collector.demo.synthetic import GeneratorConfig, generate

_rowbuild = store._rowbuild
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WRITERS = {"sqlite": _Writer(sqlite.dialect()), "postgresql": _Writer(postgresql.psycopg.dialect())}  # type: ignore[attr-defined]

_TEXT = st.sampled_from(["", "a", "x\x1fy", "é", "模型", "model-1", "\x00", "a" * 200])


def _record(hour: int, cost: str | None, quantity: str, unit: str, input_tokens: int = 10, **kw: object) -> UsageRecord:
    start = T0 + timedelta(hours=hour)
    unit = unit or ("images" if Decimal(quantity) else "")  # a quantity needs a unit
    priced = {"basis": "billed", "currency": "USD"} if cost is not None else {}
    return UsageRecord(
        provider="openai",
        source="api",
        kind="tokens",
        bucket_start=start,
        bucket_end=start + timedelta(hours=1),
        input_tokens=input_tokens,
        output_tokens=3,
        requests=1,
        cost=None if cost is None else Decimal(cost),
        quantity=Decimal(quantity),
        quantity_unit=unit,
        **priced,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


RECORDS = st.lists(
    st.builds(
        _record,
        hour=st.integers(min_value=-(10**5), max_value=10**5),
        cost=st.one_of(st.none(), st.sampled_from(["0", "1.5", "-2.25", "0.000000001", "123456.789012345"])),
        quantity=st.sampled_from(["0", "3", "1.125", "-4"]),
        unit=st.sampled_from(["", "images", "bytes"]),
        account=_TEXT,
        project=_TEXT,
        api_key_id=_TEXT,
        user_id=_TEXT,
        model=_TEXT,
        model_raw=_TEXT,
        service_tier=_TEXT,
        batch=st.booleans(),
        line_item=_TEXT,
        variant=_TEXT,
        team=_TEXT,
        input_tokens=st.integers(min_value=0, max_value=2**62),
    ),
    max_size=40,
)


def test_the_extension_is_built():
    """The install compiles it (gcc is on every machine this runs on); without it the store is ~1.4x slower."""
    assert _rowbuild is not None, "collector/core/_rowbuild.c was not built: is a C compiler installed?"


needs_extension = pytest.mark.skipif(_rowbuild is None, reason="the C row builder is not built")


def _python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_rowbuild", None)
    monkeypatch.setattr(sqltypes, "_rowbuild", None)


@needs_extension
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS, computed=st.sets(st.integers(min_value=0, max_value=39)))
def test_rows_equal_the_python_rows_on_both_dialects(records, computed):
    """Same tuples, keys included (computed or cached), for SQLite's and PostgreSQL's column orders."""
    fresh = [replace(r) for r in records]
    for i in computed & set(range(len(fresh))):
        fresh[i].record_key  # noqa: B018  (computes and keeps the key, as the ingest path does)
    for writer in WRITERS.values():
        native_touched: set[object] = set()
        native = writer.rows(fresh, NOW, native_touched)
        python_touched: set[object] = set()
        with pytest.MonkeyPatch.context() as mp:
            _python(mp)
            python = writer.rows(fresh, NOW, python_touched)
        assert native == python
        assert native_touched == python_touched
        at = writer.columns.index("record_key")
        assert [row[at] for row in native] == [r.record_key for r in records]


@needs_extension
def test_keys_join_the_same_fields_as_the_property():
    """``KEY_PARTS`` names the fields ``record_key`` hashes: a change of one changes the key."""
    base = _record(5, "1", "0", "")
    writer = WRITERS["sqlite"]
    at = writer.columns.index("record_key")
    for name in {p.lstrip("?") for p in KEY_PARTS} - {"_start_ts", "_end_ts", "batch"}:
        other = replace(base, **{name: "csv" if name == "source" else "changed"})
        (row,) = writer.rows([other], NOW, set())
        assert row[at] == other.record_key != base.record_key, name
    joined = "\x1f".join(
        ["openai", "", "api", "tokens", str(base._start_ts), str(base._end_ts), *[""] * 5, "0", "", "", ""]
    )
    assert writer.rows([base], NOW, set())[0][at] == hashlib.blake2b(joined.encode(), digest_size=16).digest()


@needs_extension
def test_rows_refuse_what_is_not_a_record():
    writer = WRITERS["sqlite"]
    with pytest.raises(TypeError, match="expected"):
        _rowbuild.rows([object()], UsageRecord, writer.fields, KEY_PARTS, "_key", (), ())
    with pytest.raises(ValueError, match="column"):
        _rowbuild.rows([_record(1, None, "0", "")], UsageRecord, ("provider",), KEY_PARTS, "_key", ([],), ())
    with pytest.raises(TypeError, match="slot"):
        _rowbuild.rows([], UsageRecord, ("describe",), KEY_PARTS, "_key", (), ())
    with pytest.raises(UnicodeEncodeError):  # as ``str.encode`` of the joined key raises
        writer.rows([_record(1, None, "0", "", team="\ud800")], NOW, set())


@needs_extension
@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=600), st.integers(min_value=0, max_value=400).map(lambda n: b"\x1f" * n)))
def test_the_key_hash_is_hashlibs_blake2b(data):
    """The builder's own BLAKE2b-128 equals ``hashlib``'s, for every length around the 128-byte block."""
    assert _rowbuild.blake2b_16(data) == hashlib.blake2b(data, digest_size=16).digest()


@needs_extension
@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.binary(max_size=300), max_size=40), cut=st.integers(min_value=0, max_value=40))
def test_column_keys_hash_each_value_of_an_arrow_array(values, cut):
    """Keys from an Arrow binary array's buffers (sliced or not, 32- or 64-bit offsets) equal hashlib's."""
    import pyarrow as pa

    expected = [hashlib.blake2b(v, digest_size=16).digest() for v in values]
    for kind, wide in ((pa.binary(), False), (pa.large_binary(), True)):
        array = pa.array(values, kind)
        part = array.slice(min(cut, len(values)))
        _, offsets, data = part.buffers()
        got = _rowbuild.blake2b_16_column(offsets, data if data is not None else b"", part.offset, len(part), wide)
        assert got == expected[min(cut, len(values)) :]
    with pytest.raises(ValueError, match="shorter"):
        _rowbuild.blake2b_16_column(b"\0" * 8, b"", 0, 5, False)
    with pytest.raises(ValueError, match="outside"):
        _rowbuild.blake2b_16_column((0).to_bytes(4, "little") + (9).to_bytes(4, "little"), b"abc", 0, 1, False)


@needs_extension
def test_the_key_hash_at_block_edges():
    for n in (0, 1, 127, 128, 129, 255, 256, 257, 1000, 5000):
        data = bytes(range(256)) * (n // 256 + 1)
        assert _rowbuild.blake2b_16(data[:n]) == hashlib.blake2b(data[:n], digest_size=16).digest(), n


AMOUNTS = st.one_of(
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=12, min_value=-(10**9), max_value=10**9),
    st.builds(lambda c, e: Decimal(c).scaleb(e), st.integers(-(10**19), 10**19), st.integers(-30, 12)),
    st.sampled_from([Decimal("0.5E-10"), Decimal("1.5E-10"), Decimal("2.5E-10"), Decimal("-0.5E-10"), Decimal("-0")]),
    st.integers(-(10**9), 10**9),
)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(values=st.lists(AMOUNTS, max_size=30), scale=st.sampled_from([sqltypes.MONEY_SCALE, sqltypes.QUANTITY_SCALE]))
def test_scaled_amounts_equal_the_per_value_binding(values, scale):
    """Money and quantities parsed from their text equal ``scaleb``/``to_integral_value``/``int`` (half-even)."""
    one = sqltypes.ScaledDecimal(scale).fast_bind(sqlite.dialect())
    assert one is not None
    expected = []
    for value in values:
        try:
            expected.append(one(value))
        except Exception as exc:  # what the per-value form raises, the C form must raise too
            expected.append(type(exc))
    try:
        got = _rowbuild.scaled(values, scale, Decimal, one)
    except Exception as exc:
        assert type(exc) in expected
    else:
        assert got == expected


@needs_extension
def test_scaled_sends_what_it_does_not_parse_to_the_fallback():
    one = sqltypes.ScaledDecimal(10).fast_bind(sqlite.dialect())
    with pytest.raises(ValueError):  # NaN: int() refuses it, as the per-value form does
        _rowbuild.scaled([Decimal("NaN")], 10, Decimal, one)
    with pytest.raises(TypeError, match="float"):
        _rowbuild.scaled([1.5], 10, Decimal, one)
    many = Decimal("1234567890.123456789012345678")  # 28 digits: rounded by the context first, as scaleb does
    assert _rowbuild.scaled([many, 7], 10, Decimal, one) == [one(many), 70_000_000_000]


@needs_extension
@pytest.mark.parametrize(("rows", "per"), [(0, 3), (2, 3), (3, 3), (10, 3), (250, 100), (7, 1)])
def test_flatten_equals_chaining_the_rows(rows, per):
    params = [tuple(range(i, i + 4)) for i in range(rows)]
    expected = [[v for row in params[i : i + per] for v in row] for i in range(0, rows - rows % per, per)]
    assert _rowbuild.flatten(params, per) == expected
    with pytest.raises(ValueError):
        _rowbuild.flatten(params, 0)


@needs_extension
@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=3), st.text(max_size=2)), max_size=12),
    per=st.integers(1, 4),
    keep=st.lists(st.integers(0, 2), max_size=3).map(tuple),
    lead=st.lists(st.integers(), max_size=2).map(tuple),
)
def test_flatten_keeps_positions_leads_each_run_and_copies_blobs(rows, per, keep, lead):
    """Each run: ``lead``, then the kept items of its rows; bytes at a blob position become equal bytearrays."""
    runs = _rowbuild.flatten(rows, per, keep, lead, (1,))
    starts = range(0, len(rows) - len(rows) % per, per)
    expected = [[*lead, *(row[k] for row in rows[i : i + per] for k in keep)] for i in starts]
    assert runs == expected  # bytearray(b"x") == b"x"
    for run in runs:
        blobs = [v for v in run[len(lead) :] if isinstance(v, bytes | bytearray)]
        assert all(type(v) is bytearray for v in blobs)
    with pytest.raises(IndexError):
        _rowbuild.flatten([(1, 2)], 1, (2,))
    with pytest.raises(ValueError):
        _rowbuild.flatten([(1, 2)], 1, None, (), (64,))


@needs_extension
def test_shared_columns_are_the_same_value_in_every_row():
    """Identical objects, or equal str, int and bytes of one type; never a float merely equal, nor 1 and True."""
    big = 2**70
    rows = [("csv", 0, b"k", 1.5, None, True, big, "a"), ("csv", 0, b"k", 1.5, None, True, big + 0, "b")]
    rows.append(tuple("".join(["cs", "v"]) if i == 0 else v for i, v in enumerate(rows[0])))
    assert _rowbuild.shared_columns(rows) == (0, 1, 2, 3, 4, 5, 6)
    assert _rowbuild.shared_columns([(0.0, 1), (-0.0, 1)]) == (1,)
    assert _rowbuild.shared_columns([(1, 1), (True, 1)]) == (1,)
    assert _rowbuild.shared_columns([(1, 2), (1,)]) == ()  # rows of different lengths share nothing
    assert _rowbuild.shared_columns([]) == ()
    with pytest.raises(TypeError):
        _rowbuild.shared_columns([[1, 2]])


@needs_extension
def test_a_key_repeated_inside_one_multi_row_statement_keeps_the_last_values(engine, monkeypatch):
    """Rows that share every column but the key and tokens go through SQLite's statement that binds
    the shared columns once; a key repeated in the same statement and in the next one ends with its
    last row, exactly as through the Python path."""
    base = [_record(h % 48, "1.5", "0", "", input_tokens=h, project=f"p{h}") for h in range(300)]
    for r in base:
        assert (r.source, r.provider, r.cost) == ("api", "openai", Decimal("1.5"))
    stream = [*base[:50], replace(base[10], output_tokens=91), *base[50:150], replace(base[10], output_tokens=92)]
    stream += base[150:]
    results = []
    for python in (False, True):
        if python:
            _python(monkeypatch)
        _clear(engine)
        upsert_records(engine, stream[:5], now=NOW)  # an old slice: the rest goes through the upsert too
        writer = store._writer(engine.dialect)
        writer.shared_sql.clear()
        result = upsert_records(engine, stream, now=NOW, batch_size=len(stream))
        results.append((result.records, result.changed, _stored(engine)))
        if engine.dialect.name == "sqlite":  # the C path bound shared columns once, in the upsert and DO NOTHING
            assert {new for _, new in writer.shared_sql} == (set() if python else {False, True})
        with engine.connect() as conn:
            out = conn.execute(select(USAGE.c.output_tokens).where(USAGE.c.record_key == base[10].record_key)).scalar()
        assert out == 92
    assert results[0] == results[1]
    assert len(results[0][2][0]) == 300


@needs_extension
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS)
def test_group_sums_equal_the_python_grouping(records):
    """Per (day, dimensions): the measures' sums, cost skipping unpriced rows, rows and rows priced."""
    writer = WRITERS["sqlite"]
    rows = writer.rows(records, NOW, set())
    fresh = _Fresh(None, writer)
    start_at, dims_at, measures_at = fresh.native_columns
    native = _rowbuild.group_sums(rows, start_at, dims_at, measures_at, fresh.cost_at, 86400)
    python = fresh._batch_sums(rows)
    assert native == python


@needs_extension
def test_group_sums_floor_days_before_the_epoch():
    rows = [(-1, "a", 2, None), (-86400, "a", 3, 5), (86399, "a", 1, 1)]
    sums = _rowbuild.group_sums(rows, 0, (1,), (2, 3), 1, 86400)
    assert sums == {(-86400, ("a",)): [5, 5, 2, 1], (0, ("a",)): [1, 1, 1, 1]}


@needs_extension
def test_group_sums_past_64_bits_and_into_a_running_total():
    """Sums leave 64-bit accumulators exactly (big values, overflowing totals) and add to ``into``'s lists."""
    big = 2**63 - 5
    rows = [(0, "a", big, 1), (10, "a", big, None), (20, "a", 2**70, 2), (30, "b", -big, 3)]
    into = {(0, ("a",)): [1, 1, 1, 1]}
    out = _rowbuild.group_sums(rows, 0, (1,), (2, 3), 1, 86400, None, into)
    assert out is into
    assert into == {(0, ("a",)): [1 + 2 * big + 2**70, 1 + 3, 1 + 3, 1 + 2], (0, ("b",)): [-big, 3, 1, 1]}
    with pytest.raises(TypeError, match="lists"):
        _rowbuild.group_sums(rows, 0, (1,), (2, 3), 1, 86400, None, {(0, ("a",)): (0, 0, 0, 0)})


def _stored(engine):
    daily = [c for c in USAGE_DAILY.c if c.name != "id"]
    with engine.connect() as conn:
        usage = sorted(tuple(r) for r in conn.execute(select(USAGE)).all())
        rollup = sorted(tuple(r) for r in conn.execute(select(*daily)).all())
    return usage, rollup


def _clear(engine):
    with engine.begin() as conn:
        conn.execute(USAGE.delete())
        conn.execute(USAGE_DAILY.delete())


@needs_extension
def test_a_write_through_either_path_stores_the_same_rows(engine, monkeypatch):
    """Summed first writes, repeated keys, old slices, unpriced rows and a level unit, through both paths."""
    generated = list(generate(GeneratorConfig(days=4, rows_per_hour=30, seed=11), limit=2500))
    stream = []
    for i, r in enumerate(generated):
        if i % 7 == 0:
            r = replace(r, cost=None, basis="unpriced", currency="", price_version="")
        elif i % 11 == 0:
            r = replace(r, quantity=Decimal(1000 + i), quantity_unit="bytes")
        stream.append(r)
    stream += [replace(stream[3], output_tokens=stream[3].output_tokens + 9), stream[40]]
    old = stream[::9]
    results = []
    for python in (False, True):
        if python:
            _python(monkeypatch)
        _clear(engine)
        upsert_records(engine, old, now=NOW, batch_size=300)
        result = upsert_records(engine, stream, now=NOW, batch_size=450)
        results.append((result.records, result.changed, sorted(result.days), _stored(engine)))
    assert results[0] == results[1]
    assert len(results[0][3][0]) == len({r.record_key for r in stream})
