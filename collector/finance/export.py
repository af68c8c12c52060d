"""Exports: FOCUS 1.2 (CSV or Parquet) and the plain normalised usage rows (CSV).

**FOCUS** (FinOps Open Cost and Usage Specification, provider-apis.md §9): every one of the 57
v1.2 columns (:data:`FOCUS_COLUMNS`, in the order of §9.2), then custom columns prefixed ``x_``
(§9.3: "Custom columns must be prefixed x_") for what FOCUS has no column for: the token counts
by type, the model, key, team, and where the money came from. One FOCUS row per usage row.

How money is written (design rule 5, the query layer's *preferred* basis): where a billed
source covers a (provider, account, UTC day), its billed rows carry the money and estimated rows
of that day are written with ``BilledCost`` 0 and their estimate in ``x_EstimatedCost`` (so
tokens are kept but nothing is counted twice); elsewhere the estimate is the cost, marked
``x_CostBasis = estimated``. Unpriced usage has cost 0 and ``x_CostBasis = unpriced`` (FOCUS
cost columns may not be null). So ``sum(BilledCost)`` equals ``llm-usage report``'s total for
the window. Proxy rows are never exported with the providers' numbers.

Token usage follows §9.4's practical mapping: ``ServiceCategory`` "AI and Machine Learning",
``ServiceSubcategory`` "Generative AI", the model in ``SkuId``, ``ConsumedQuantity`` in
``ConsumedUnit`` "Tokens" (input + output; other units such as images keep their own unit), and
``x_TokenType`` naming the token types the row holds.

**csv**: the ``usage`` rows with every field of :class:`collector.core.schema.UsageRecord`, as stored.

**parquet**: the FOCUS columns in Parquet (``pyarrow``), money as ``decimal128(38, 10)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from collector.core import csvout
from collector.core.catalog import PROVIDERS, SUBSET_KINDS, display_name
from collector.core.schema import RECORD_FIELDS
from collector.core.store import USAGE
from collector.query.billing import Coverage, DayBill, read_coverage

FORMATS = ("focus", "csv", "parquet")
#: FOCUS 1.2's 57 columns, in the order of provider-apis.md §9.2 (spec tag v1.2).
FOCUS_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)
X_COLUMNS: tuple[str, ...] = (
    "x_Provider",
    "x_Source",
    "x_Kind",
    "x_Account",
    "x_Model",
    "x_ModelRaw",
    "x_Project",
    "x_ApiKeyId",
    "x_UserId",
    "x_Team",
    "x_ServiceTier",
    "x_Batch",
    "x_LineItem",
    "x_Variant",
    "x_TokenType",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWrite5mTokens",
    "x_CacheWrite1hTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_Requests",
    "x_CostBasis",
    "x_Cost",
    "x_Counted",
    "x_EstimatedCost",
    "x_PriceVersion",
    "x_SourceRef",
)
EXPORT_COLUMNS = FOCUS_COLUMNS + X_COLUMNS
MONEY_COLUMNS = ("BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "x_Cost", "x_EstimatedCost")
QUANTITY_COLUMNS = ("ConsumedQuantity", "PricingQuantity")
TIME_COLUMNS = ("BillingPeriodEnd", "BillingPeriodStart", "ChargePeriodEnd", "ChargePeriodStart")
TOKEN_X = {
    "x_InputTokens": "input_tokens",
    "x_CacheReadTokens": "cache_read_tokens",
    "x_CacheWrite5mTokens": "cache_write_5m_tokens",
    "x_CacheWrite1hTokens": "cache_write_1h_tokens",
    "x_OutputTokens": "output_tokens",
    "x_ReasoningTokens": "reasoning_tokens",
    "x_Requests": "requests",
}
#: Model prefix -> publisher, for marketplaces that resell other publishers' models (§5, §6).
PUBLISHERS = {
    "anthropic.": "Anthropic",
    "claude": "Anthropic",
    "amazon.": "Amazon",
    "meta.": "Meta",
    "mistral": "Mistral AI",
    "gpt": "OpenAI",
    "o1": "OpenAI",
    "o3": "OpenAI",
    "o4": "OpenAI",
    "gemini": "Google",
    "llama": "Meta",
}


class ExportError(ValueError):
    """Bad export arguments (format, window, output)."""


@dataclass
class ExportResult:
    """What was written: rows, and the charged total per currency (``sum(BilledCost)``)."""

    path: str
    format: str
    rows: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)


@lru_cache(maxsize=8192)
def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(ts: datetime) -> tuple[datetime, datetime]:
    start = ts.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    return start, end


def _day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def billed_coverage(engine: Engine, since: datetime, until: datetime) -> Coverage:
    """Who bills each provider account-day of the window, and which source counts (design rule 5)."""
    return read_coverage(engine, since - timedelta(days=1), until)


def _usage_rows(engine: Engine, since: datetime, until: datetime, sources: tuple[str, ...]) -> Iterator[Any]:
    u = USAGE.c
    stmt = (
        select(USAGE)
        .where(u.bucket_start >= since, u.bucket_start < until, u.source.in_(sources))
        .order_by(u.bucket_start, u.provider, u.record_key)
    )
    with engine.connect() as conn:
        yield from conn.execution_options(yield_per=5000).execute(stmt).mappings()


def _publisher(provider: str, model: str) -> str:
    if provider in ("aws_bedrock", "azure_openai", "google", "openrouter", "fireworks", "groq"):
        low = model.lower().split("/")[-1]
        for prefix, name in PUBLISHERS.items():
            if low.startswith(prefix):
                return name
    return display_name(provider)


def _token_types(r: Any) -> str:
    names = []
    uncached = r["input_tokens"] - r["cache_read_tokens"] - r["cache_write_5m_tokens"] - r["cache_write_1h_tokens"]
    for name, count in (
        ("input", uncached),
        ("cache_read", r["cache_read_tokens"]),
        ("cache_write_5m", r["cache_write_5m_tokens"]),
        ("cache_write_1h", r["cache_write_1h_tokens"]),
        ("output", r["output_tokens"] - r["reasoning_tokens"]),
        ("reasoning", r["reasoning_tokens"]),
    ):
        if count:
            names.append(name)
    return ",".join(names)


def focus_row(r: Any, bill: DayBill | None) -> dict[str, Any]:
    """One usage row (a mapping of ``usage`` columns) as a FOCUS row; ``None`` means null.

    ``bill``: who bills this row's provider account and day (``None`` when no billed source
    does). ``BilledCost`` is what the report counts: a billed row of the source that counts, or an
    estimate on a day no bill covers; other rows carry 0 there, and their own amount in ``x_Cost``
    (``x_Counted`` says which), so the file re-imports to the very rows it came from.
    """
    basis = r["basis"]
    cost: Decimal | None = r["cost"]
    estimate = cost if basis == "estimated" else None
    if basis == "billed":
        counted = bill is not None and bill.counted == (r["source"], r["kind"])
    else:  # an estimate counts where no bill covers the day, unless its kind repeats another's usage
        counted = basis == "estimated" and bill is None and (r["provider"], r["kind"]) not in SUBSET_KINDS
    charged = cost if counted and cost is not None else Decimal(0)
    currency = r["currency"] or "USD"
    provider = r["provider"]
    known = PROVIDERS.get(provider)
    provider_name, issuer = (known.name, known.issuer) if known else (provider, provider)
    tokens = r["input_tokens"] + r["output_tokens"]
    quantity: Decimal | int | None
    if r["quantity_unit"] and r["quantity"]:
        quantity, unit = r["quantity"], r["quantity_unit"]
    elif tokens:
        quantity, unit = tokens, "Tokens"
    elif r["requests"]:
        quantity, unit = r["requests"], "Requests"
    else:
        quantity, unit = None, None
    period_start, period_end = _month(r["bucket_start"])
    model = r["model"]
    tags = {k: r[c] for k, c in (("team", "team"), ("api_key_id", "api_key_id"), ("user", "user_id")) if r[c]}
    row: dict[str, Any] = dict.fromkeys(EXPORT_COLUMNS)
    row.update(
        BilledCost=charged,
        BillingAccountId=r["account"] or provider,
        BillingAccountName=r["account"] or provider_name,
        BillingCurrency=currency,
        BillingPeriodStart=period_start,
        BillingPeriodEnd=period_end,
        ChargeCategory="Usage",
        ChargeDescription=" ".join(p for p in (provider_name, model, r["kind"], r["line_item"]) if p),
        ChargeFrequency="Usage-Based",
        ChargePeriodStart=r["bucket_start"],
        ChargePeriodEnd=r["bucket_end"],
        ConsumedQuantity=quantity,
        ConsumedUnit=unit,
        ContractedCost=charged,
        EffectiveCost=charged,
        InvoiceIssuerName=issuer,
        ListCost=charged,
        PricingCategory="Standard",
        PricingQuantity=quantity,
        PricingUnit=unit,
        ProviderName=provider_name,
        PublisherName=_publisher(provider, model),
        ResourceId=r["api_key_id"] or None,
        ResourceName=r["api_key_id"] or None,
        ResourceType="API Key" if r["api_key_id"] else None,
        ServiceCategory="AI and Machine Learning",
        ServiceName=f"{provider_name} {r['kind']}".strip(),
        ServiceSubcategory="Generative AI",
        SkuId=model or r["line_item"] or None,
        SkuMeter=unit,
        SubAccountId=r["project"] or None,
        SubAccountName=r["project"] or None,
        SubAccountType="Project" if r["project"] else None,
        Tags=json.dumps(tags, sort_keys=True) if tags else None,
        x_Provider=provider,
        x_Source=r["source"],
        x_Kind=r["kind"],
        x_Account=r["account"],
        x_Model=model,
        x_ModelRaw=r["model_raw"],
        x_Project=r["project"],
        x_ApiKeyId=r["api_key_id"],
        x_UserId=r["user_id"],
        x_Team=r["team"],
        x_ServiceTier=r["service_tier"],
        x_Batch="true" if r["batch"] else "false",
        x_LineItem=r["line_item"],
        x_Variant=r["variant"],
        x_TokenType=_token_types(r),
        x_CostBasis=basis,
        x_Cost=cost,
        x_Counted="true" if counted else "false",
        x_EstimatedCost=estimate,
        x_PriceVersion=r["price_version"],
        x_SourceRef=r["source_ref"],
    )
    for column, name in TOKEN_X.items():
        row[column] = r[name]
    return row


def iter_focus(engine: Engine, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """FOCUS rows of every provider usage row whose bucket starts in ``[since, until)``."""
    coverage = billed_coverage(engine, since, until)
    for r in _usage_rows(engine, since, until, ("api", "csv")):
        yield focus_row(r, coverage.get((r["provider"], r["account"], _day(r["bucket_start"]))))


def _cell(value: Any) -> str:
    """One CSV cell; most cells are text or empty, so those are checked first (hot loop)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is datetime:
        return _iso(value)
    if kind is Decimal:
        return f"{value:f}"
    return str(value)


def write_focus_csv(engine: Engine, since: datetime, until: datetime, fp: IO[str]) -> ExportResult:
    """FOCUS rows as CSV (header = :data:`EXPORT_COLUMNS`) to a text file object."""
    result = ExportResult(getattr(fp, "name", "-"), "focus")
    writer = csvout.writer(fp)
    writer.writerow(EXPORT_COLUMNS)
    for row in iter_focus(engine, since, until):
        writer.writerow([_cell(row[c]) for c in EXPORT_COLUMNS])
        _count(result, row)
    return result


def _count(result: ExportResult, row: dict[str, Any]) -> None:
    result.rows += 1
    currency = row["BillingCurrency"]
    result.totals[currency] = result.totals.get(currency, Decimal(0)) + row["BilledCost"]


def write_usage_csv(
    engine: Engine, since: datetime, until: datetime, fp: IO[str], *, include_proxy: bool = False
) -> ExportResult:
    """The stored usage rows, every :class:`~collector.core.schema.UsageRecord` field, as CSV."""
    result = ExportResult(getattr(fp, "name", "-"), "csv")
    writer = csvout.writer(fp)
    writer.writerow(RECORD_FIELDS)
    sources = ("api", "csv", "proxy") if include_proxy else ("api", "csv")
    for r in _usage_rows(engine, since, until, sources):
        writer.writerow(
            [_cell(r[name]) if name != "batch" else ("true" if r[name] else "false") for name in RECORD_FIELDS]
        )
        result.rows += 1
        if r["cost"] is not None:
            result.totals[r["currency"]] = result.totals.get(r["currency"], Decimal(0)) + r["cost"]
    return result


def parquet_schema() -> Any:
    """The Arrow schema of the FOCUS Parquet file."""
    import pyarrow as pa

    fields = []
    for name in EXPORT_COLUMNS:
        if name in MONEY_COLUMNS:
            typ = pa.decimal128(38, 10)
        elif name in QUANTITY_COLUMNS:
            typ = pa.decimal128(38, 6)
        elif name in TIME_COLUMNS:
            typ = pa.timestamp("s", tz="UTC")
        elif name in TOKEN_X:
            typ = pa.int64()
        else:
            typ = pa.string()
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


def write_focus_parquet(
    engine: Engine, since: datetime, until: datetime, path: Path, batch_rows: int = 20_000
) -> ExportResult:
    """FOCUS rows as a Parquet file, written in row groups of ``batch_rows``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    result = ExportResult(str(path), "parquet")
    batch: list[dict[str, Any]] = []

    def flush(writer: Any) -> None:
        if batch:
            columns = {name: [_arrow(r[name], name) for r in batch] for name in EXPORT_COLUMNS}
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            batch.clear()

    with pq.ParquetWriter(str(path), schema) as writer:
        for row in iter_focus(engine, since, until):
            batch.append(row)
            _count(result, row)
            if len(batch) >= batch_rows:
                flush(writer)
        flush(writer)
    return result


def _arrow(value: Any, name: str) -> Any:
    if value is None:
        return None
    if name in QUANTITY_COLUMNS:
        return Decimal(value).quantize(Decimal("0.000001"))
    if name in MONEY_COLUMNS:
        return Decimal(value).quantize(Decimal("0.0000000001"))
    if isinstance(value, datetime | Decimal | int) and name not in TOKEN_X and name not in TIME_COLUMNS:
        return str(value)
    return value


def export(engine: Engine, fmt: str, since: datetime, until: datetime, output: Path | None) -> ExportResult:
    """Write one export; ``output`` None means standard output (CSV formats only).

    Raises:
        ExportError: an unknown format, an empty window, or Parquet to standard output.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if until <= since:
        raise ExportError(f"--to: the window {since.date()} .. {until.date()} is empty")
    if fmt == "parquet":
        if output is None:
            raise ExportError("--output: Parquet is binary; give a file name")
        return write_focus_parquet(engine, since, until, output)
    import sys

    if output is None:
        return (write_focus_csv if fmt == "focus" else write_usage_csv)(engine, since, until, sys.stdout)
    with output.open("w", newline="", encoding="utf-8") as fp:
        return (write_focus_csv if fmt == "focus" else write_usage_csv)(engine, since, until, fp)
