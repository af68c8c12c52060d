"""FinOps FOCUS 1.0-1.2 cost-and-usage exports (AWS, Azure and Google Cloud all export FOCUS).

Columns are FOCUS 1.2's (provider-apis.md §9.2); FOCUS 1.3 renames ``ProviderName`` to
``ServiceProviderName`` (§9.1), accepted as a variant. FOCUS has no token columns (§9.4):
tokens are ``ConsumedQuantity`` in a ``ConsumedUnit`` such as ``Tokens`` or ``1000 Tokens``
(§9.3), and their direction is read from ``SkuMeter`` / ``ChargeDescription``.

Money is ``BilledCost`` (what is invoiced), basis ``billed``; ``EffectiveCost`` (amortised)
goes to ``details`` when it differs. Credits, refunds and other non-usage charges keep their
``ChargeCategory`` in ``line_item``, so they are separate (negative) rows, never netted into a
usage row. By default only AI rows are kept: ``ServiceCategory = "AI and Machine Learning"``
or a service named in ``LLM_USAGE_IMPORT_AI_SERVICES``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from collector.core.catalog import provider_id
from collector.core.csvout import unescape_cell
from collector.core.schema import TOKEN_FIELDS, UsageRecord
from importers import _common

if TYPE_CHECKING:
    import pyarrow as pa
from importers.base import (
    END_RULE,
    BatchMapper,
    ColumnBatch,
    Columns,
    ImportContext,
    Importer,
    RowError,
    RowMapper,
    slug,
    token_direction,
    unit_multiplier,
)

#: Custom columns of this project's own FOCUS export (collector/export.py; §9.3: custom columns
#: are ``x_``-prefixed). When a file has them they carry, exactly, what FOCUS has no column for:
#: token counts by type, requests, the key, user, team, tier and the provider id; so an export
#: re-imports to the same money and tokens.
OWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "x_provider": ("x_Provider",),
    "x_input_tokens": ("x_InputTokens",),
    "x_cache_read_tokens": ("x_CacheReadTokens",),
    "x_cache_write_5m_tokens": ("x_CacheWrite5mTokens",),
    "x_cache_write_1h_tokens": ("x_CacheWrite1hTokens",),
    "x_output_tokens": ("x_OutputTokens",),
    "x_reasoning_tokens": ("x_ReasoningTokens",),
    "x_requests": ("x_Requests",),
    "x_api_key_id": ("x_ApiKeyId",),
    "x_user_id": ("x_UserId",),
    "x_team": ("x_Team",),
    "x_service_tier": ("x_ServiceTier",),
    "x_batch": ("x_Batch",),
    "x_line_item": ("x_LineItem",),
    "x_variant": ("x_Variant",),
    "x_cost_basis": ("x_CostBasis",),
}
#: Own-export columns that restore a row's identity and money exactly; older exports may lack
#: the ones added later (``x_Account``, ``x_ModelRaw``, ``x_Cost``), then FOCUS columns stand in.
IDENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "x_source": ("x_Source",),
    "x_kind": ("x_Kind",),
    "x_account": ("x_Account",),
    "x_project": ("x_Project",),
    "x_model_raw": ("x_ModelRaw",),
    "x_cost": ("x_Cost",),
    "x_estimated_cost": ("x_EstimatedCost",),
    "x_price_version": ("x_PriceVersion",),
}
#: Record fields counted in the own-export columns, in :data:`OWN_COLUMNS` order.
OWN_COUNTS = TOKEN_FIELDS
AI_CATEGORY = "ai and machine learning"
USAGE = "usage"
#: (input, cache_read, cache_write_5m, cache_write_1h, output) slots each direction fills.
SLOTS: dict[str, tuple[int, ...]] = {
    "input": (0,),
    "cache_read": (0, 1),
    "cache_write": (0, 2),
    "cache_write_1h": (0, 3),
    "output": (4,),
}


def provider_for(provider_name: str, service: str) -> str:
    """Our provider id for a FOCUS ProviderName + ServiceName (ids as in collector/pricing.py)."""
    p, s = provider_name.lower(), service.lower()
    if "amazon" in p or "aws" in p:
        return "aws_bedrock" if "bedrock" in s else "aws"
    if "google" in p or "gcp" in p:
        return "google"
    if "microsoft" in p or "azure" in p:
        ai = ("openai", "ai services", "cognitive", "foundry")
        return "azure_openai" if any(a in s for a in ai) else "azure"
    return provider_id(provider_name) or slug(provider_name) or "unknown"


def model_for(provider: str, meter: str, description: str) -> str:
    """The model named in a SKU meter or description, by the provider's own naming (§3.2, §5.2, §6.2)."""
    if provider == "aws_bedrock":
        from importers.aws_cur import parse_usage_type

        model = parse_usage_type(meter).model
        if model:
            return model
    return _common.model_from_text(meter) or _common.model_from_text(description)


class FocusImporter(Importer):
    """FOCUS 1.0-1.2 (and 1.3 draft) CSV exports."""

    name = "focus"
    title = "FinOps FOCUS cost and usage export (AWS, Azure, Google Cloud, others)"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "billed_cost": ("BilledCost",),
        "effective_cost": ("EffectiveCost",),
        "start": ("ChargePeriodStart",),
        "end": ("ChargePeriodEnd",),
        "currency": ("BillingCurrency",),
        "service": ("ServiceName",),
        "category": ("ServiceCategory",),
        "provider": ("ProviderName", "ServiceProviderName", "PublisherName"),
        "billing_account": ("BillingAccountId",),
        "sub_account": ("SubAccountId",),
        "resource": ("ResourceId",),
        "sku": ("SkuId", "SkuPriceId"),
        "meter": ("SkuMeter", "x_SkuMeterName"),
        "description": ("ChargeDescription", "x_SkuDescription"),
        "quantity": ("ConsumedQuantity",),
        "unit": ("ConsumedUnit",),
        "charge_category": ("ChargeCategory",),
        "charge_class": ("ChargeClass",),
        "tags": ("Tags",),
        "model": ("x_Model", "x_ModelName", "x_ModelId"),
        **OWN_COLUMNS,
        **IDENTITY_COLUMNS,
    }
    required: ClassVar[tuple[str, ...]] = ("billed_cost", "start", "end", "currency", "service", "provider")

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one FOCUS row; closures over column indexes and per-distinct-string caches."""
        if cols.has("x_input_tokens") and cols.has("x_provider"):
            return self._own_mapper(cols, ctx, self._generic_mapper(cols, ctx))
        return self._generic_mapper(cols, ctx)

    def _own_mapper(self, cols: Columns, ctx: ImportContext, generic: RowMapper) -> RowMapper:
        """Rows of this project's own export: each row comes back as the row it was exported from.

        The export's ``x_`` columns carry every field of the natural key (source, kind, account,
        project, key, user, raw model, tier, batch, line item, variant, team) and the row's own
        money and basis, so re-importing the file into the database it came from adds nothing
        (every key already holds the same values), and into another database rebuilds the same
        rows: an estimate stays an estimate, an unpriced row stays unpriced (never $0), and billed
        rows keep the source that billed them, so the precedence between billed sources is the
        same there (design rule 5). Tokens and requests come from the ``x_`` counts
        (``ConsumedQuantity`` is their sum, with no direction); another quantity (images,
        seconds ...) stays ``ConsumedQuantity``.
        """
        counts = [(cols.at(f"x_{name}"), cols.name(f"x_{name}")) for name in OWN_COUNTS]
        at = {name: cols.at(name) for name in (*OWN_COLUMNS, *IDENTITY_COLUMNS)}
        names = {name: cols.name(name) for name in IDENTITY_COLUMNS}
        i_model, i_unit = cols.at("model"), cols.at("unit")
        fit, count, money = _common.fit, ctx.count, ctx.money

        def own_money(row: list[str], rec: UsageRecord) -> tuple[Decimal | None, str, str, str]:
            """``(cost, basis, currency, price version)`` the exported row had."""
            basis = row[at["x_cost_basis"]] or "billed"
            exact = row[at["x_cost"]]
            if basis == "unpriced":
                return None, "unpriced", "", ""
            if basis == "estimated":
                text = exact or row[at["x_estimated_cost"]]
                name = names["x_cost"] if exact else names["x_estimated_cost"]
                return money(text, name), "estimated", rec.currency, row[at["x_price_version"]]
            cost = money(exact, names["x_cost"]) if exact else rec.cost
            return cost, "billed", rec.currency, ""

        # Text cells our CSV writer escaped against spreadsheet formulas (collector/core/csvout.py).
        numeric = {"billed_cost", "effective_cost", "start", "end", "quantity", "x_cost", "x_estimated_cost"}
        numeric.update(f"x_{n}" for n in OWN_COUNTS)
        texts = [i for name, i in cols.index.items() if name not in numeric]

        def mapper(row: list[str]) -> UsageRecord | None:
            for i in texts:
                if row[i][:1] == "'":
                    row[i] = unescape_cell(row[i])
            rec = generic(row)
            if rec is None:
                return None
            values = [count(row[i], name) for i, name in counts]
            quantity, q_unit = rec.quantity, rec.quantity_unit
            if unit_multiplier(row[i_unit])[1] in ("tokens", "requests"):
                quantity, q_unit = Decimal(0), ""
            cost, basis, currency, version = own_money(row, rec)
            source = row[at["x_source"]] or rec.source
            if source not in ("api", "csv"):
                raise RowError(names["x_source"], source, "an export row's source must be api or csv")
            model = fit(row[i_model]) if i_model >= 0 else rec.model
            return UsageRecord(
                provider=row[at["x_provider"]] or rec.provider,
                source=source,
                kind=fit(row[at["x_kind"]]) or rec.kind,
                bucket_start=rec.bucket_start,
                bucket_end=rec.bucket_end,
                account=ctx.account or (fit(row[at["x_account"]]) if at["x_account"] >= 0 else rec.account),
                project=fit(row[at["x_project"]]) if at["x_project"] >= 0 else rec.project,
                api_key_id=fit(row[at["x_api_key_id"]]),
                user_id=fit(row[at["x_user_id"]]),
                model=model,
                model_raw=fit(row[at["x_model_raw"]]) or model,
                service_tier=fit(row[at["x_service_tier"]]),
                batch=row[at["x_batch"]] == "true",
                line_item=fit(row[at["x_line_item"]], _common.LINE_ITEM_LIMIT),
                variant=fit(row[at["x_variant"]]),
                team=fit(row[at["x_team"]]) or rec.team,
                input_tokens=values[0],
                cache_read_tokens=values[1],
                cache_write_5m_tokens=values[2],
                cache_write_1h_tokens=values[3],
                output_tokens=values[4],
                reasoning_tokens=values[5],
                requests=values[6],
                quantity=quantity,
                quantity_unit=q_unit,
                cost=cost,
                currency=currency if cost is not None else "",
                basis=basis,
                price_version=version,
                source_ref=rec.source_ref,
                details=rec.details,
            )

        return mapper

    def _generic_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Any FOCUS file: tokens from ``ConsumedQuantity`` and the SKU meter's direction."""
        return _Generic(cols, ctx).mapper

    def columnar_mapper(self, cols: Columns, ctx: ImportContext) -> BatchMapper | None:
        """Map Arrow batches of any FOCUS file but this project's own export (which maps row by row)."""
        if cols.has("x_input_tokens") and cols.has("x_provider"):
            return None
        return _Generic(cols, ctx).map_columns


class _Generic:
    """The mapping of any FOCUS row, shared by the row path and the columnar path.

    Each derived value (the row's provider, its SKU's model and token direction, the unit's
    multiplier) is a method the row mapper calls per row (with caches) and the columnar mapper
    calls once per distinct combination of cells, so both paths compute every value with the
    same code.
    """

    def __init__(self, cols: Columns, ctx: ImportContext) -> None:
        self.cols, self.ctx = cols, ctx
        self.keep_cache: dict[str, bool] = {}
        self.provider_cache: dict[str, str] = {}
        self.sku_cache: dict[str, tuple[str, str, str]] = {}
        self.unit_cache: dict[str, tuple[int, str]] = {}
        self.teams = _common.Memo(_common.team_from_tags)
        self.fitted = _common.Memo(_common.fit)
        self.variants = _common.Memo(lambda r: _common.fit("resource=" + r) if r else "")
        self.i = {name: cols.at(name) for name in FocusImporter.columns}

    def keep(self, category: str, service: str) -> bool:
        """Whether a row of this category and service is an AI row to keep."""
        key = category + "\x1f" + service
        hit = self.keep_cache.get(key)
        if hit is None:
            hit = category.strip().lower() == AI_CATEGORY or service.strip().lower() in self.ctx.ai_services
            self.keep_cache[key] = hit
        return hit

    def provider(self, pname: str, service: str) -> str:
        """Our provider id for the row's provider and service names."""
        key = pname + "\x1f" + service
        hit = self.provider_cache.get(key)
        if hit is None:
            hit = self.provider_cache[key] = provider_for(pname, service)
        return hit

    def describe_sku(self, provider: str, sku: str, meter: str, desc: str, model_col: str) -> tuple[str, str, str]:
        """``(model, token direction, line item)`` of a SKU."""
        key = "\x1f".join((provider, sku, meter, desc, model_col))
        hit = self.sku_cache.get(key)
        if hit is None:
            fit = _common.fit
            text = meter or desc
            model = fit(slug(model_col) if model_col else model_for(provider, meter, desc))
            direction = token_direction(text) or token_direction(desc)
            if direction == "cache_write" and "1h" in text.lower().replace(" ", ""):
                direction = "cache_write_1h"
            line_item = fit(" | ".join(p for p in (sku, meter) if p) or desc, _common.LINE_ITEM_LIMIT)
            hit = (model, direction, line_item)
            if len(self.sku_cache) > 50_000:
                self.sku_cache.clear()
            self.sku_cache[key] = hit
        return hit

    def charge(self, line_item: str, charge: str, charge_class: str) -> tuple[str, bool]:
        """The line item with a non-usage charge category and a charge class appended; is it usage."""
        usage_row = not charge or charge.lower() == USAGE
        if not usage_row:
            line_item = _common.fit(f"{line_item} | {charge}", _common.LINE_ITEM_LIMIT)
        if charge_class:
            line_item = _common.fit(f"{line_item} | {charge_class}", _common.LINE_ITEM_LIMIT)
        return line_item, usage_row

    def unit_of(self, unit: str) -> tuple[int, str]:
        """``(multiplier, base unit)`` of a ``ConsumedUnit``."""
        hit = self.unit_cache.get(unit)
        if hit is None:
            hit = unit_multiplier(unit)
            self.unit_cache[unit] = hit
        return hit

    def mapper(self, row: list[str]) -> UsageRecord | None:
        """One row to its record (None when it is not an AI row)."""
        cols, ctx, i = self.cols, self.ctx, self.i
        service = row[i["service"]]
        if not ctx.keep_all and not self.keep(row[i["category"]], service):
            return None
        n_end = cols.name("end")
        start: datetime = ctx.when(row[i["start"]], cols.name("start"))
        end: datetime = ctx.when(row[i["end"]], n_end)
        if end <= start:
            raise RowError(n_end, row[i["end"]], END_RULE)
        i_cost, n_cost = i["billed_cost"], cols.name("billed_cost")
        cost = ctx.money(row[i_cost], n_cost)
        cur = ctx.currency(row[i["currency"]], cols.name("currency"))
        provider = self.provider(row[i["provider"]], service)
        model, direction, line_item = self.describe_sku(
            provider, row[i["sku"]], row[i["meter"]], row[i["description"]], row[i["model"]]
        )
        line_item, usage_row = self.charge(line_item, row[i["charge_category"]], row[i["charge_class"]])
        tokens = [0, 0, 0, 0, 0]
        requests = 0
        quantity = Decimal(0)
        q_unit = ""
        qty_text = row[i["quantity"]]
        n_qty = cols.name("quantity")
        decimal = ctx.decimal
        if qty_text and usage_row:
            mult, base = self.unit_of(row[i["unit"]])
            if direction and "token" in base:
                if mult == 1 and qty_text.isdigit() and len(qty_text) < 16:
                    n = int(qty_text)  # the common case, without a Decimal
                else:
                    qty = decimal(qty_text, n_qty)
                    n = ctx.tokens(qty, mult, n_qty, qty_text) if qty >= 0 else -1
                if n >= 0:
                    for slot in SLOTS[direction]:
                        tokens[slot] = n
                else:  # negative token quantities (usage reversals) stay a quantity
                    quantity, q_unit = decimal(str(qty * mult), n_qty), base[:32]
            else:
                qty = decimal(qty_text, n_qty)
                if base.startswith(("request", "call")) and qty >= 0 and qty == qty.to_integral_value():
                    requests = ctx.count(str(qty * mult), n_qty)
                elif qty:
                    quantity, q_unit = decimal(str(qty * mult), n_qty), (base or "units")[:32]
        return UsageRecord(
            provider=provider,
            source="csv",
            kind="focus",
            bucket_start=start,
            bucket_end=end,
            account=ctx.account or self.fitted[row[i["billing_account"]]],
            project=self.fitted[row[i["sub_account"]]],
            model=model,
            line_item=line_item,
            variant=self.variants[row[i["resource"]]],
            team=self.teams[row[i["tags"]]],
            input_tokens=tokens[0],
            cache_read_tokens=tokens[1],
            cache_write_5m_tokens=tokens[2],
            cache_write_1h_tokens=tokens[3],
            output_tokens=tokens[4],
            requests=requests,
            quantity=quantity,
            quantity_unit=q_unit,
            cost=cost,
            currency=cur,
            basis="billed",
            source_ref=ctx.source_ref,
            details=self.details(row[i["effective_cost"]], row[i_cost]),
        )

    def details(self, effective: str, billed: str) -> str:
        """``details`` JSON holding ``EffectiveCost`` when it differs from ``BilledCost``."""
        if not effective or effective == billed or not self.cols.has("effective_cost"):
            return ""
        return '{"effective_cost": "%s"}' % self.ctx.money(effective, self.cols.name("effective_cost"))  # noqa: UP031

    def map_columns(self, batch: pa.RecordBatch) -> ColumnBatch:
        """An Arrow batch of string cells to its records as columns (see :mod:`importers.focus_columns`)."""
        from importers.focus_columns import map_batch

        return map_batch(self, batch)
