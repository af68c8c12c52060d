"""Google Cloud billing export (BigQuery standard export saved as CSV): Vertex AI and Gemini rows.

Column names are the flattened BigQuery names (provider-apis.md §3.2: ``service.description``,
``sku.description``, ``usage_start_time``, ``cost``, ``credits``, ``project.id``...), whose exact
membership is third-party evidence, so the importer is header-driven and also accepts the
console cost-table spellings it can guess (§3.3, headers unconfirmed). Net cost is ``cost`` plus
the (negative) ``credits`` amounts (§3.2). The model and token direction come from the SKU
description, e.g. "Generative Language API - Gemini 2.0 Flash - Input tokens" (§3.2,
[UNCONFIRMED] exact strings), so each SKU is its own ``line_item``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import ClassVar

from collector.core.cloud_billing import TOKEN_UNITS
from collector.core.schema import UsageRecord
from importers import _common
from importers.base import (
    END_RULE,
    NO_TOKENS,
    Columns,
    ImportContext,
    Importer,
    RowError,
    RowMapper,
    token_direction,
    token_fields,
    unit_multiplier,
)


def parse_credits(text: str, column: str, ctx: ImportContext) -> Decimal:
    """Sum of a ``credits`` cell: a JSON list of ``{"name", "amount", ...}`` (the REPEATED field) or a number."""
    s = text.strip()
    if not s or s == "[]":
        return Decimal(0)
    if s[0] != "[":
        return ctx.money(s, column)
    try:
        items = json.loads(s, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        raise RowError(column, text, "credits must be a JSON list of {name, amount} or a number") from None
    total = Decimal(0)
    for item in items if isinstance(items, list) else [items]:
        amount = item.get("amount") if isinstance(item, dict) else None
        if not isinstance(amount, Decimal) or not amount.is_finite():
            raise RowError(column, text, "every credit needs a numeric amount")
        total += amount
    if not -_LIMIT < total < _LIMIT:
        raise RowError(column, text, "credits out of range")
    return total


_LIMIT = Decimal(10) ** 8


class GcpBillingImporter(Importer):
    """Cloud Billing standard export (BigQuery) as CSV."""

    name = "gcp_billing"
    title = "Google Cloud billing export (BigQuery standard export as CSV): Vertex AI, Gemini API"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "billing_account": ("billing_account_id", "Billing account ID"),
        "service": ("service.description", "Service description"),
        "sku": ("sku.description", "SKU description"),
        "sku_id": ("sku.id", "SKU ID"),
        "start": ("usage_start_time", "Usage start date"),
        "end": ("usage_end_time", "Usage end date"),
        "project": ("project.id", "Project ID"),
        "cost": ("cost", "Cost"),
        "currency": ("currency", "Currency"),
        "credits": ("credits", "credits.amount", "Credits"),
        "usage_amount": ("usage.amount", "Usage amount"),
        "usage_unit": ("usage.unit", "Usage unit"),
        "cost_type": ("cost_type", "Cost type"),
        "labels": ("labels", "project.labels"),
        "resource": ("resource.name", "resource.global_name"),
    }
    required: ClassVar[tuple[str, ...]] = ("service", "sku", "start", "end", "cost", "currency")

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one billing-export row; non-AI services are skipped unless ``keep_all``."""
        at, nm = cols.at, cols.name
        i_service, i_sku, i_sku_id = at("service"), at("sku"), at("sku_id")
        i_start, i_end, i_cost, i_cur = at("start"), at("end"), at("cost"), at("currency")
        i_credits, i_amount, i_unit = at("credits"), at("usage_amount"), at("usage_unit")
        i_account, i_project, i_type, i_labels, i_resource = (
            at("billing_account"),
            at("project"),
            at("cost_type"),
            at("labels"),
            at("resource"),
        )
        skus: dict[str, tuple[str, str]] = {}
        teams = _common.Memo(_common.team_from_tags)
        fit = _common.fit

        def sku_info(desc: str) -> tuple[str, str]:
            hit = skus.get(desc)
            if hit is None:
                hit = skus[desc] = (_common.model_from_text(desc), token_direction(desc))
            return hit

        def mapper(row: list[str]) -> UsageRecord | None:
            service = row[i_service]
            if not ctx.keep_all and not ctx.is_ai_service(service):
                return None
            start = ctx.when(row[i_start], nm("start"))
            end = ctx.when(row[i_end], nm("end"))
            if end <= start:
                raise RowError(nm("end"), row[i_end], END_RULE)
            cost = ctx.money(row[i_cost], nm("cost")) + parse_credits(row[i_credits], nm("credits"), ctx)
            desc = row[i_sku]
            model, direction = sku_info(desc)
            line_item = " | ".join(p for p in (row[i_sku_id], desc) if p)
            cost_type = row[i_type].strip().lower()
            if cost_type and cost_type != "regular":
                line_item += f" | {cost_type}"
            amount = ctx.opt_decimal(row[i_amount], nm("usage_amount"))
            unit = row[i_unit].strip().lower()
            tokens = NO_TOKENS
            quantity, q_unit = Decimal(0), ""
            if amount and direction and unit in TOKEN_UNITS and cost_type in ("", "regular"):
                mult = unit_multiplier(unit)[0]
                tokens = token_fields(direction, ctx.tokens(amount, mult, nm("usage_amount"), row[i_amount]), desc)
            elif amount:
                quantity, q_unit = amount, (unit or "units")[:32]
            return UsageRecord(
                provider="google",
                source="csv",
                kind="gcp_billing",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account or fit(row[i_account]),
                project=fit(row[i_project]),
                model=fit(model),
                line_item=fit(line_item, _common.LINE_ITEM_LIMIT),
                variant=fit("resource=" + row[i_resource]) if row[i_resource] else "",
                team=teams[row[i_labels]],
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
