"""Azure cost export (actual cost, EA / MCA usage details as CSV): Azure OpenAI rows by meter.

Columns as in the actual-cost export schema (provider-apis.md §5.3: ``Date``, ``MeterCategory``,
``MeterSubCategory``, ``MeterName``, ``Quantity``, ``CostInBillingCurrency`` / ``Cost``,
``BillingCurrency``, ``SubscriptionId``, ``ResourceId``, ``UnitOfMeasure``, ``ChargeType``...).
EA and MCA spell some headers differently (PascalCase vs camelCase, ``Cost`` vs
``costInBillingCurrency``; §5.3 [UNCONFIRMED] full MCA list): header matching ignores case, and
the known variants are listed per column. Azure OpenAI rows are the Cognitive Services meters
(§5.2: ``ConsumedService = microsoft.cognitiveservices``); the model and token direction are in
the meter name, e.g. "gpt-4o-0513-Input-glbl" (§5.2, [UNCONFIRMED] exact strings). EA exports
write ``Date`` as ``MM/DD/YYYY``; one row is one UTC day.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from collector.core.cloud_billing import AI_METER_CATEGORIES, is_azure_openai_meter
from collector.core.schema import UsageRecord
from importers import _common
from importers.base import (
    NO_TOKENS,
    Columns,
    ImportContext,
    Importer,
    RowMapper,
    day_bucket,
    token_direction,
    token_fields,
    unit_multiplier,
)


def model_from_meter(meter: str) -> str:
    """The deployment model in an Azure OpenAI meter name (``gpt-4o-0513-Input-glbl`` -> ``gpt-4o-0513``)."""
    return _common.model_from_text(meter)


class AzureCostImporter(Importer):
    """Cost Management actual-cost export (EA and MCA spellings)."""

    name = "azure_cost"
    title = "Azure Cost Management export, actual cost (Azure OpenAI / Cognitive Services meters)"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "date": ("Date", "UsageDate", "UsageDateTime"),
        "cost": ("CostInBillingCurrency", "Cost", "PreTaxCost"),
        "currency": ("BillingCurrency", "BillingCurrencyCode", "Currency"),
        "meter_category": ("MeterCategory",),
        "meter_subcategory": ("MeterSubCategory",),
        "meter": ("MeterName",),
        "quantity": ("Quantity", "UsageQuantity"),
        "unit": ("UnitOfMeasure",),
        "billing_account": ("BillingAccountId",),
        "subscription": ("SubscriptionId", "SubscriptionGuid"),
        "resource": ("ResourceId", "InstanceId"),
        "consumed_service": ("ConsumedService",),
        "charge_type": ("ChargeType",),
        "tags": ("Tags",),
    }
    required: ClassVar[tuple[str, ...]] = ("date", "cost", "currency", "meter_category", "meter")

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one usage-details row; non-AI meters are skipped unless ``keep_all``."""
        at, nm = cols.at, cols.name
        i_date, i_cost, i_cur = at("date"), at("cost"), at("currency")
        i_cat, i_sub, i_meter = at("meter_category"), at("meter_subcategory"), at("meter")
        i_qty, i_unit, i_account, i_subscription = at("quantity"), at("unit"), at("billing_account"), at("subscription")
        i_resource, i_consumed, i_charge, i_tags = at("resource"), at("consumed_service"), at("charge_type"), at("tags")
        meters: dict[str, tuple[str, str, bool]] = {}
        teams = _common.Memo(_common.team_from_tags)
        fit = _common.fit

        def meter_info(category: str, sub: str, meter: str) -> tuple[str, str, bool]:
            key = f"{category}\x1f{sub}\x1f{meter}"
            hit = meters.get(key)
            if hit is None:
                openai = is_azure_openai_meter(sub, meter)
                hit = meters[key] = (model_from_meter(meter), token_direction(meter), openai)
            return hit

        def mapper(row: list[str]) -> UsageRecord | None:
            category, sub, meter = row[i_cat], row[i_sub], row[i_meter]
            ai = (
                category.strip().lower() in AI_METER_CATEGORIES
                or row[i_consumed].strip().lower() == "microsoft.cognitiveservices"
                or ctx.is_ai_service(category, sub)
            )
            if not ctx.keep_all and not ai:
                return None
            start, end = day_bucket(ctx.when(row[i_date], nm("date"), us_slash_dates=True))
            cost = ctx.money(row[i_cost], nm("cost"))
            model, direction, openai = meter_info(category, sub, meter)
            charge = row[i_charge]
            usage_row = charge in ("", "Usage")
            line_item = " | ".join(p for p in (sub, meter) if p)
            if not usage_row:
                line_item += f" | {charge}"
            qty = ctx.opt_decimal(row[i_qty], nm("quantity"))
            mult, base = unit_multiplier(row[i_unit]) if row[i_unit] else (1, "")
            tokens = NO_TOKENS
            quantity, q_unit = Decimal(0), ""
            if direction and usage_row and qty >= 0 and (not base or "token" in base):
                tokens = token_fields(direction, ctx.tokens(qty, mult, nm("quantity"), row[i_qty]), meter)
            elif qty:
                quantity, q_unit = ctx.decimal(str(qty * mult), nm("quantity")), (base or "units")[:32]
            subscription = row[i_subscription]
            return UsageRecord(
                provider="azure_openai" if openai else ("azure_ai" if ai else "azure"),
                source="csv",
                kind="azure_cost",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account or fit(row[i_account] or subscription),
                project=fit(subscription),
                model=fit(model),
                line_item=fit(line_item, _common.LINE_ITEM_LIMIT),
                variant=fit("resource=" + row[i_resource]) if row[i_resource] else "",
                team=teams[row[i_tags]],
                quantity=quantity,
                quantity_unit=q_unit,
                cost=cost,
                currency=ctx.currency(row[i_cur], nm("currency")),
                basis="billed",
                source_ref=ctx.source_ref,
                input_tokens=tokens[0],
                cache_read_tokens=tokens[1],
                cache_write_5m_tokens=tokens[2],
                cache_write_1h_tokens=tokens[3],
                output_tokens=tokens[4],
            )

        return mapper
