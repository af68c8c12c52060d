"""AWS Cost and Usage Report 2.0 / Data Exports: Amazon Bedrock lines (``.csv`` or ``.csv.gz``).

"Each request generates separate line items for each token type, with distinct usage types"
(provider-apis.md §6.2), so one CUR line is one token direction of one model, told apart by
``line_item_usage_type``: ``*-input-tokens``, ``*-output-tokens``,
``*-cache-read-input-token-count``, ``*-cache-write-input-token-count``, the ``mantle`` forms,
and Marketplace-sold models' ``MP:..._InputTokenCount-Units``. The model segment is a billing
name ("Claude4.6Sonnet"), not a model id (§6.2), and is kept as such. Only
``line_item_usage_type`` and ``line_item_iam_principal`` are confirmed CUR 2.0 names; the
others are accepted in their CUR 2.0 and legacy CUR spellings (header normalisation makes
``lineItem/UsageType`` equal ``line_item_usage_type``). Cost is ``line_item_unblended_cost``,
billed; credits and refunds are their own negative lines (``line_item_line_item_type``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import ClassVar

from collector.core.cloud_billing import UsageType, parse_usage_type
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
    token_fields,
    unit_multiplier,
)


def _product_model(product_name: str) -> str:
    """``Claude Sonnet 4.5 (Amazon Bedrock Edition)`` -> ``Claude Sonnet 4.5`` (Marketplace lines, §6.2)."""
    return re.sub(r"\s*\(.*?\)\s*", "", product_name).strip()


class AwsCurImporter(Importer):
    """CUR 2.0 / Data Exports (and legacy CUR) Bedrock lines."""

    name = "aws_cur"
    title = "AWS Cost and Usage Report 2.0 / Data Exports (Amazon Bedrock lines), .csv or .csv.gz"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "start": ("line_item_usage_start_date",),
        "end": ("line_item_usage_end_date",),
        "usage_type": ("line_item_usage_type",),
        "operation": ("line_item_operation",),
        "product_code": ("line_item_product_code",),
        "product_name": ("product_product_name", "product_name", "product_servicename"),
        "amount": ("line_item_usage_amount",),
        "cost": ("line_item_unblended_cost",),
        "currency": ("line_item_currency_code",),
        "payer": ("bill_payer_account_id",),
        "usage_account": ("line_item_usage_account_id",),
        "principal": ("line_item_iam_principal",),
        "resource": ("line_item_resource_id",),
        "item_type": ("line_item_line_item_type",),
        "pricing_unit": ("pricing_unit",),
        "tags": ("resource_tags",),
    }
    required: ClassVar[tuple[str, ...]] = ("start", "end", "usage_type", "cost")

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one CUR line; lines of other services are skipped unless ``keep_all``."""
        at, nm = cols.at, cols.name
        i_start, i_end, i_type, i_op = at("start"), at("end"), at("usage_type"), at("operation")
        i_code, i_product, i_amount, i_cost = at("product_code"), at("product_name"), at("amount"), at("cost")
        i_cur, i_payer, i_account, i_principal = at("currency"), at("payer"), at("usage_account"), at("principal")
        i_resource, i_item, i_unit, i_tags = at("resource"), at("item_type"), at("pricing_unit"), at("tags")
        types: dict[str, UsageType] = {}
        teams = _common.Memo(_common.team_from_tags)
        fit = _common.fit

        def usage_type(text: str) -> UsageType:
            hit = types.get(text)
            if hit is None:
                hit = types[text] = parse_usage_type(text)
            return hit

        def mapper(row: list[str]) -> UsageRecord | None:
            ut_text, product = row[i_type], row[i_product]
            ut = usage_type(ut_text)
            bedrock = row[i_code] == "AmazonBedrock" or "bedrock" in product.lower()
            if not ctx.keep_all and not (bedrock or ut.direction or ctx.is_ai_service(row[i_code], product)):
                return None
            start = ctx.when(row[i_start], nm("start"))
            end = ctx.when(row[i_end], nm("end"))
            if end <= start:
                raise RowError(nm("end"), row[i_end], END_RULE)
            cost = ctx.money(row[i_cost], nm("cost"))
            item_type = row[i_item]
            usage_line = item_type in ("", "Usage", "DiscountedUsage", "SavingsPlanCoveredUsage")
            line_item = " | ".join(p for p in (ut_text, row[i_op]) if p)
            if not usage_line:
                line_item += f" | {item_type}"
            amount = ctx.opt_decimal(row[i_amount], nm("amount"))
            tokens = NO_TOKENS
            quantity, q_unit = Decimal(0), ""
            if ut.direction and usage_line and amount >= 0:
                mult, _ = unit_multiplier(row[i_unit]) if row[i_unit] else (1, "")
                tokens = token_fields(ut.direction, ctx.tokens(amount, mult, nm("amount"), row[i_amount]), ut_text)
            elif amount:
                quantity, q_unit = amount, (row[i_unit].strip().lower() or "units")[:32]
            model = ut.model or (_product_model(product) if "edition" in product.lower() else "")
            currency = row[i_cur]
            return UsageRecord(
                provider="aws_bedrock" if (bedrock or ut.direction) else "aws",
                source="csv",
                kind="aws_cur",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account or fit(row[i_payer]),
                project=fit(row[i_account]),
                user_id=fit(row[i_principal]),
                model=fit(model),
                service_tier=ut.tier if ut.tier != "batch" else "",
                batch=ut.tier == "batch",
                line_item=fit(line_item, _common.LINE_ITEM_LIMIT),
                variant=fit("resource=" + row[i_resource]) if row[i_resource] else "",
                team=teams[row[i_tags]],
                quantity=quantity,
                quantity_unit=q_unit,
                cost=cost,
                currency=ctx.currency(currency, nm("currency")) if currency else "USD",
                basis="billed",
                source_ref=ctx.source_ref,
                input_tokens=tokens[0],
                cache_read_tokens=tokens[1],
                cache_write_5m_tokens=tokens[2],
                cache_write_1h_tokens=tokens[3],
                output_tokens=tokens[4],
            )

        return mapper
