"""``scaled_decimal`` is ``canonical_decimal`` of the scaled value; the bulk write's converters bind the same values."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from collector.core.sqltypes import MONEY_SCALE, QUANTITY_SCALE, ScaledDecimal, canonical_decimal, scaled_decimal

_SQLITE = sqlite.dialect()

#: SQLite's 64-bit range, and the two halves' recombined sums beyond it.
_INTS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(10**12), max_value=10**12).map(lambda v: v * 10 ** (v % 11)),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@given(value=_INTS, scale=st.sampled_from([MONEY_SCALE, QUANTITY_SCALE, 0, 2]))
def test_scaled_decimal_equals_the_canonical_form(value: int, scale: int) -> None:
    expected = canonical_decimal(Decimal(value).scaleb(-scale))
    got = scaled_decimal(value, scale)
    assert got == expected
    assert str(got) == str(expected)
    assert got.as_tuple() == expected.as_tuple()


def test_examples() -> None:
    assert str(scaled_decimal(0, MONEY_SCALE)) == "0"
    assert str(scaled_decimal(15_000_000_000, MONEY_SCALE)) == "1.5"
    assert str(scaled_decimal(500_000_000_000, MONEY_SCALE)) == "50"
    assert str(scaled_decimal(-1_230, MONEY_SCALE)) == "-1.23E-7"


_AMOUNTS = st.one_of(
    st.decimals(min_value=-900_000_000, max_value=900_000_000, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-1, max_value=1, places=14),  # more places than the scale: rounded half-even
    st.sampled_from([Decimal(0), Decimal("-0"), Decimal("0E-12"), Decimal("2.50000000005E-1")]),
)
_COLUMNS = st.one_of(
    st.lists(_AMOUNTS, max_size=30),  # every value a Decimal: the C-level path
    st.lists(st.one_of(_AMOUNTS, st.none()), max_size=30),  # unpriced rows among priced ones
    st.lists(st.one_of(_AMOUNTS, st.none(), st.integers(min_value=-(10**8), max_value=10**8)), max_size=30),
    st.lists(st.sampled_from([Decimal(0), Decimal("0.000")]), max_size=30),  # quantities of token rows
)


@given(values=_COLUMNS, scale=st.sampled_from([MONEY_SCALE, QUANTITY_SCALE]))
def test_column_conversion_equals_the_per_value_one(values: list, scale: int) -> None:
    """A bulk write's column converter binds exactly what the per-value converter binds."""
    column_type = ScaledDecimal(scale)
    one = column_type.fast_bind(_SQLITE)
    many = column_type.fast_bind_column(_SQLITE)
    assert one is not None and many is not None
    expected = [one(v) for v in values]
    got = many(list(values))
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_column_conversion_is_only_for_sqlite() -> None:
    assert ScaledDecimal(MONEY_SCALE).fast_bind_column(postgresql.dialect()) is None
