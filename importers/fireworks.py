"""Fireworks AI billing-metrics CSV (``firectl billing export-metrics``): quantities, no dollars.

Columns per provider-apis.md §8: ``email, start_time, end_time, usage_type, accelerator_type,
accelerator_seconds, base_model_name, model_bucket, parameter_count, prompt_tokens,
completion_tokens``; times look like ``2025-10-20 17:16:48 UTC`` (§10) and a row's start and end
may be equal, so point rows are summed into their UTC hour. Cost is estimated from the price
table (``estimated``), or ``unpriced`` when the model is not in it; never $0. Dedicated-GPU rows
keep ``accelerator_seconds`` as a quantity and stay unpriced.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from collector.core.schema import UsageRecord
from importers import _common
from importers.base import Columns, ImportContext, Importer, RowError, RowMapper, hour_or_span


class FireworksImporter(Importer):
    """``firectl billing export-metrics`` output."""

    name = "fireworks"
    title = "Fireworks AI billing metrics (firectl billing export-metrics); cost estimated"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("email",),
        "start": ("start_time",),
        "end": ("end_time",),
        "usage_type": ("usage_type",),
        "accelerator": ("accelerator_type",),
        "accelerator_seconds": ("accelerator_seconds",),
        "model": ("base_model_name",),
        "bucket": ("model_bucket",),
        "prompt": ("prompt_tokens",),
        "completion": ("completion_tokens",),
    }
    required: ClassVar[tuple[str, ...]] = ("start", "usage_type", "model", "prompt", "completion")

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one metrics row to an hourly, not-yet-priced record (the service prices it)."""
        at, nm = cols.at, cols.name
        i_email, i_start, i_end, i_type = at("email"), at("start"), at("end"), at("usage_type")
        i_acc, i_secs, i_model, i_bucket = at("accelerator"), at("accelerator_seconds"), at("model"), at("bucket")
        i_prompt, i_completion = at("prompt"), at("completion")
        fit = _common.fit

        def mapper(row: list[str]) -> UsageRecord | None:
            start = ctx.when(row[i_start], nm("start"))
            end = ctx.when(row[i_end], nm("end")) if row[i_end] else None
            bucket_start, bucket_end = hour_or_span(start, end)
            seconds = ctx.opt_decimal(row[i_secs], nm("accelerator_seconds"))
            if seconds < 0:
                raise RowError(nm("accelerator_seconds"), row[i_secs], "accelerator_seconds cannot be negative")
            line_item = " | ".join(p for p in (row[i_type], row[i_acc]) if p)
            return UsageRecord(
                provider="fireworks",
                source="csv",
                kind="fireworks",
                bucket_start=bucket_start,
                bucket_end=bucket_end,
                account=ctx.account or "",
                user_id=fit(row[i_email]),
                model=fit(row[i_model]),
                line_item=fit(line_item, _common.LINE_ITEM_LIMIT),
                variant=fit("bucket=" + row[i_bucket]) if row[i_bucket] else "",
                input_tokens=ctx.count(row[i_prompt], nm("prompt")),
                output_tokens=ctx.count(row[i_completion], nm("completion")),
                quantity=seconds if seconds else Decimal(0),
                quantity_unit="accelerator_seconds" if seconds else "",
                basis="unpriced",
                source_ref=ctx.source_ref,
            )

        return mapper
