"""Display-currency conversion from a table of daily rates, always showing the rate used.

Costs are stored in the currency they were billed in (design rule 3) and never rewritten; the
dashboard and reports may *show* them in a display currency (``LLM_USAGE_DISPLAY_CURRENCY``).
Every converted figure carries the rate, the day of that rate and its source (``manual``,
``csv:<file name>``) so a reader can check it: a conversion is a :class:`Converted`, never a
bare number.

A day without its own rate uses the newest earlier rate (rates are not published on weekends
and holidays) and says which day that was. A pair stored only the other way round
(EUR->USD when USD->EUR is asked) is inverted. No rate at or before the day is an
:class:`FxError`, never a silent 1:1.

Rates are imported from CSV with columns ``date,base,quote,rate`` (and optionally ``source``):
one row per day and pair, e.g. ``2026-11-02,USD,EUR,0.9231``.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import Column, Index, String, Table, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime

#: Rates keep 10 decimal places, like money.
RATE_SCALE = MONEY_SCALE
RATE_QUANTUM = Decimal(1).scaleb(-RATE_SCALE)


class FxRate(SQLModel, table=True):
    """``fx_rates``: how many ``quote`` units one ``base`` unit bought on ``day`` (UTC)."""

    __tablename__ = "fx_rates"
    __table_args__ = (Index("ux_fx_rates_day_pair", "day", "base", "quote", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    day: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    base: str = Field(sa_column=Column(String(3), nullable=False))
    quote: str = Field(sa_column=Column(String(3), nullable=False))
    rate: Decimal = Field(sa_column=Column(ScaledDecimal(RATE_SCALE), nullable=False))
    source: str = Field(default="manual", sa_column=Column(String(255), nullable=False, server_default="manual"))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


FX_RATES: Table = FxRate.__table__  # type: ignore[attr-defined]


REQUIRED_COLUMNS = ("date", "base", "quote", "rate")


class FxError(ValueError):
    """A bad rate, a bad rates file (the message names the line), or no rate for a conversion."""


@dataclass(frozen=True)
class Rate:
    """One ``base`` unit buys ``rate`` ``quote`` units on ``day``."""

    day: date
    base: str
    quote: str
    rate: Decimal
    source: str


@dataclass(frozen=True)
class Converted:
    """An amount shown in another currency, with the rate that converted it."""

    amount: Decimal
    currency: str
    original: Decimal
    original_currency: str
    rate: Decimal
    rate_day: date | None
    source: str

    def note(self) -> str:
        """``at 0.9231 EUR/USD of 2026-11-02 (csv:ecb.csv)``, or ``''`` when nothing was converted."""
        if self.rate_day is None:
            return ""
        return (
            f"at {self.rate:f} {self.currency}/{self.original_currency} of {self.rate_day.isoformat()} ({self.source})"
        )


def _currency(code: str, what: str) -> str:
    code = code.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise FxError(f"{what} must be a 3-letter ISO 4217 code, got {code!r}")
    return code


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _check_rate(rate: Decimal) -> Decimal:
    if not rate.is_finite() or rate <= 0:
        raise FxError(f"a rate must be a positive number, got {rate}")
    return rate


def _upsert(conn: Connection, rate: Rate, now: datetime) -> bool:
    """Insert or replace one rate; True when it was new."""
    t = FX_RATES
    where = (t.c.day == _midnight(rate.day), t.c.base == rate.base, t.c.quote == rate.quote)
    existing = conn.execute(select(t.c.id).where(*where)).scalar_one_or_none()
    if existing is None:
        conn.execute(
            insert(t).values(
                day=_midnight(rate.day),
                base=rate.base,
                quote=rate.quote,
                rate=rate.rate,
                source=rate.source,
                created_at=now,
            )
        )
        return True
    conn.execute(update(t).where(t.c.id == existing).values(rate=rate.rate, source=rate.source, created_at=now))
    return False


def set_rate(engine: Engine, day: date, base: str, quote: str, rate: Decimal, source: str = "manual") -> Rate:
    """Enter (or replace) one day's rate.

    Raises:
        FxError: bad currency codes, the same currency twice, or a rate that is not positive.
    """
    base, quote = _currency(base, "base"), _currency(quote, "quote")
    if base == quote:
        raise FxError(f"base and quote are both {base}")
    item = Rate(day, base, quote, _check_rate(Decimal(rate)), source)
    with engine.begin() as conn:
        _upsert(conn, item, datetime.now(UTC))
    return item


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FxError(f"date {text!r} is not a day written YYYY-MM-DD") from None


def _number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise FxError(f"rate {text!r} is not a number (write it like 0.92, with a dot)") from None
    if not value.is_finite():
        raise FxError(f"rate {text!r} is not a finite number")
    return value


def parse_rates_csv(text: str, source: str) -> list[Rate]:
    """Parse a rates file (all rows, or an :class:`FxError` naming the first bad line).

    Raises:
        FxError: a missing column, a bad date, currency or rate, with its line number.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FxError(f"rates file: missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}")
    reader.fieldnames = header
    out: list[Rate] = []
    for line, row in enumerate(reader, start=2):
        try:
            day = _day((row["date"] or "").strip())
            base, quote = _currency(row["base"] or "", "base"), _currency(row["quote"] or "", "quote")
            if base == quote:
                raise FxError(f"base and quote are both {base}")
            rate = _check_rate(_number((row["rate"] or "").strip()))
        except ValueError as exc:
            raise FxError(f"rates file line {line}: {exc}") from exc
        out.append(Rate(day, base, quote, rate, (row.get("source") or "").strip() or source))
    return out


def import_rates_csv(engine: Engine, text: str, name: str) -> tuple[int, int]:
    """Import a rates file in one transaction; returns (new, replaced). Nothing is written on error."""
    rates = parse_rates_csv(text, f"csv:{name}")
    new = 0
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for r in rates:
            new += _upsert(conn, r, now)
    return new, len(rates) - new


def list_rates(engine: Engine, base: str | None = None, quote: str | None = None) -> list[Rate]:
    """Stored rates, oldest first (optionally one pair)."""
    t = FX_RATES
    stmt = select(t).order_by(t.c.day, t.c.base, t.c.quote)
    if base:
        stmt = stmt.where(t.c.base == base.upper())
    if quote:
        stmt = stmt.where(t.c.quote == quote.upper())
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [Rate(r["day"].date(), r["base"], r["quote"], r["rate"], r["source"]) for r in rows]


class RateBook:
    """All rates in memory, for converting many figures (a report, a chargeback) quickly."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        pairs: dict[tuple[str, str], list[Rate]] = defaultdict(list)
        for r in rates:
            pairs[(r.base, r.quote)].append(r)
        self._pairs = {k: sorted(v, key=lambda r: r.day) for k, v in pairs.items()}
        self._days = {k: [r.day for r in v] for k, v in self._pairs.items()}

    @classmethod
    def load(cls, engine: Engine) -> RateBook:
        """Every stored rate."""
        return cls(list_rates(engine))

    def _latest(self, base: str, quote: str, day: date) -> Rate | None:
        days = self._days.get((base, quote))
        if not days:
            return None
        i = bisect_right(days, day)
        return self._pairs[(base, quote)][i - 1] if i else None

    def rate(self, base: str, quote: str, day: date) -> tuple[Decimal, date, str]:
        """``(rate, rate day, source)`` for one ``base`` in ``quote`` on ``day``.

        Raises:
            FxError: no rate for the pair (either direction) on or before ``day``.
        """
        direct = self._latest(base, quote, day)
        inverse = self._latest(quote, base, day)
        if direct is not None and (inverse is None or direct.day >= inverse.day):
            return direct.rate, direct.day, direct.source
        if inverse is not None:  # kept to the stored rates' ten decimals, not 28 digits of 1/x
            inverted = (Decimal(1) / inverse.rate).quantize(RATE_QUANTUM)
            return inverted, inverse.day, f"{inverse.source}, inverted"
        raise FxError(
            f"no {base}->{quote} rate on or before {day.isoformat()}: "
            "import one with `llm-usage fx import FILE` or enter it with `llm-usage fx set`"
        )

    def day_rate(self, amount: Decimal, currency: str, to: str, day: date) -> tuple[Decimal, str] | None:
        """``(amount in to, "source of the rate of <day>")``, or None without a rate: a report's converter."""
        try:
            rate, _, source = self.rate(currency, to, day)
        except FxError:
            return None
        return amount * rate, source

    def convert(self, amount: Decimal, currency: str, to: str, day: date) -> Converted:
        """``amount`` of ``currency`` on ``day`` in ``to`` (unchanged when they are the same).

        Raises:
            FxError: no usable rate.
        """
        if not to or currency == to:
            return Converted(amount, currency, amount, currency, Decimal(1), None, "")
        rate, rate_day, source = self.rate(currency, to, day)
        return Converted(amount * rate, to, amount, currency, rate, rate_day, source)
