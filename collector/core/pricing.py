"""Estimated cost from the public price table (design.md, "Pricing").

Prices come from ``genai-prices`` (its bundled snapshot, offline). Aggregated buckets are priced
at *base* rates: long-context tiers apply per request, and a day of tokens summed would cross
every threshold. Only the proxy, which sees single requests, asks for tiers.

The library's own ``calc_price`` costs ~90 µs a call; importers price a million rows, so the
unit prices are looked up once per (provider, model, day) and the arithmetic is done here in
``Decimal``. ``tests/collector/test_pricing.py`` checks it against ``calc_price``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

from collector.core.catalog import price_id
from collector.core.schema import UsageRecord

#: Which price list to use, and its version, recorded on every estimate (design rule 6).
PRICE_VERSION = f"genai-prices {genai_prices.__version__}"
CURRENCY = "USD"
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Base USD prices per million tokens for one model on one day."""

    model_id: str
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal


def _base(value: object) -> Decimal | None:
    if isinstance(value, TieredPrices):
        return value.base
    return value if isinstance(value, Decimal) else None


@lru_cache(maxsize=4096)
def unit_prices(provider: str, model: str, day: date) -> UnitPrices | None:
    """Base-tier prices for ``model`` at ``provider`` on ``day``; None when the model is unknown.

    Missing cache prices fall back to the nearest sensible one (a 1h write to the generic write
    price, a write or read to the input price), which is what the providers charged before they
    split those prices out.
    """
    if not model:
        return None
    snapshot = data_snapshot.get_snapshot()
    try:
        _, info = snapshot.find_provider_model(model, None, price_id(provider), None)
    except LookupError:
        return None
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    prices = info.get_prices(moment)
    inp = _base(prices.input_mtok)
    out = _base(prices.output_mtok)
    if inp is None and out is None:
        return None
    inp = inp or Decimal(0)
    write = _base(prices.cache_write_mtok) or inp
    return UnitPrices(
        model_id=info.id,
        input=inp,
        output=out or Decimal(0),
        cache_read=_base(prices.cache_read_mtok) or inp,
        cache_write_5m=_base(getattr(prices, "cache_write_5m_mtok", None)) or write,
        cache_write_1h=_base(prices.cache_write_1h_mtok) or write,
    )


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
) -> Decimal | None:
    """USD cost of a bucket of tokens at base rates; None when the model is not in the table.

    ``input_tokens`` is total input (design rule 4), so the uncached part is what remains after
    cache reads and writes.
    """
    prices = unit_prices(provider, model, day)
    if prices is None:
        return None
    uncached = input_tokens - cache_read_tokens - cache_write_5m_tokens - cache_write_1h_tokens
    total = (
        uncached * prices.input
        + cache_read_tokens * prices.cache_read
        + cache_write_5m_tokens * prices.cache_write_5m
        + cache_write_1h_tokens * prices.cache_write_1h
        + output_tokens * prices.output
    )
    return total / _MILLION


def wants_estimate(record: UsageRecord) -> bool:
    """True for usage that carries tokens (or a model) but no money yet: it gets an estimate.

    Billed rows, rows already priced (the proxy prices each request; a re-imported export keeps
    its estimate) and pure quantity rows (images, seconds, bytes: no token price applies) are left
    as they are.
    """
    return (
        record.basis == "unpriced"
        and record.cost is None
        and not record.price_version
        and bool(record.input_tokens or record.output_tokens or (record.model and not record.quantity))
    )


def estimate(record: UsageRecord) -> UsageRecord:
    """The record priced from the table: ``estimated`` with a cost, or ``unpriced`` (never $0).

    The source's own model id is looked up first (a reseller's table may know only its own
    spelling), then the canonical one.
    """
    day = record.bucket_start.date()
    model = record.model_raw if unit_prices(record.provider, record.model_raw, day) else record.model
    cost = estimate_tokens_cost(
        record.provider,
        model,
        day,
        input_tokens=record.input_tokens,
        cache_read_tokens=record.cache_read_tokens,
        cache_write_5m_tokens=record.cache_write_5m_tokens,
        cache_write_1h_tokens=record.cache_write_1h_tokens,
        output_tokens=record.output_tokens,
    )
    if cost is None:
        return record
    return replace(record, cost=cost, currency=CURRENCY, basis="estimated", price_version=PRICE_VERSION)


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
) -> Decimal | None:
    """USD cost of *one request*, with long-context tiers (for the proxy); None if unknown."""
    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_5m_tokens + cache_write_1h_tokens,
        output_tokens=output_tokens,
    )
    try:
        result = genai_prices.calc_price(usage, model, provider_id=price_id(provider), genai_request_timestamp=at)
    except LookupError:
        return None
    return result.total_price


@lru_cache(maxsize=4096)
def _flat_prices(provider: str, model: str, day: date) -> bool:
    """True when the model has no long-context tiers on ``day`` (then base rates are exact)."""
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, price_id(provider), None)
    except LookupError:
        return False
    prices = info.get_prices(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
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
) -> Decimal | None:
    """USD cost of one request (the proxy's view), long-context tiers included; None if unknown.

    Models without tiers are priced from the cached unit prices (a few microseconds); tiered
    ones through ``genai-prices``' calculator (~100 µs), since one request may cross a tier
    threshold (design.md, "Pricing": only single requests may be priced at a tier).
    """
    tokens = {
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cache_write_5m_tokens": cache_write_5m_tokens,
        "cache_write_1h_tokens": cache_write_1h_tokens,
        "output_tokens": output_tokens,
    }
    if _flat_prices(provider, model, at.date()):
        return estimate_tokens_cost(provider, model, at.date(), **tokens)
    return estimate_request_cost(provider, model, at, **tokens)
