"""The product's own price table: what ``genai-prices`` lacks (design.md, "Pricing").

``genai-prices`` knows token prices, OpenAI's priority/flex/batch variants, Anthropic's batch
variants for recent models, long-context tiers and some per-call prices. This table fills the
rest, one entry per documented price, each with the page it comes from and the day it was read:

* ``tokens``: per-million-token rates for a model in a context the library lacks (Anthropic batch
  and long context for older models, fine-tuned models by their base, free moderation);
* ``tiers``: how a service tier is charged when it has no per-token price of its own (Anthropic
  Priority Tier: standard rates, billed outside the cost report);
* ``line_items``: non-token usage (images by size, speech characters, transcription seconds,
  tool calls, code-interpreter sessions, vector storage per GiB-day);
* ``bill_only``: bill lines no usage API reports (code execution, fine-tuning training), which
  reconciliation names instead of leaving them in the residual.

The shipped table is ``prices.json`` beside this module, versioned by its ``version``. An admin may
add or correct entries with a JSON file of the same shape (``LLM_USAGE_PRICE_TABLE_FILE``): its
entries are consulted before the shipped ones, and estimates they price say ``admin <sha256[:8]>``
in their ``price_version``. Both files are validated strictly (unknown fields, negative or
non-finite prices, sources that are not https URLs are refused with the entry's position).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from collector.core.settings import get_settings

SHIPPED = Path(__file__).with_name("prices.json")
#: Largest admin price file read (a table is a few kilobytes; anything larger is a mistake).
MAX_FILE_BYTES = 5 * 1024 * 1024
#: Context keys a token entry may be conditioned on (:class:`collector.core.pricing.PriceContext`).
WHEN_KEYS = ("processing", "service_tier", "context_window", "fine_tuned", "speed")

Price = Annotated[Decimal, Field(ge=0, le=Decimal(1_000_000), allow_inf_nan=False)]
Positive = Annotated[Decimal, Field(gt=0, le=Decimal(10) ** 15, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
Source = Annotated[str, StringConstraints(max_length=500, pattern=r"^https://[^\s\x00-\x1f]+$")]
Note = Annotated[str, StringConstraints(max_length=1000)]


class PriceTableError(ValueError):
    """A price file that cannot be used; the message names the file and the entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Name
    source: Source
    checked: date
    note: Note = ""


class _Rates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Price | None = None
    output: Price | None = None
    cache_read: Price | None = None
    cache_write_5m: Price | None = None
    cache_write_1h: Price | None = None


class _TokenEntry(_Entry):
    model: Name
    when: dict[Literal["processing", "service_tier", "context_window", "fine_tuned", "speed"], Name] = {}
    per_mtok: _Rates


class _TierEntry(_Entry):
    service_tiers: list[Name] = Field(min_length=1)
    rate: Literal["standard"]
    billed_elsewhere: bool = False


class _LineItemEntry(_Entry):
    kind: Name
    unit: Name
    price: Price
    per: Positive = Decimal(1)
    model: Name = ""
    line_item: Name = ""
    variant: dict[Name, Name] = {}
    per_day: bool = False


class _BillOnlyEntry(_Entry):
    pattern: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    label: Name

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Annotated[str, StringConstraints(max_length=40, pattern=r"^[\w.\-]+$")] = ""
    currency: Literal["USD"] = "USD"
    tokens: list[_TokenEntry] = []
    tiers: list[_TierEntry] = []
    line_items: list[_LineItemEntry] = []
    bill_only: list[_BillOnlyEntry] = []


# -- what the rest of the product sees --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRates:
    """USD per million tokens; ``None`` where the entry gives no price."""

    input: Decimal | None
    output: Decimal | None
    cache_read: Decimal | None
    cache_write_5m: Decimal | None
    cache_write_1h: Decimal | None


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """Per-token rates of one model in one context (``when``: sorted key/value pairs)."""

    provider: str
    model: str
    when: tuple[tuple[str, str], ...]
    rates: TokenRates
    source: str
    checked: date
    origin: str


@dataclass(frozen=True, slots=True)
class TierRule:
    """How one provider's service tier is charged when it has no per-token price of its own."""

    provider: str
    service_tiers: frozenset[str]
    billed_elsewhere: bool
    source: str
    checked: date
    origin: str


@dataclass(frozen=True, slots=True)
class LineItemEntry:
    """A non-token price: ``price`` USD per ``per`` units (per day of the bucket for levels)."""

    provider: str
    kind: str
    unit: str
    price: Decimal
    per: Decimal
    model: str
    line_item: str
    variant: tuple[tuple[str, str], ...]
    per_day: bool
    source: str
    checked: date
    origin: str

    def matches(self, model: str, line_item: str, variant: dict[str, str]) -> bool:
        """True when the entry applies to a row with this model, line item and variant."""
        if self.model and self.model != model:
            return False
        if self.line_item != line_item:
            return False
        return all(variant.get(k) == v for k, v in self.variant)


@dataclass(frozen=True, slots=True)
class BillOnly:
    """A kind of bill line no usage API reports (its ``pattern`` matches the line's text)."""

    provider: str
    pattern: re.Pattern[str]
    label: str
    source: str
    origin: str


@dataclass(frozen=True)
class PriceTable:
    """The shipped table with an admin's entries in front; lookups return the first match."""

    version: str
    tokens: tuple[TokenEntry, ...]
    tiers: tuple[TierRule, ...]
    line_items: tuple[LineItemEntry, ...]
    bill_only: tuple[BillOnly, ...]

    def token_entry(self, provider: str, model: str, when: dict[str, str]) -> TokenEntry | None:
        """The entry for ``model`` in exactly the context ``when``."""
        wanted = tuple(sorted(when.items()))
        for e in self.tokens:
            if e.provider == provider and e.model == model and e.when == wanted:
                return e
        return None

    def tier_rule(self, provider: str, service_tier: str) -> TierRule | None:
        """The rule for a provider's service tier, if the table has one."""
        for t in self.tiers:
            if t.provider == provider and service_tier in t.service_tiers:
                return t
        return None

    def line_item(
        self, provider: str, kind: str, unit: str, model: str, line_item: str, variant: dict[str, str]
    ) -> LineItemEntry | None:
        """The most specific entry for a quantity row (admin entries first)."""
        found = [
            e
            for e in self.line_items
            if e.provider == provider and e.kind == kind and e.unit == unit and e.matches(model, line_item, variant)
        ]
        if not found:
            return None
        admin = [e for e in found if e.origin.startswith("admin")]
        pool = admin or found
        return max(pool, key=lambda e: (bool(e.model), len(e.variant)))

    def bill_only_label(self, provider: str, text: str) -> str | None:
        """The label of the bill-only charge ``text`` names, or None."""
        for b in self.bill_only:
            if b.provider == provider and b.pattern.search(text):
                return b.label
        return None

    def billed_elsewhere(self, provider: str, service_tier: str) -> bool:
        """True when usage of this tier is billed outside the provider's cost report."""
        rule = self.tier_rule(provider, service_tier)
        return rule is not None and rule.billed_elsewhere


def _parse(raw: bytes, name: str, origin: str | None) -> tuple[_File, str]:
    try:
        data = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PriceTableError(f"{name}: not JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')})") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PriceTableError(f"{name}: {where or 'file'}: {first['msg']}") from None
    label = origin or (f"llm-usage {parsed.version}" if parsed.version else "llm-usage")
    return parsed, label


def _entries(parsed: _File, origin: str) -> PriceTable:
    return PriceTable(
        version=origin,
        tokens=tuple(
            TokenEntry(
                e.provider,
                e.model,
                tuple(sorted(e.when.items())),
                TokenRates(**e.per_mtok.model_dump()),
                e.source,
                e.checked,
                origin,
            )
            for e in parsed.tokens
        ),
        tiers=tuple(
            TierRule(e.provider, frozenset(e.service_tiers), e.billed_elsewhere, e.source, e.checked, origin)
            for e in parsed.tiers
        ),
        line_items=tuple(
            LineItemEntry(
                e.provider,
                e.kind,
                e.unit,
                e.price,
                e.per,
                e.model,
                e.line_item,
                tuple(sorted(e.variant.items())),
                e.per_day,
                e.source,
                e.checked,
                origin,
            )
            for e in parsed.line_items
        ),
        bill_only=tuple(
            BillOnly(e.provider, re.compile(e.pattern, re.IGNORECASE), e.label, e.source, origin)
            for e in parsed.bill_only
        ),
    )


def load(path: Path, *, admin: bool) -> PriceTable:
    """One price file, validated (``admin``: entries labelled by the file's hash).

    Raises:
        PriceTableError: unreadable, too large, not JSON, or an entry breaks a rule.
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PriceTableError(f"{path.name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise PriceTableError(f"{path.name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    origin = f"admin {hashlib.sha256(raw).hexdigest()[:8]}" if admin else None
    parsed, label = _parse(raw, path.name, origin)
    return _entries(parsed, label)


def combine(admin: PriceTable | None, shipped: PriceTable) -> PriceTable:
    """The admin's entries in front of the shipped ones."""
    if admin is None:
        return shipped
    return PriceTable(
        version=f"{shipped.version} + {admin.version}",
        tokens=admin.tokens + shipped.tokens,
        tiers=admin.tiers + shipped.tiers,
        line_items=admin.line_items + shipped.line_items,
        bill_only=admin.bill_only + shipped.bill_only,
    )


@lru_cache(maxsize=4)
def table_for(override: str = "") -> PriceTable:
    """The shipped table, with the admin file at ``override`` (a path, ``''`` for none) in front."""
    shipped = load(SHIPPED, admin=False)
    return combine(load(Path(override), admin=True) if override else None, shipped)


def active_table() -> PriceTable:
    """The table the settings name (``LLM_USAGE_PRICE_TABLE_FILE``), loaded once per path."""
    path = get_settings().price_table_file
    return table_for(str(path) if path else "")


__all__ = [
    "SHIPPED",
    "WHEN_KEYS",
    "BillOnly",
    "LineItemEntry",
    "PriceTable",
    "PriceTableError",
    "TierRule",
    "TokenEntry",
    "TokenRates",
    "active_table",
    "combine",
    "load",
    "table_for",
]
