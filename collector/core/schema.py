"""The normalised usage record and the tables it lands in (design.md, "The usage schema").

Two shapes of the same thing live here:

* :class:`UsageRecord`, a slotted dataclass that every source (provider API, CSV importer, proxy,
  OpenTelemetry receiver)
  builds. Its ``__post_init__`` is the *one* place where design rule 4 (token taxonomy) and rule 5
  (money basis) are enforced, so a bad record fails where it is made, naming the rule.
  It is a plain dataclass, not a pydantic model, because importers build a million of them a
  minute and per-row model validation would dominate the import time.
* :class:`UsageRow` and :class:`UsageDaily`, the SQLModel tables. ``UsageRow`` is keyed by
  ``record_key``, a 16-byte BLAKE2b hash of the natural key, which SQLite stores in a
  ``WITHOUT ROWID`` table clustered on ``(bucket_start, record_key)``: one narrow key instead
  of a 15-column unique index is what makes the upsert fast (the store benchmark: ~107k
  rows/s vs ~60k rows/s), and clustering by time keeps writes and day scans local.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Index, LargeBinary, PrimaryKeyConstraint, String, Text, false
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import MAX_MONEY, MAX_QUANTITY, MONEY_SCALE, QUANTITY_SCALE, ScaledDecimal, UTCDateTime

SOURCES = ("api", "csv", "proxy", "otel")
BASES = ("billed", "estimated", "unpriced")

#: The natural key, in hashing order. Every one is NOT NULL; ``''`` means "not applicable".
#: The key holds the model id *as the source sent it* (``model_raw``): the canonical ``model`` a
#: record is grouped under comes from the price table, which changes between versions, and a
#: key that moved with it would count a re-synced bucket twice.
KEY_FIELDS: tuple[str, ...] = (
    "provider",
    "account",
    "source",
    "kind",
    "bucket_start",
    "bucket_end",
    "project",
    "api_key_id",
    "user_id",
    "model_raw",
    "service_tier",
    "batch",
    "line_item",
    "variant",
    "team",
)
TOKEN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
)


#: The record's slots that :attr:`UsageRecord.record_key` joins, in its order, for the store's C
#: row builder (``collector/core/_rowbuild.c``): the buckets as epoch seconds, and ``batch``
#: (marked ``?``) as ``1`` or ``0``. A test pins the builder's keys to the property's bytes.
KEY_PARTS: tuple[str, ...] = (
    "provider", "account", "source", "kind", "_start_ts", "_end_ts", "project", "api_key_id", "user_id",
    "model_raw", "service_tier", "?batch", "line_item", "variant", "team",
)  # fmt: skip

_set = object.__setattr__


#: Units that measure a *level* (bytes stored during a bucket), not a flow: summing them over
#: buckets means nothing, so the daily rollup keeps their average and reports average them
#: (design rule 7).
LEVEL_UNITS: frozenset[str] = frozenset({"bytes"})


class InvariantError(ValueError):
    """A record breaks one of design.md's schema rules; the message names the record and rule."""


@dataclass(slots=True, eq=True, frozen=True)
class UsageRecord:
    """One bucket of usage or cost from one source, in the normalised taxonomy.

    Token fields follow OpenAI's meaning: ``input_tokens`` is *total* input, including cache reads
    and cache writes; ``reasoning_tokens`` is part of ``output_tokens``. Use
    :meth:`from_additive` for providers (Anthropic) that report the parts separately.
    """

    provider: str
    source: str
    kind: str
    bucket_start: datetime
    bucket_end: datetime
    account: str = ""
    project: str = ""
    api_key_id: str = ""
    user_id: str = ""
    model: str = ""
    service_tier: str = ""
    batch: bool = False
    line_item: str = ""
    variant: str = ""
    team: str = ""
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    quantity: Decimal = Decimal(0)
    quantity_unit: str = ""
    cost: Decimal | None = None
    currency: str = ""
    basis: str = "unpriced"
    price_version: str = ""
    source_ref: str = ""
    details: str = ""
    #: The provider's own model id; ``model`` is the canonical id every source shares
    #: (:mod:`collector.core.model_ids`, applied by the ingest path). Defaults to ``model``.
    model_raw: str = ""
    # Derived once at validation (never passed in, never copied by ``dataclasses.replace``): the
    # key hash (lazily), and the bucket's epoch seconds that the key, the SQLite write and the
    # rollup's day all need.
    _key: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _start_ts: int = field(default=0, init=False, repr=False, compare=False)
    _end_ts: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_dimensions()
        self._check_tokens()
        self._check_money()

    # -- construction helpers -------------------------------------------------------------------

    @classmethod
    def from_additive(
        cls,
        *,
        uncached_input_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        **kwargs: Any,
    ) -> UsageRecord:
        """Build a record from Anthropic-style counts, where cache reads/writes are *not* in input.

        Anthropic's usage report gives ``uncached_input_tokens``, ``cache_read_input_tokens`` and
        ``cache_creation`` separately (provider-apis.md §2.4); design rule 4 stores their sum as
        ``input_tokens`` so that every provider means the same thing by "input".
        """
        for name, value in (
            ("uncached_input_tokens", uncached_input_tokens),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_5m_tokens", cache_write_5m_tokens),
            ("cache_write_1h_tokens", cache_write_1h_tokens),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvariantError(f"rule 4: {name} must be a non-negative integer, got {value!r}")
        total = uncached_input_tokens + cache_read_tokens + cache_write_5m_tokens + cache_write_1h_tokens
        return cls(
            input_tokens=total,
            cache_read_tokens=cache_read_tokens,
            cache_write_5m_tokens=cache_write_5m_tokens,
            cache_write_1h_tokens=cache_write_1h_tokens,
            **kwargs,
        )

    # -- identity -------------------------------------------------------------------------------

    def natural_key(self) -> tuple[str, ...]:
        """The natural key as strings, in :data:`KEY_FIELDS` order."""
        return (
            self.provider,
            self.account,
            self.source,
            self.kind,
            str(self._start_ts),
            str(self._end_ts),
            self.project,
            self.api_key_id,
            self.user_id,
            self.model_raw,
            self.service_tier,
            "1" if self.batch else "0",
            self.line_item,
            self.variant,
            self.team,
        )

    @property
    def record_key(self) -> bytes:
        """16-byte BLAKE2b of the natural key: the primary key of ``usage``."""
        key = self._key
        if key is None:
            # Same fields and order as natural_key(), inlined: this runs once per written row.
            joined = (
                f"{self.provider}\x1f{self.account}\x1f{self.source}\x1f{self.kind}\x1f"
                f"{self._start_ts}\x1f{self._end_ts}\x1f"
                f"{self.project}\x1f{self.api_key_id}\x1f{self.user_id}\x1f{self.model_raw}\x1f"
                f"{self.service_tier}\x1f{'1' if self.batch else '0'}\x1f{self.line_item}\x1f"
                f"{self.variant}\x1f{self.team}"
            )
            key = hashlib.blake2b(joined.encode(), digest_size=16).digest()
            _set(self, "_key", key)
        return key

    @staticmethod
    def record_keys(records: Sequence[UsageRecord]) -> list[bytes]:
        """:attr:`record_key` of each record, for a bulk write: the same bytes, at less cost per row.

        One comprehension over the batch, without the property's call, attribute store and
        cache check per record: about 20 % of the key's cost (the store benchmark's keys are
        all new). A key already computed (the ingest path sums records by key) is reused.
        """
        blake2b = hashlib.blake2b
        if any(map(attrgetter("_key"), records)):
            return [r.record_key for r in records]
        return [
            blake2b(
                f"{r.provider}\x1f{r.account}\x1f{r.source}\x1f{r.kind}\x1f{r._start_ts}\x1f{r._end_ts}\x1f"
                f"{r.project}\x1f{r.api_key_id}\x1f{r.user_id}\x1f{r.model_raw}\x1f"
                f"{r.service_tier}\x1f{'1' if r.batch else '0'}\x1f{r.line_item}\x1f{r.variant}\x1f{r.team}".encode(),
                digest_size=16,
            ).digest()
            for r in records
        ]

    def describe(self) -> str:
        """A short, secret-free label for error messages."""
        start = self.bucket_start.strftime("%Y-%m-%dT%H:%MZ") if isinstance(self.bucket_start, datetime) else "?"
        parts = [self.provider or "?", self.source or "?", self.kind or "?", start]
        parts += [f"{n}={getattr(self, n)}" for n in ("account", "project", "model", "line_item") if getattr(self, n)]
        return "usage record " + " ".join(parts)

    # -- validation -----------------------------------------------------------------------------

    def _fail(self, rule: str, message: str) -> InvariantError:
        return InvariantError(f"{self.describe()}: {rule}: {message}")

    # The checks below run once per imported row (a million a minute), so each starts with a
    # C-speed test of the common case and only walks field by field to name what is wrong.

    def _check_dimensions(self) -> None:
        texts = (
            self.provider, self.account, self.source, self.kind, self.project, self.api_key_id, self.user_id,
            self.model, self.service_tier, self.line_item, self.variant, self.team, self.model_raw,
        )  # fmt: skip
        try:
            "".join(texts)  # raises TypeError unless every key dimension is a str
        except TypeError:
            for name in (*KEY_FIELDS, "model"):
                value = getattr(self, name)
                if name not in ("bucket_start", "bucket_end", "batch") and not isinstance(value, str):
                    raise self._fail(
                        "rule 1 (no NULL in keys)", f"{name} must be a string ('' if n/a), got {value!r}"
                    ) from None
        if self.batch is not True and self.batch is not False:
            raise self._fail("rule 1 (keys)", f"batch must be a bool, got {self.batch!r}")
        if not self.model_raw and self.model:
            _set(self, "model_raw", self.model)
        start, end = self.bucket_start, self.bucket_end
        if type(start) is not datetime or start.tzinfo is not UTC:
            _set(self, "bucket_start", self._utc("bucket_start", start))
        if type(end) is not datetime or end.tzinfo is not UTC:
            _set(self, "bucket_end", self._utc("bucket_end", end))
        if not self.provider or not self.kind:
            raise self._fail("rule 1 (keys)", "provider and kind must not be empty")
        if self.source not in SOURCES:
            raise self._fail("rule 6 (provenance)", f"source must be one of {SOURCES}, got {self.source!r}")
        if self.bucket_end <= self.bucket_start:
            raise self._fail("rule 2 (half-open window)", "bucket_end must be after bucket_start")
        _set(self, "_start_ts", int(self.bucket_start.timestamp()))
        _set(self, "_end_ts", int(self.bucket_end.timestamp()))

    def _utc(self, name: str, value: object) -> datetime:
        if isinstance(value, datetime):
            if value.tzinfo is UTC:
                return value
            if value.tzinfo is not None and value.utcoffset() is not None:
                return value.astimezone(UTC)
        raise self._fail("rule 2 (aware UTC time)", f"{name} must be timezone-aware, got {value!r}")

    def _check_tokens(self) -> None:
        counts = (
            self.input_tokens, self.cache_read_tokens, self.cache_write_5m_tokens, self.cache_write_1h_tokens,
            self.output_tokens, self.reasoning_tokens, self.requests,
        )  # fmt: skip
        if set(map(type, counts)) != {int} or min(counts) < 0:
            for name in TOKEN_FIELDS:
                value = getattr(self, name)
                if type(value) is not int or value < 0:
                    raise self._fail("rule 4 (token taxonomy)", f"{name} must be a non-negative integer, got {value!r}")
        cached = self.cache_read_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens
        if cached > self.input_tokens:
            raise self._fail(
                "rule 4 (cache reads and writes are part of input)",
                f"cache_read_tokens {self.cache_read_tokens} + cache writes "
                f"{self.cache_write_5m_tokens + self.cache_write_1h_tokens} exceed input_tokens {self.input_tokens}",
            )
        if self.reasoning_tokens > self.output_tokens:
            raise self._fail(
                "rule 4 (reasoning is part of output)",
                f"reasoning_tokens {self.reasoning_tokens} exceed output_tokens {self.output_tokens}",
            )
        if isinstance(self.quantity, float) or not isinstance(self.quantity, Decimal | int):
            raise self._fail("rule 3 (no floats)", f"quantity must be Decimal, got {self.quantity!r}")
        if self.quantity and not self.quantity_unit:
            raise self._fail("rule 4 (units)", "a non-zero quantity needs a quantity_unit")
        if not -MAX_QUANTITY <= self.quantity <= MAX_QUANTITY:
            raise self._fail("rule 3 (storable amounts)", f"quantity {self.quantity} is beyond ±{MAX_QUANTITY:,}")

    def _check_money(self) -> None:
        if self.basis not in BASES:
            raise self._fail("rule 5 (basis)", f"basis must be one of {BASES}, got {self.basis!r}")
        if self.basis == "unpriced":
            if self.cost is not None:
                raise self._fail("rule 5 (unpriced is not $0)", "an unpriced record carries no cost")
            return
        if self.cost is None or isinstance(self.cost, float) or not isinstance(self.cost, Decimal | int):
            raise self._fail("rule 3 (money is Decimal)", f"{self.basis} cost must be a Decimal, got {self.cost!r}")
        if not isinstance(self.cost, Decimal):
            _set(self, "cost", Decimal(self.cost))
        if not self.cost.is_finite():
            raise self._fail("rule 3 (money is Decimal)", f"cost must be finite, got {self.cost!r}")
        if not -MAX_MONEY <= self.cost <= MAX_MONEY:
            raise self._fail(
                "rule 3 (storable amounts)",
                f"cost {self.cost} is beyond the per-row limit of ±{MAX_MONEY:,} {self.currency or ''}".rstrip(),
            )
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise self._fail(
                "rule 3 (currency code)",
                f"a {self.basis} cost needs an ISO currency code, got {self.currency!r}",
            )
        if self.basis == "estimated" and self.cost < 0:
            raise self._fail("rule 5 (estimates)", "an estimated cost cannot be negative")


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord) if not f.name.startswith("_"))


def _key_col(length: int = 255) -> Any:
    return Field(default="", sa_column=Column(String(length), nullable=False, server_default=""))


def _count_col() -> Any:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


def _text_col(length: int = 255) -> Any:
    return Field(default="", sa_column=Column(String(length), nullable=False, server_default=""))


class UsageRow(SQLModel, table=True):
    """The ``usage`` table: one row per natural key, written only by :func:`collector.core.store.upsert`."""

    __tablename__ = "usage"
    # Clustered by time, then key: time-ordered writes append, and day-range scans (rollups,
    # hourly queries) read neighbouring pages. record_key alone is unique (it hashes
    # bucket_start too), so the conflict target (bucket_start, record_key) is the natural key.
    __table_args__ = (
        PrimaryKeyConstraint("bucket_start", "record_key", name="pk_usage"),
        {"sqlite_with_rowid": False},
    )

    record_key: bytes = Field(sa_column=Column(LargeBinary(16), primary_key=True))
    provider: str = _key_col(64)
    account: str = _key_col()
    source: str = _key_col(16)
    kind: str = _key_col(64)
    bucket_start: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    bucket_end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    project: str = _key_col()
    api_key_id: str = _key_col()
    user_id: str = _key_col()
    model: str = _key_col()
    service_tier: str = _key_col(64)
    batch: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    line_item: str = _key_col(512)
    variant: str = _key_col()
    team: str = _key_col()
    input_tokens: int = _count_col()
    cache_read_tokens: int = _count_col()
    cache_write_5m_tokens: int = _count_col()
    cache_write_1h_tokens: int = _count_col()
    output_tokens: int = _count_col()
    reasoning_tokens: int = _count_col()
    requests: int = _count_col()
    quantity: Decimal = Field(
        default=Decimal(0),
        sa_column=Column(ScaledDecimal(QUANTITY_SCALE), nullable=False, server_default="0"),
    )
    quantity_unit: str = _text_col(32)
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    currency: str = _text_col(3)
    basis: str = _text_col(16)
    price_version: str = _text_col(64)
    source_ref: str = _text_col()
    details: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    model_raw: str = _key_col()
    ingested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


#: Dimensions kept by the daily rollup: the natural key minus the bucket and ``variant``.
ROLLUP_DIMENSIONS: tuple[str, ...] = (
    "provider",
    "account",
    "source",
    "kind",
    "project",
    "api_key_id",
    "user_id",
    "model",
    "service_tier",
    "batch",
    "line_item",
    "team",
    "basis",
    "currency",
    "quantity_unit",
)
ROLLUP_MEASURES: tuple[str, ...] = (*TOKEN_FIELDS, "quantity", "cost")


class UsageDaily(SQLModel, table=True):
    """``usage_daily``: ``usage`` summed per UTC day, rebuilt for touched days by every upsert.

    Dashboard and report queries read this table, so they stay fast at tens of millions of
    ``usage`` rows (design.md, "Scale"). A bucket is counted on the day its start falls on.
    """

    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_day", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    day: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    provider: str = _key_col(64)
    account: str = _key_col()
    source: str = _key_col(16)
    kind: str = _key_col(64)
    project: str = _key_col()
    api_key_id: str = _key_col()
    user_id: str = _key_col()
    model: str = _key_col()
    service_tier: str = _key_col(64)
    batch: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    line_item: str = _key_col(512)
    team: str = _key_col()
    basis: str = _text_col(16)
    currency: str = _text_col(3)
    quantity_unit: str = _text_col(32)
    input_tokens: int = _count_col()
    cache_read_tokens: int = _count_col()
    cache_write_5m_tokens: int = _count_col()
    cache_write_1h_tokens: int = _count_col()
    output_tokens: int = _count_col()
    reasoning_tokens: int = _count_col()
    requests: int = _count_col()
    quantity: Decimal = Field(
        default=Decimal(0),
        sa_column=Column(ScaledDecimal(QUANTITY_SCALE), nullable=False, server_default="0"),
    )
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    rows: int = _count_col()


#: What ``usage_hourly`` keeps of a row besides its hour: the dimensions an hourly chart is most
#: often grouped or filtered by, and the report's money-rule keys. Project, key, user, team,
#: tier and line item would make it nearly as long as ``usage`` itself (one row per hour each).
HOURLY_DIMENSIONS: tuple[str, ...] = (
    "provider",
    "account",
    "source",
    "kind",
    "model",
    "basis",
    "currency",
    "quantity_unit",
)


class UsageHourly(SQLModel, table=True):
    """``usage_hourly``: ``usage`` summed per UTC hour over :data:`HOURLY_DIMENSIONS`.

    Hourly views (a 7-day hourly chart by provider or model) read this instead of every raw
    row of the week. Unlike ``usage_daily`` it is not rebuilt by the write itself: a write marks
    its days in ``usage_hourly_dirty`` and the next hourly read of those days rebuilds them
    (:func:`collector.core.store.refresh_hourly`), so ingest pays one small upsert per day, not a
    second aggregation. ``daily`` marks buckets a day or longer (cost APIs, daily CSVs), which
    the report keeps on their UTC day; level units (bytes stored) are summed, as the report
    sums an hour's rows before averaging hours.
    """

    __tablename__ = "usage_hourly"
    __table_args__ = (Index("ix_usage_hourly_hour", "hour"),)

    id: int | None = Field(default=None, primary_key=True)
    hour: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    daily: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    provider: str = _key_col(64)
    account: str = _key_col()
    source: str = _key_col(16)
    kind: str = _key_col(64)
    model: str = _key_col()
    basis: str = _text_col(16)
    currency: str = _text_col(3)
    quantity_unit: str = _text_col(32)
    input_tokens: int = _count_col()
    cache_read_tokens: int = _count_col()
    cache_write_5m_tokens: int = _count_col()
    cache_write_1h_tokens: int = _count_col()
    output_tokens: int = _count_col()
    reasoning_tokens: int = _count_col()
    requests: int = _count_col()
    quantity: Decimal = Field(
        default=Decimal(0),
        sa_column=Column(ScaledDecimal(QUANTITY_SCALE), nullable=False, server_default="0"),
    )
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    rows: int = _count_col()


class UsageHourlyDirty(SQLModel, table=True):
    """``usage_hourly_dirty``: UTC days written since their hourly rollup was last rebuilt.

    ``seq`` counts the writes: a rebuild deletes a mark only if no write came after it read
    the mark, so a write that lands during a rebuild leaves its day marked.
    """

    __tablename__ = "usage_hourly_dirty"

    day: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    seq: int = Field(default=1, sa_column=Column(BigInteger, nullable=False, server_default="1"))


class UsageDailySlim(SQLModel, table=True):
    """``usage_daily_slim``: ``usage_daily`` summed per UTC day over :data:`HOURLY_DIMENSIONS` only.

    A year's report by provider and model groups by the money rule's keys (account, source,
    kind, basis, currency, unit) and day; ``usage_daily`` repeats each of those groups once per
    project, key, user, team, tier and line item (about 6x as many rows in the query benchmark).
    This table drops those columns, so such a report reads one row per group it returns. It is
    summed from ``usage_daily`` itself (not ``usage``), so level units keep the daily rollup's
    meaning, and it is rebuilt lazily like ``usage_hourly``: a write marks its days in
    ``usage_daily_slim_dirty`` and the next read of them rebuilds them
    (:mod:`collector.core.rollups`).
    """

    __tablename__ = "usage_daily_slim"
    __table_args__ = (Index("ix_usage_daily_slim_day", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    day: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    provider: str = _key_col(64)
    account: str = _key_col()
    source: str = _key_col(16)
    kind: str = _key_col(64)
    model: str = _key_col()
    basis: str = _text_col(16)
    currency: str = _text_col(3)
    quantity_unit: str = _text_col(32)
    input_tokens: int = _count_col()
    cache_read_tokens: int = _count_col()
    cache_write_5m_tokens: int = _count_col()
    cache_write_1h_tokens: int = _count_col()
    output_tokens: int = _count_col()
    reasoning_tokens: int = _count_col()
    requests: int = _count_col()
    quantity: Decimal = Field(
        default=Decimal(0),
        sa_column=Column(ScaledDecimal(QUANTITY_SCALE), nullable=False, server_default="0"),
    )
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    rows: int = _count_col()


class UsageDailySlimDirty(SQLModel, table=True):
    """``usage_daily_slim_dirty``: UTC days written since their slim daily rows were rebuilt.

    ``seq`` follows :class:`UsageHourlyDirty`'s rule.
    """

    __tablename__ = "usage_daily_slim_dirty"

    day: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    seq: int = Field(default=1, sa_column=Column(BigInteger, nullable=False, server_default="1"))


class DataVersion(SQLModel, table=True):
    """``data_version``: one counter, bumped in the transaction of every ``usage_daily`` rebuild.

    Readers that cache whole computations over the rollup (the dashboard's Budgets page) key
    them by this number: one primary-key read tells them whether anything they summed changed,
    where ``MAX(updated_at)`` over ``usage`` would need an index and still miss deletions.
    """

    __tablename__ = "data_version"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class Figure(SQLModel, table=True):
    """``figures``: a computed figure (a budget's status, the anomaly scan) kept for one ``data_version``.

    See :mod:`collector.core.figures`: the Budgets page's figures take seconds at tens of millions
    of rows, and kept here they are computed once per data change for every dashboard process.
    """

    __tablename__ = "figures"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    key: str = Field(sa_column=Column(String(64), primary_key=True))
    version: int = Field(sa_column=Column(BigInteger, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    computed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
