"""The generic template (``importers/templates/generic.csv``): any provider's usage as rows.

This is how xAI, Mistral, Groq, DeepSeek or an internal gateway's export get in (provider-apis.md
§4, §8: no usage API, or one whose CSV export is unconfirmed). One row is one bucket of one
model: either a ``date`` (a UTC day) or ``bucket_start`` + ``bucket_end``. ``input_tokens`` is
*total* input, cached and cache-write tokens included (design rule 4); ``reasoning_tokens`` is
part of ``output_tokens``. A row with a ``cost`` is ``billed`` in its ``currency`` (USD when the
cell is empty); a row without one is estimated from the price table, or ``unpriced``.
"""

from __future__ import annotations

from typing import ClassVar

from collector.core.catalog import provider_id
from collector.core.schema import UsageRecord
from importers import _common
from importers.base import Columns, ImportContext, Importer, RowError, RowMapper, day_bucket, slug

RULE_INPUT = "input_tokens is total input: it must include cached and cache-write tokens (rule 4)"
RULE_REASONING = "reasoning_tokens is part of output_tokens and cannot exceed them (rule 4)"
TRUE = frozenset({"1", "true", "yes", "y", "batch"})


class GenericImporter(Importer):
    """The documented generic usage template."""

    name = "generic"
    title = "Generic usage template (xAI, Mistral, Groq, DeepSeek, internal gateways...)"
    columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "date": ("date", "day", "usage_date"),
        "start": ("bucket_start", "start", "start_time", "period_start"),
        "end": ("bucket_end", "end", "end_time", "period_end"),
        "provider": ("provider",),
        "model": ("model",),
        "account": ("account", "organization"),
        "project": ("project", "project_id", "workspace"),
        "api_key": ("api_key", "api_key_id", "key_id"),
        "user": ("user", "user_id", "email"),
        "team": ("team",),
        "input": ("input_tokens", "prompt_tokens"),
        "cached": ("cached_input_tokens", "cache_read_tokens"),
        "cache_write": ("cache_write_tokens", "cache_write_5m_tokens"),
        "cache_write_1h": ("cache_write_1h_tokens",),
        "output": ("output_tokens", "completion_tokens"),
        "reasoning": ("reasoning_tokens",),
        "requests": ("requests", "request_count"),
        "cost": ("cost", "amount"),
        "currency": ("currency",),
        "line_item": ("line_item", "description"),
        "service_tier": ("service_tier",),
        "batch": ("batch",),
    }
    required: ClassVar[tuple[str, ...]] = ("provider", "model")
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = (("date", "start"),)

    def missing(self, header: list[str]) -> list[str]:
        """Also require ``bucket_end`` when buckets are given by start."""
        out = super().missing(header)
        cols = self.bind(header)
        if cols.has("start") and not cols.has("end") and not cols.has("date"):
            out.append(" / ".join(self.columns["end"]))
        return out

    def row_mapper(self, cols: Columns, ctx: ImportContext) -> RowMapper:
        """Map one template row; cost-less rows are left for the service to estimate."""
        at, nm = cols.at, cols.name
        i_date, i_start, i_end = at("date"), at("start"), at("end")
        use_date = cols.has("date") and not cols.has("start")
        i_provider, i_model, i_account, i_project = at("provider"), at("model"), at("account"), at("project")
        i_key, i_user, i_team, i_item, i_tier, i_batch = (
            at("api_key"),
            at("user"),
            at("team"),
            at("line_item"),
            at("service_tier"),
            at("batch"),
        )
        counts = [(at(c), nm(c)) for c in ("input", "cached", "cache_write", "cache_write_1h", "output", "reasoning")]
        i_req, i_cost, i_cur = at("requests"), at("cost"), at("currency")
        fit = _common.fit
        providers: dict[str, str] = {}

        def mapper(row: list[str]) -> UsageRecord | None:
            raw_provider = row[i_provider]
            provider = providers.get(raw_provider)
            if provider is None:
                known = provider_id(raw_provider)
                provider = providers[raw_provider] = known or fit(slug(raw_provider).replace(".", "-"), 64)
            if not provider:
                raise RowError(nm("provider"), raw_provider, "provider is required (e.g. xai, mistral, groq)")
            if use_date or (i_date >= 0 and not row[i_start]):
                start, end = day_bucket(ctx.when(row[i_date], nm("date")))
            else:
                start, end = ctx.when(row[i_start], nm("start")), ctx.when(row[i_end], nm("end"))
                if end <= start:
                    raise RowError(nm("end"), row[i_end], "bucket_end must be after bucket_start")
            inp, cached, cw5, cw1h, out, reasoning = (ctx.count(row[i], n) for i, n in counts)
            if cached + cw5 + cw1h > inp:
                raise RowError(
                    nm("input"),
                    row[counts[0][0]],
                    "input_tokens is total input: it must include cached and cache-write tokens",
                )
            if reasoning > out:
                raise RowError(
                    nm("reasoning"),
                    row[counts[5][0]],
                    "reasoning_tokens is part of output_tokens: it cannot exceed them",
                )
            cost_text = row[i_cost].strip()
            cost = ctx.money(cost_text, nm("cost")) if cost_text else None
            currency = ctx.currency(row[i_cur], nm("currency")) if (cost is not None and row[i_cur].strip()) else ""
            return UsageRecord(
                provider=provider,
                source="csv",
                kind="generic",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account or fit(row[i_account]),
                project=fit(row[i_project]),
                api_key_id=fit(row[i_key]),
                user_id=fit(row[i_user]),
                team=fit(row[i_team]),
                model=fit(row[i_model].strip()),
                service_tier=fit(row[i_tier].strip(), 64),
                batch=row[i_batch].strip().lower() in TRUE,
                line_item=fit(row[i_item], _common.LINE_ITEM_LIMIT),
                input_tokens=inp,
                cache_read_tokens=cached,
                cache_write_5m_tokens=cw5,
                cache_write_1h_tokens=cw1h,
                output_tokens=out,
                reasoning_tokens=reasoning,
                requests=ctx.count(row[i_req], nm("requests")),
                cost=cost,
                currency=(currency or "USD") if cost is not None else "",
                basis="billed" if cost is not None else "unpriced",
                source_ref=ctx.source_ref,
            )

        return mapper
