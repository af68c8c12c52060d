"""Estimated cost from the public price tables (design.md, "Pricing").

A usage row is priced for what it says: its service tier (priority, flex ...), its batch flag,
the context-window tier the provider grouped it by (Anthropic's ``context_window`` in
``variant``), its cache writes by lifetime, and, for rows without tokens, its quantity (images,
characters, seconds, calls, sessions, stored bytes). Prices come from ``genai-prices`` (its
bundled snapshot, offline) where it has them, and from the product's own table
(:mod:`collector.core.price_table`) where it does not; every estimate records which priced it in
``price_version`` (``genai-prices 0.2.3``, ``genai-prices 0.2.3 + llm-usage 2026.11.1``,
``llm-usage 2026.11.1``, or an admin file's ``admin <hash>``). A model or a tier no table knows
stays *unpriced* (never $0, never guessed at another tier's rate).

Long-context tiers are applied only where the row says so (``context_window=200k-1M``): a day of
tokens summed would cross every threshold, so aggregated buckets are never put in a tier by their
size. The proxy, which sees single requests, asks :func:`estimate_request`, which may.

The library's own ``calc_price`` costs ~90 µs a call; importers price a million rows, so the
unit prices are looked up once per (provider, model, day, context) and the arithmetic is done
here in ``Decimal``. ``tests/core/test_pricing.py`` checks it against ``calc_price``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, TieredPrices

from collector.core.catalog import price_id
from collector.core.model_ids import canonical_model
from collector.core.price_table import PriceTable, TokenEntry, active_table, table_for
from collector.core.schema import UsageRecord
from collector.core.settings import get_settings

#: ``genai-prices`` and its version, recorded on every estimate it priced (design rule 6).
PRICE_VERSION = f"genai-prices {genai_prices.__version__}"
CURRENCY = "USD"
_MILLION = Decimal(1_000_000)
_DAY_SECONDS = Decimal(86_400)
#: Service-tier values that mean the standard rate (OpenAI ``default``/``auto``, Anthropic ``standard``).
STANDARD_TIERS = frozenset({"", "default", "standard", "auto", "standard_only"})
#: ``context_window`` values of Anthropic's usage report that are charged at the long-context rate
#: (provider-apis.md §2.3: ``0-200k`` and ``200k-1M``).
LONG_CONTEXT_WINDOWS = frozenset({"200k-1M"})
#: OpenAI names a fine-tuned model ``ft:<base model>:<org>:<suffix>:<id>``; inference is charged at
#: the fine-tuned rate of the base model (https://platform.openai.com/docs/guides/fine-tuning).
_FINE_TUNED = {"openai": re.compile(r"^ft:([^:]+):")}
_FIELDS = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
#: genai-prices' price attribute of each field (a 5-minute write is its generic cache write).
_GENAI_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write_5m": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
}
#: Non-token usage genai-prices prices: (line item or kind, unit) -> (price attribute, units per price).
_GENAI_QUANTITIES: dict[tuple[str, str], tuple[tuple[str, ...], Decimal]] = {
    ("audio_speeches", "characters"): (("input_mchars",), _MILLION),
    ("audio_transcriptions", "seconds"): (("audio_hours", "input_audio_hours"), Decimal(3600)),
    ("web_search_calls", "calls"): (("web_searches_kcount",), Decimal(1000)),
    ("web_search", "calls"): (("web_searches_kcount",), Decimal(1000)),
}


@dataclass(frozen=True, slots=True)
class PriceContext:
    """How a usage row was charged beyond its token counts (design.md, "Pricing").

    ``service_tier`` is ``''`` for the standard rate; ``batch`` covers OpenAI's batch flag and
    Anthropic's ``batch`` tier; ``long_context`` is set only when the provider grouped the row by
    a long-context window; ``speed`` is Anthropic's ``fast`` mode.
    """

    service_tier: str = ""
    batch: bool = False
    long_context: bool = False
    speed: str = ""

    def when(self, *, fine_tuned: bool = False) -> dict[str, str]:
        """The context as a price-table condition (:data:`collector.core.price_table.WHEN_KEYS`)."""
        out: dict[str, str] = {}
        if self.batch:
            out["processing"] = "batch"
        elif self.service_tier:
            out["service_tier"] = self.service_tier
        if self.long_context:
            out["context_window"] = "200k-1M"
        if self.speed:
            out["speed"] = self.speed
        if fine_tuned:
            out["fine_tuned"] = "yes"
        return out

    def genai(self) -> dict[str, str]:
        """The ``price_context`` genai-prices selects variants by (long context is a tier there)."""
        return {k: v for k, v in self.when().items() if k != "context_window"}


STANDARD = PriceContext()


def parse_variant(text: str) -> dict[str, str]:
    """``size=1024x1024;source=image.generation`` as a dict (providers write ``k=v;k=v``)."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip()] = value.strip()
    return out


def context_of(record: UsageRecord) -> PriceContext:
    """What ``record`` says about its rate: tier, batch, long-context window, speed."""
    return _context(record.service_tier, record.batch, record.variant)


@lru_cache(maxsize=4096)
def _context(service_tier: str, batch: bool, variant_text: str) -> PriceContext:
    tier = service_tier.strip().lower()
    batch = batch or tier == "batch"
    variant = parse_variant(variant_text) if variant_text else {}
    speed = variant.get("speed", "").lower()
    return PriceContext(
        service_tier="" if batch or tier in STANDARD_TIERS else tier,
        batch=batch,
        long_context=variant.get("context_window", "") in LONG_CONTEXT_WINDOWS,
        speed="" if speed in ("", "standard") else speed,
    )


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """USD per million tokens for one model on one day in one context, and who priced it."""

    model_id: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    version: str = PRICE_VERSION

    def cost(
        self,
        input_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        output_tokens: int = 0,
    ) -> Decimal:
        """USD for these tokens; ``input_tokens`` is *total* input (design rule 4)."""
        uncached = input_tokens - cache_read_tokens - cache_write_5m_tokens - cache_write_1h_tokens
        total = (
            uncached * self.input
            + cache_read_tokens * self.cache_read
            + cache_write_5m_tokens * self.cache_write_5m
            + cache_write_1h_tokens * self.cache_write_1h
            + output_tokens * self.output
        )
        return total / _MILLION


# -- genai-prices ---------------------------------------------------------------------------------


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@lru_cache(maxsize=8192)
def _genai_model(provider: str, model: str) -> ModelInfo | None:
    """genai-prices' model for ``model`` as a request names it, or by its own id.

    The canonical ids rows are grouped under are genai-prices ids, and some ids do not match
    their own model's request patterns (``ft:gpt-4o-mini`` matches ``ft:gpt-4o-mini-2024-...``).
    """
    snapshot = data_snapshot.get_snapshot()
    try:
        _, info = snapshot.find_provider_model(model, None, price_id(provider), None)
    except LookupError:
        pass
    else:
        return info
    for table in snapshot.providers:
        if table.id == price_id(provider):
            return next((m for m in table.models if m.id == model), None)
    return None


def _covers(info: ModelInfo, moment: datetime, wanted: dict[str, str]) -> bool:
    """True when genai-prices has an active variant for every key of ``wanted``."""
    keys: set[str] = set()
    for v in info.price_variants or ():
        if v.constraint is not None and not v.constraint.active(moment):
            continue
        if v.when and all(wanted.get(k) == val for k, val in v.when.items()):
            keys |= set(v.when)
    return set(wanted) <= keys


def _value(price: object, long_context: bool) -> Decimal | None:
    if isinstance(price, TieredPrices):
        return price.tiers[-1].price if long_context and price.tiers else price.base
    return price if isinstance(price, Decimal) else None


def _genai_rates(info: ModelInfo, day: date, context: PriceContext) -> dict[str, Decimal | None] | None:
    """genai-prices' per-MTok rates in ``context``; None when it does not price that context."""
    moment = _noon(day)
    wanted = context.genai()
    if wanted and not _covers(info, moment, wanted):
        return None
    prices = info.get_prices(moment, wanted or None)
    if context.long_context and not isinstance(getattr(prices, "input_mtok", None), TieredPrices):
        return None
    return {f: _value(getattr(prices, key, None), context.long_context) for f, key in _GENAI_KEYS.items()}


def _standard_genai(info: ModelInfo | None, day: date) -> dict[str, Decimal | None]:
    if info is None:
        return {}
    prices = info.get_prices(_noon(day))
    return {f: _value(getattr(prices, key, None), False) for f, key in _GENAI_KEYS.items()}


# -- token prices ---------------------------------------------------------------------------------


def fine_tuned_base(provider: str, model: str) -> str:
    """The canonical id of the base model of a fine-tuned ``model`` (``''`` when it is not one)."""
    pattern = _FINE_TUNED.get(provider)
    match = pattern.match(model) if pattern else None
    return canonical_model(provider, match.group(1)) if match else ""


def _layers(
    provider: str, model: str, day: date, context: PriceContext, table: PriceTable | None
) -> tuple[list[tuple[dict[str, Decimal | None], str]], str] | None:
    """The price sources for a model in a context, most authoritative first, and the model id.

    An admin's table entry comes first; then genai-prices (its variant for the context); then
    the shipped table's entry; then, for a context genai-prices or the table priced, the model's
    standard genai-prices rates for the prices that entry leaves out (as genai-prices' own
    variants do). None when nothing prices the model in this context.
    """
    info = _genai_model(provider, model)
    base = fine_tuned_base(provider, model)
    key = base or (info.id if info else canonical_model(provider, model))
    if table is not None and context.service_tier:
        rule = table.tier_rule(provider, context.service_tier)
        if rule is not None:  # a tier charged at the standard rates (Anthropic Priority Tier)
            context = replace(context, service_tier="")
    genai = _genai_rates(info, day, context) if info is not None else None
    entry: TokenEntry | None = None
    if table is not None:
        entry = table.token_entry(provider, key, context.when(fine_tuned=bool(base)))
    if genai is None and entry is None:
        return None
    layers: list[tuple[dict[str, Decimal | None], str]] = []
    table_layer = [({f: getattr(entry.rates, f) for f in _FIELDS}, entry.origin)] if entry is not None else []
    if entry is not None and entry.origin.startswith("admin"):
        layers += table_layer
    if genai is not None:
        layers.append((genai, PRICE_VERSION))
    if entry is not None and not entry.origin.startswith("admin"):
        layers += table_layer
    if context != STANDARD and not context.long_context:
        layers.append((_standard_genai(info, day), PRICE_VERSION))
    return layers, (info.id if info is not None else key)


@lru_cache(maxsize=16_384)
def _unit_prices(
    provider: str, model: str, day: date, context: PriceContext, with_table: bool, override: str
) -> UnitPrices | None:
    table = table_for(override) if with_table else None
    found = _layers(provider, model, day, context, table)
    if found is None:
        return None
    layers, model_id = found
    values: dict[str, Decimal | None] = {}
    used: list[str] = []
    rule = table.tier_rule(provider, context.service_tier) if table is not None and context.service_tier else None
    if rule is not None:
        used.append(rule.origin)
    for f in _FIELDS:
        for prices, origin in layers:
            if prices.get(f) is not None:
                values[f] = prices[f]
                used.append(origin)
                break
    inp, out = values.get("input"), values.get("output")
    if inp is None and out is None:
        return None
    inp = inp if inp is not None else Decimal(0)
    read = values.get("cache_read")
    write = values.get("cache_write_5m")
    write = write if write is not None else inp
    write_1h = values.get("cache_write_1h")
    return UnitPrices(
        model_id=model_id,
        input=inp,
        output=out if out is not None else Decimal(0),
        cache_read=read if read is not None else inp,
        cache_write_5m=write,
        cache_write_1h=write_1h if write_1h is not None else write,
        version=" + ".join(dict.fromkeys(sorted(used, key=lambda o: o != PRICE_VERSION))),
    )


def _override() -> str:
    path = get_settings().price_table_file
    return str(path) if path else ""


def unit_prices(
    provider: str, model: str, day: date, context: PriceContext = STANDARD, *, with_table: bool = True
) -> UnitPrices | None:
    """Prices for ``model`` at ``provider`` on ``day`` in ``context``; None when nothing prices it.

    ``with_table=False`` asks genai-prices alone (what reconciliation calls "tokens at standard
    rates"). Missing cache prices fall back to the nearest sensible one (a 1h write to the
    generic write price, a write or read to the input price), which is what the providers
    charged before they split those prices out.
    """
    if not model:
        return None
    if not with_table and context != STANDARD:
        return None
    return _unit_prices(provider, model, day, context, with_table, _override() if with_table else "")


def estimate_tokens_cost(
    provider: str,
    model: str,
    day: date,
    *,
    input_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    output_tokens: int = 0,
    context: PriceContext = STANDARD,
    with_table: bool = True,
) -> Decimal | None:
    """USD cost of a bucket of tokens in ``context``; None when nothing prices the model there.

    ``input_tokens`` is total input (design rule 4), so the uncached part is what remains after
    cache reads and writes.
    """
    prices = unit_prices(provider, model, day, context, with_table=with_table)
    if prices is None:
        return None
    return prices.cost(input_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens)


def standard_tokens_cost(
    provider: str,
    model: str,
    day: date,
    *,
    input_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    output_tokens: int = 0,
) -> Decimal | None:
    """The same tokens at genai-prices' standard rates alone (tier, batch and table ignored).

    This is what the product estimated before it priced tiers and line items; reconciliation
    shows it as the first step from usage to bill.
    """
    prices = unit_prices(provider, model, day, STANDARD, with_table=False)
    if prices is None:
        return None
    return prices.cost(input_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens, output_tokens)


# -- quantities (images, characters, seconds, calls, sessions, bytes) -------------------------------


def _genai_quantity_price(record: UsageRecord, model: str, day: date) -> Decimal | None:
    keys = _GENAI_QUANTITIES.get((record.line_item or record.kind, record.quantity_unit))
    info = _genai_model(record.provider, model) if keys and model else None
    if info is None or keys is None:
        return None
    prices = info.get_prices(_noon(day))
    attrs, per = keys
    for attr in attrs:
        value = _value(getattr(prices, attr, None), False)
        if value is not None:
            return value / per
    return None


def quantity_cost(record: UsageRecord) -> tuple[Decimal, str] | None:
    """USD for a row's non-token quantity and who priced it; None when no table prices it.

    Levels (vector-store bytes, a *level* over the bucket: design rule 7) are priced per day and
    prorated over the bucket's duration.
    """
    if not record.quantity_unit or record.quantity <= 0:
        return None
    day = record.bucket_start.date()
    table = active_table()
    model = canonical_model(record.provider, record.model_raw or record.model) if record.model else ""
    variant = parse_variant(record.variant) if record.variant else {}
    entry = table.line_item(record.provider, record.kind, record.quantity_unit, model, record.line_item, variant)
    if entry is None or not entry.origin.startswith("admin"):
        for name in dict.fromkeys((record.model_raw, model)):
            per_unit = _genai_quantity_price(record, name, day) if name else None
            if per_unit is not None:
                return record.quantity * per_unit, PRICE_VERSION
    if entry is None:
        return None
    cost = record.quantity * entry.price / entry.per
    if entry.per_day:
        seconds = Decimal(int((record.bucket_end - record.bucket_start).total_seconds()))
        cost = cost * seconds / _DAY_SECONDS
    return cost, entry.origin


# -- the ingest path's two functions ----------------------------------------------------------------


def _is_quantity_row(record: UsageRecord) -> bool:
    return bool(record.quantity and record.quantity_unit) and not (record.input_tokens or record.output_tokens)


def wants_estimate(record: UsageRecord) -> bool:
    """True for usage that carries tokens, a model or a quantity but no money yet.

    Billed rows and rows already priced (the proxy prices each request; a re-imported export
    keeps its estimate) are left as they are.
    """
    return (
        record.basis == "unpriced"
        and record.cost is None
        and not record.price_version
        and bool(
            record.input_tokens
            or record.output_tokens
            or (record.quantity and record.quantity_unit)
            or (record.model and not record.quantity)
        )
    )


def estimate(record: UsageRecord) -> UsageRecord:
    """The record priced from the tables: ``estimated`` with a cost, or ``unpriced`` (never $0).

    The source's own model id is looked up first (a reseller's table may know only its own
    spelling), then the canonical one.
    """
    if _is_quantity_row(record):
        found = quantity_cost(record)
        if found is None:
            return record
        cost, version = found
        return replace(record, cost=cost, currency=CURRENCY, basis="estimated", price_version=version)
    day = record.bucket_start.date()
    context = context_of(record)
    prices = None
    for name in dict.fromkeys((record.model_raw, record.model)):
        prices = unit_prices(record.provider, name, day, context) if name else None
        if prices is not None:
            break
    if prices is None:
        return record
    cost = prices.cost(
        record.input_tokens,
        record.cache_read_tokens,
        record.cache_write_5m_tokens,
        record.cache_write_1h_tokens,
        record.output_tokens,
    )
    return replace(record, cost=cost, currency=CURRENCY, basis="estimated", price_version=prices.version)


# -- single requests (the proxy and OpenTelemetry spans) --------------------------------------------


def estimate_request_cost(
    provider: str,
    model: str,
    at: datetime,
    *,
    input_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    output_tokens: int = 0,
    price_context: dict[str, str] | None = None,
) -> Decimal | None:
    """USD cost of *one request*, with long-context tiers (for the proxy); None if unknown."""
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_5m_tokens + cache_write_1h_tokens,
        output_tokens=output_tokens,
    )
    try:
        result = genai_prices.calc_price(
            usage,
            model,
            provider_id=price_id(provider),
            genai_request_timestamp=at,
            price_context=price_context or None,
        )
    except LookupError:
        return None
    return result.total_price


@lru_cache(maxsize=4096)
def _flat_prices(provider: str, model: str, day: date) -> bool:
    """True when the model has no long-context tiers on ``day`` (then base rates are exact)."""
    info = _genai_model(provider, model)
    if info is None:
        return False
    prices = info.get_prices(_noon(day))
    return not any(isinstance(getattr(prices, a, None), TieredPrices) for a in dir(prices) if a.endswith("_mtok"))


def estimate_request(
    provider: str,
    model: str,
    at: datetime,
    *,
    input_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    output_tokens: int = 0,
    service_tier: str = "",
) -> Decimal | None:
    """USD cost of one request (the proxy's view), tiers included; None if unknown.

    Models without long-context tiers are priced from the cached unit prices (a few
    microseconds); tiered ones through ``genai-prices``' calculator (~100 µs), since one request
    may cross a tier threshold (design.md, "Pricing": only single requests may be priced at a
    tier). A service tier genai-prices has no variant for is priced from the product's table.
    """
    tokens: dict[str, Any] = {
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_5m_tokens": cache_write_5m_tokens,
        "cache_write_1h_tokens": cache_write_1h_tokens,
        "output_tokens": output_tokens,
    }
    tier = service_tier.strip().lower()
    context = STANDARD if tier in STANDARD_TIERS else PriceContext(service_tier=tier, batch=tier == "batch")
    if context != STANDARD:
        info = _genai_model(provider, model)
        if info is not None and not _flat_prices(provider, model, at.date()) and _covers(info, at, context.genai()):
            return estimate_request_cost(provider, model, at, price_context=context.genai(), **tokens)
        return estimate_tokens_cost(provider, model, at.date(), context=context, **tokens)
    if _flat_prices(provider, model, at.date()):
        return estimate_tokens_cost(provider, model, at.date(), **tokens)
    return estimate_request_cost(provider, model, at, **tokens)


def clear_caches() -> None:
    """Forget cached prices and tables (after the admin's price file or the settings change)."""
    for fn in (_unit_prices, _genai_model, _flat_prices, table_for, canonical_model):
        fn.cache_clear()


__all__ = [
    "CURRENCY",
    "PRICE_VERSION",
    "STANDARD",
    "PriceContext",
    "UnitPrices",
    "clear_caches",
    "context_of",
    "estimate",
    "estimate_request",
    "estimate_request_cost",
    "estimate_tokens_cost",
    "fine_tuned_base",
    "parse_variant",
    "quantity_cost",
    "standard_tokens_cost",
    "unit_prices",
    "wants_estimate",
]
