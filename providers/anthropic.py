"""Anthropic Admin API: messages usage at ``1h``, cost report at ``1d``, Claude Code daily.

Facts from provider-apis.md §2. Usage rows are priced with the public price table
(``estimated``/``unpriced``); cost-report rows are what Anthropic ``billed``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from collector import __version__
from collector.core.http import send
from collector.core.schema import UsageRecord
from collector.core.windows import DAY, HOUR, Window
from providers._pagination import iter_cursor_pages
from providers.base import (
    SOURCE,
    Context,
    Endpoint,
    Page,
    Provider,
    ProviderError,
    details,
    to_decimal,
    to_int,
    variant,
)

NAME = "anthropic"
API_VERSION = "2023-06-01"
#: The guide asks integrations to name themselves in the User-Agent (provider-apis.md §2.2).
USER_AGENT = f"llm-usage-collector/{__version__} (+https://github.com/llm-usage-collector)"
HOURLY_LIMIT = 168  # §2.3: 1h buckets, max 168 per page
COST_LIMIT = 31  # §2.5: 1d only, max 31 per page
CLAUDE_CODE_LIMIT = 1000  # §2.6
#: At most 5 group_by[] dimensions, or the API answers 400 (§2.8.7).
MESSAGES_GROUP_BY = ("model", "workspace_id", "api_key_id", "service_tier", "context_window")
COST_GROUP_BY = ("workspace_id", "description")

_MSG_VARIANT = ("context_window", "inference_geo", "speed", "service_account_id")
_MSG_KNOWN = frozenset(
    {
        "model",
        "workspace_id",
        "api_key_id",
        "service_tier",
        "account_id",
        "uncached_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "output_tokens",
        *_MSG_VARIANT,
    }
)
_COST_VARIANT = ("cost_type", "token_type", "context_window", "inference_geo", "speed")
_COST_KNOWN = frozenset({"amount", "currency", "description", "workspace_id", "model", "service_tier", *_COST_VARIANT})


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ProviderError(f"anthropic {what}: expected an RFC 3339 string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ProviderError(f"anthropic {what}: not an RFC 3339 time: {value[:40]!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _buckets(payload: Mapping[str, Any], kind: str) -> Iterator[tuple[datetime, datetime, Mapping[str, Any]]]:
    data = payload.get("data")
    if not isinstance(data, list):
        raise ProviderError(f"anthropic {kind}: page has no 'data' list")
    for bucket in data:
        start = _time(bucket.get("starting_at"), f"{kind} starting_at")
        end = _time(bucket.get("ending_at"), f"{kind} ending_at")
        for result in bucket.get("results") or ():  # empty buckets have results: [] (§2.8.9)
            yield start, end, result


def parse_messages(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Records from one ``usage_report/messages`` page (provider-apis.md §2.4).

    Anthropic reports input in parts; total input = uncached + cache reads + both cache
    writes (§2.4 note, design rule 4). There is no request count. ``workspace_id`` null is the
    default workspace and ``api_key_id`` null is Console/Workbench usage (§2.8.6): both ``''``.
    """
    records = []
    for start, end, r in _buckets(payload, "messages"):
        creation = r.get("cache_creation") or {}
        tier = str(r.get("service_tier") or "")
        rec = UsageRecord.from_additive(
            uncached_input_tokens=to_int(r.get("uncached_input_tokens"), "uncached_input_tokens"),
            cache_read_tokens=to_int(r.get("cache_read_input_tokens"), "cache_read_input_tokens"),
            cache_write_5m_tokens=to_int(creation.get("ephemeral_5m_input_tokens"), "ephemeral_5m_input_tokens"),
            cache_write_1h_tokens=to_int(creation.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens"),
            output_tokens=to_int(r.get("output_tokens"), "output_tokens"),
            provider=NAME,
            source=SOURCE,
            kind="messages",
            bucket_start=start,
            bucket_end=end,
            account=ctx.account,
            project=str(r.get("workspace_id") or ""),
            api_key_id=str(r.get("api_key_id") or ""),
            user_id=str(r.get("account_id") or ""),
            model=str(r.get("model") or ""),
            service_tier=tier,
            batch=tier == "batch",
            variant=variant(r, _MSG_VARIANT),
            source_ref=ctx.source_ref,
            details=details(r, _MSG_KNOWN),
        )
        records.append(rec)
        searches = to_int((r.get("server_tool_use") or {}).get("web_search_requests"), "web_search_requests")
        if searches:
            records.append(_web_searches(rec, searches))
    return records


#: ``line_item`` of the row that carries a bucket's server-side web searches (priced per search).
WEB_SEARCH_LINE_ITEM = "web_search"


def _web_searches(rec: UsageRecord, searches: int) -> UsageRecord:
    """The bucket's web searches as a row of their own (same keys, ``line_item='web_search'``).

    The report counts them in ``server_tool_use.web_search_requests`` (§2.4) and they are
    charged per search, not per token, so they become a quantity the ingest path can price.
    """
    return UsageRecord(
        provider=rec.provider,
        source=rec.source,
        kind=rec.kind,
        bucket_start=rec.bucket_start,
        bucket_end=rec.bucket_end,
        account=rec.account,
        project=rec.project,
        api_key_id=rec.api_key_id,
        user_id=rec.user_id,
        model=rec.model,
        service_tier=rec.service_tier,
        batch=rec.batch,
        line_item=WEB_SEARCH_LINE_ITEM,
        variant=rec.variant,
        quantity=Decimal(searches),
        quantity_unit="calls",
        source_ref=rec.source_ref,
    )


def parse_cost_report(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one ``cost_report`` page (provider-apis.md §2.5).

    ``amount`` is **cents as a decimal string** ("123.45" = $1.23); it is divided by 100 exactly
    here, the 100x bug other tools shipped (§2.8.2).
    """
    records = []
    for start, end, r in _buckets(payload, "cost_report"):
        cents = to_decimal(r.get("amount", "0"), "cost_report amount")
        records.append(
            UsageRecord(
                provider=NAME,
                source=SOURCE,
                kind="cost_report",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account,
                project=str(r.get("workspace_id") or ""),
                model=str(r.get("model") or ""),
                service_tier=str(r.get("service_tier") or ""),
                batch=r.get("service_tier") == "batch",
                line_item=str(r.get("description") or ""),
                variant=variant(r, _COST_VARIANT),
                cost=cents.scaleb(-2),
                currency=str(r.get("currency") or "USD").upper(),
                basis="billed",
                source_ref=ctx.source_ref,
                details=details(r, _COST_KNOWN),
            )
        )
    return records


def _actor(actor: Mapping[str, Any]) -> str:
    if actor.get("email_address"):
        return str(actor["email_address"])
    if actor.get("api_key_name"):
        return f"api_key:{actor['api_key_name']}"
    return str(actor.get("type") or "")


def parse_claude_code(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Records from one ``usage_report/claude_code`` page (provider-apis.md §2.6).

    One row per (day, actor, terminal, customer type, model) with tokens, priced like any usage
    row; Anthropic's own ``estimated_cost`` (a number in cents, §2.8.2) is kept in ``details``.
    One more row per actor with ``model=''`` carries the session count and the core metrics.
    These tokens are *also* in the messages report for API customers: never add the two kinds.
    """
    data = payload.get("data")
    if not isinstance(data, list):
        raise ProviderError("anthropic claude_code: page has no 'data' list")
    records = []
    for item in data:
        day = _time(item.get("date"), "claude_code date")
        base: dict[str, Any] = {
            "provider": NAME,
            "source": SOURCE,
            "kind": "claude_code",
            "bucket_start": day,
            "bucket_end": day + DAY,
            "account": ctx.account,
            "user_id": _actor(item.get("actor") or {}),
            "variant": variant(item, ("customer_type", "terminal_type", "is_remote", "subscription_type")),
            "source_ref": ctx.source_ref,
        }
        for mb in item.get("model_breakdown") or ():
            tokens = mb.get("tokens") or {}
            est = mb.get("estimated_cost") or {}
            extra = {"anthropic_estimated_cost_cents": est.get("amount"), "currency": est.get("currency")}
            rec = UsageRecord.from_additive(
                uncached_input_tokens=to_int(tokens.get("input"), "tokens.input"),
                cache_read_tokens=to_int(tokens.get("cache_read"), "tokens.cache_read"),
                cache_write_5m_tokens=to_int(tokens.get("cache_creation"), "tokens.cache_creation"),
                output_tokens=to_int(tokens.get("output"), "tokens.output"),
                model=str(mb.get("model") or ""),
                details=details(extra, frozenset()),
                **base,
            )
            records.append(rec)
        metrics = item.get("core_metrics") or {}
        records.append(
            UsageRecord(
                quantity=to_decimal(metrics.get("num_sessions") or 0, "core_metrics.num_sessions"),
                quantity_unit="sessions",
                details=details({"core_metrics": metrics, "tool_actions": item.get("tool_actions")}, frozenset()),
                **base,
            )
        )
    return records


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "messages",
        "organizations/usage_report/messages",
        HOUR,
        HOURLY_LIMIT,
        "usage",
        parse_messages,
        MESSAGES_GROUP_BY,
    ),
    Endpoint("cost_report", "organizations/cost_report", DAY, COST_LIMIT, "cost", parse_cost_report, COST_GROUP_BY),
    Endpoint(
        "claude_code", "organizations/usage_report/claude_code", DAY, CLAUDE_CODE_LIMIT, "cost", parse_claude_code
    ),
)


class AnthropicProvider(Provider):
    """Anthropic organisation usage and cost, read with an Admin API key."""

    name = NAME
    title = "Anthropic"
    admin_key_prefixes = ("sk-ant-admin",)
    key_help = (
        "this is not an Anthropic Admin API key: the usage and cost reports need an admin key "
        "(sk-ant-admin01-...), not a standard Claude API key (sk-ant-api...). An organization admin "
        "creates one in the Claude Console under Settings > Admin keys; individual accounts have no Admin API"
    )
    base_url_setting = "anthropic_base_url"
    endpoints = ENDPOINTS

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        # x-api-key + anthropic-version, and a User-Agent naming the product (§2.2).
        return {"x-api-key": key, "anthropic-version": API_VERSION, "User-Agent": USER_AGENT}

    def probe(self) -> str:
        """One daily bucket of the messages report: cheap and admin-only (§2.2)."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        send(
            self.client,
            "GET",
            "organizations/usage_report/messages",
            self.settings,
            params={"starting_at": _rfc3339(today - timedelta(days=1)), "bucket_width": "1d", "limit": 1},
        )
        return ""  # the report does not name the organisation; the connection label is used

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Walk ``endpoint`` over ``window`` (Claude Code: one day per request, §2.6)."""
        if endpoint.name == "claude_code":
            yield from self._claude_code_pages(endpoint, window)
            return
        params: dict[str, Any] = {
            "starting_at": _rfc3339(window.start),
            "ending_at": _rfc3339(window.end),
            "bucket_width": "1h" if endpoint.width == HOUR else "1d",
            "limit": endpoint.max_buckets,
            "group_by[]": list(endpoint.group_by),
        }
        for payload, is_last in iter_cursor_pages(self.client, self.settings, endpoint.path, params):
            yield Page(payload, window.end if is_last else _last_start(payload))

    def _claude_code_pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        for day in window.days():
            params = {"starting_at": day.strftime("%Y-%m-%d"), "limit": endpoint.max_buckets}
            for payload, is_last in iter_cursor_pages(self.client, self.settings, endpoint.path, params):
                yield Page(payload, day + DAY if is_last else day)


def _last_start(payload: Mapping[str, Any]) -> datetime | None:
    data = payload.get("data") or []
    if not data:
        return None
    return _time(data[-1].get("starting_at"), "starting_at")


__all__ = ["ENDPOINTS", "AnthropicProvider", "parse_claude_code", "parse_cost_report", "parse_messages"]
