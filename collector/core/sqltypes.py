"""Column types that keep money exact and time in UTC on both SQLite and PostgreSQL.

SQLite has no decimal type: a ``NUMERIC`` column there silently stores a float, which breaks
design rule 3 (a float never touches money). So on SQLite a :class:`ScaledDecimal` is a 64-bit
integer count of ``10**-scale`` units, and SQL ``SUM`` over it stays exact; on PostgreSQL it is a
real ``NUMERIC(38, scale)``. Either way Python sees :class:`~decimal.Decimal`.

:class:`UTCDateTime` is ``TIMESTAMPTZ`` on PostgreSQL and integer epoch seconds on SQLite, so
bucket arithmetic (hour, day) is integer division there and comparisons never depend on string
formats. Naive datetimes are rejected on the way in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from itertools import compress, count, repeat
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric, func, literal, type_coerce
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from collector.core.native import rowbuild as _rowbuild

MONEY_SCALE = 10
QUANTITY_SCALE = 6
#: The largest amount one usage row may carry (money in its currency's major units). Scaled by
#: 10**10 it still fits SQLite's signed 64-bit integers (up to about 9.22e8), so binding never
#: overflows; sums over many rows are exact through :func:`exact_sum` on any volume.
MAX_MONEY = Decimal(900_000_000)
#: Likewise for quantities (scaled by 10**6): about 9.2 TB stored, 9.2e12 images or seconds.
MAX_QUANTITY = Decimal(9_000_000_000_000)
_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1


def canonical_decimal(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (``10`` stays ``10``)."""
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return value


_ZERO = Decimal(0)


def scaled_decimal(value: int, scale: int) -> Decimal:
    """``canonical_decimal(Decimal(value).scaleb(-scale))``, without ``normalize``'s cost.

    Bulk reads (a year-long report converts tens of thousands of scaled integers) strip the
    trailing zeros in integer arithmetic instead; the result is the same value with the same
    exponent (a property test compares the two).
    """
    if value == 0:
        return _ZERO
    exponent = -scale
    while exponent < 0 and value % 10 == 0:
        value //= 10
        exponent += 1
    return Decimal(value).scaleb(exponent) if exponent else Decimal(value)


class ScaledDecimal(TypeDecorator[Decimal]):
    """Exact decimal: ``NUMERIC(38, scale)`` on PostgreSQL, scaled ``BIGINT`` on SQLite."""

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int = MONEY_SCALE) -> None:
        super().__init__()
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(38, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"money and quantities must be Decimal or int, not float: {value!r}")
        dec = Decimal(value)
        if dialect.name == "sqlite":
            return int(dec.scaleb(self.scale).to_integral_value())
        return dec.quantize(self._quantum)

    def fast_bind(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """A lean converter for bulk writes (None when the driver takes the value as it is).

        psycopg adapts ``Decimal`` itself and ``NUMERIC(38, scale)`` rounds to the scale; SQLite
        needs the scaled integer.
        """
        if dialect.name != "sqlite":
            return None
        scale = self.scale

        def to_scaled(value: Any) -> int | None:
            if value.__class__ is Decimal:  # validated records carry Decimals: the common case
                return int(value.scaleb(scale).to_integral_value()) if value else 0
            if not value:
                return None if value is None else 0
            if isinstance(value, float):
                raise TypeError(f"money and quantities must be Decimal or int, not float: {value!r}")
            if not isinstance(value, Decimal):
                value = Decimal(value)
            return int(value.scaleb(scale).to_integral_value())

        return to_scaled

    def fast_bind_column(self, dialect: Dialect) -> Callable[[list[Any]], list[Any]] | None:
        """:meth:`fast_bind` over a whole column: the same values, at C speed when every one is a Decimal.

        Validated records carry Decimals, so a bulk write converts each column with three
        ``map`` calls over the very methods :meth:`fast_bind` calls (``scaleb``,
        ``to_integral_value``, ``int``) instead of one Python call per value; any other column
        (``None`` for unpriced rows, plain ints) goes value by value through :meth:`fast_bind`.
        The store's C extension, where built, does the same from each Decimal's text in one pass
        (half the time of the three calls); a property test compares the two.
        """
        one = self.fast_bind(dialect)
        if one is None:
            return None
        shift = Decimal(self.scale)  # a Decimal operand: ``scaleb`` would convert an int on every call

        def scaled(values: list[Decimal]) -> list[Any]:
            return list(map(int, map(Decimal.to_integral_value, map(Decimal.scaleb, values, repeat(shift)))))

        scale = self.scale

        def to_scaled_column(values: list[Any]) -> list[Any]:
            if _rowbuild is not None:  # the same values, parsed from each Decimal's text in C
                return _rowbuild.scaled(values, scale, Decimal, one)
            types = set(map(type, values))
            if types == {Decimal}:
                # Token rows carry no quantity: ``any`` stops at the first non-zero value.
                return scaled(values) if any(values) else [0] * len(values)
            if types == {Decimal, type(None)}:  # unpriced rows among priced ones: NULL where they are
                unpriced = list(compress(count(), map(operator.is_, values, repeat(None))))
                out = scaled([_ZERO if value is None else value for value in values])
                for i in unpriced:
                    out[i] = None
                return out
            return list(map(one, values))

        return to_scaled_column

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return scaled_decimal(int(value), self.scale)
        return canonical_decimal(Decimal(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetime: ``TIMESTAMPTZ`` on PostgreSQL, epoch seconds on SQLite."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"expected a timezone-aware datetime, got {value!r}")
        if dialect.name == "sqlite":
            return int(value.timestamp())
        return value.astimezone(UTC)

    def fast_bind(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """A lean converter for bulk writes: epoch seconds on SQLite; PostgreSQL takes aware datetimes."""
        if dialect.name != "sqlite":
            return None

        def to_epoch(value: datetime) -> int:
            return int(value.timestamp())

        return to_epoch

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromtimestamp(int(value), tz=UTC)


def exact_sum(column: Any, dialect_name: str) -> list[Any]:
    """SQL expressions whose results :func:`combine_sum` turns into ``SUM(column)``, exactly.

    On SQLite a scaled-integer ``SUM`` raises "integer overflow" past 2**63 (about 922 million
    dollars), so the sum is taken in two halves, the high and the low 32 bits of every value,
    each of which stays far from overflowing (2**31 rows at the per-row limit), and recombined
    in Python's unbounded integers. PostgreSQL's ``SUM`` over ``NUMERIC`` is exact already.
    """
    if dialect_name != "sqlite":
        return [func.sum(column)]
    scaled = type_coerce(column, BigInteger)
    return [
        type_coerce(func.sum(scaled.op(">>")(literal(_LOW_BITS))), BigInteger),
        type_coerce(func.sum(scaled.op("&")(literal(_LOW_MASK))), BigInteger),
    ]


def combine_sum(parts: Any, scale: int, dialect_name: str) -> Decimal | None:
    """The exact sum from :func:`exact_sum`'s result values (``None`` when every value was NULL)."""
    if dialect_name != "sqlite":
        value = parts[0]
        return None if value is None else canonical_decimal(Decimal(value))
    high, low = parts
    if high is None:
        return None
    return scaled_decimal((int(high) << _LOW_BITS) + int(low), scale)
