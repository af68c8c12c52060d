"""``scaled_decimal`` is ``canonical_decimal`` of the scaled value: same value, same exponent, same text."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from collector.core.sqltypes import MONEY_SCALE, QUANTITY_SCALE, canonical_decimal, scaled_decimal

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
