"""OpenRouter: daily activity per model and upstream endpoint, read with a management key.

Facts from provider-apis.md §7 (the official OpenAPI spec). ``GET /activity`` returns "the last
30 (completed) UTC days" grouped by endpoint, with the USD OpenRouter charged (``usage``),
requests and prompt / completion / reasoning tokens (§7.1); it has no pagination, so the sync asks
one ``date=`` at a time: each day is one page, and a day is stored and marked done before the
next is asked. OpenRouter's charges *are* the bill, so rows are ``billed``. The credit balance
(``GET /credits``, §7.4) is a level, reported beside the connection, never as spend.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from collector.core.http import send
from collector.core.schema import UsageRecord
from collector.core.windows import DAY, Window
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
)

NAME = "openrouter"
#: ``/activity`` only serves the last 30 completed UTC days (§7.1); older days are never asked.
ACTIVITY_DAYS = 30
_KNOWN = frozenset(
    {
        "date",
        "model",
        "endpoint_id",
        "provider_name",
        "usage",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "workspace_id",
    }
)


def _day(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ProviderError(f"openrouter activity date: expected YYYY-MM-DD, got {value!r}")
    try:
        return datetime.strptime(value[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ProviderError(f"openrouter activity date: not YYYY-MM-DD: {value[:40]!r}") from None


def parse_activity(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one ``/activity`` response (provider-apis.md §7.1).

    One row per (day, model, endpoint): ``endpoint_id`` keeps rows of one model served by two
    upstreams apart, ``provider_name`` (the upstream, e.g. "OpenAI") is the line item. ``usage``
    is what OpenRouter charged; ``byok_usage_inference`` was spent on the customer's own upstream
    key and billed by that upstream, so it is kept in ``details`` and never added (the upstream's
    own connection counts it). ``prompt_tokens`` is total input (there is no cached-token field,
    §7.1 gotchas); ``reasoning_tokens`` is part of ``completion_tokens``.
    """
    data = payload.get("data")
    if not isinstance(data, list):
        raise ProviderError("openrouter activity: response has no 'data' list")
    records = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ProviderError("openrouter activity: an item is not an object")
        day = _day(item.get("date"))
        records.append(
            UsageRecord(
                provider=NAME,
                source=SOURCE,
                kind="activity",
                bucket_start=day,
                bucket_end=day + DAY,
                account=ctx.account,
                project=str(item.get("workspace_id") or ""),
                model=str(item.get("model") or ""),
                line_item=str(item.get("provider_name") or ""),
                variant=f"endpoint={item['endpoint_id']}" if item.get("endpoint_id") else "",
                input_tokens=to_int(item.get("prompt_tokens"), "prompt_tokens"),
                output_tokens=to_int(item.get("completion_tokens"), "completion_tokens"),
                reasoning_tokens=to_int(item.get("reasoning_tokens"), "reasoning_tokens"),
                requests=to_int(item.get("requests"), "requests"),
                cost=to_decimal(item.get("usage", 0), "usage"),
                currency="USD",
                basis="billed",
                source_ref=ctx.source_ref,
                details=details(item, _KNOWN),
            )
        )
    return records


ENDPOINTS: tuple[Endpoint, ...] = (Endpoint("activity", "activity", DAY, 1, "cost", parse_activity),)


class OpenRouterProvider(Provider):
    """OpenRouter spend per day, model and upstream, read with a management key."""

    name = NAME
    title = "OpenRouter"
    admin_key_prefixes = ("sk-or-",)
    key_help = (
        "this is not an OpenRouter key: activity and credits need a management key (sk-or-v1-..., "
        "formerly called a provisioning key), created in the OpenRouter settings under management keys"
    )
    base_url_setting = "openrouter_base_url"
    endpoints = ENDPOINTS

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def probe(self) -> str:
        """``GET /credits``: cheap, and refused (403) for an inference key (§7.4)."""
        send(self.client, "GET", "credits", self.settings)
        return ""  # the API does not name the account; the connection label is used

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """One request per UTC day of the window that ``/activity`` still serves (§7.1)."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        oldest = today - timedelta(days=ACTIVITY_DAYS)
        for day in window.days():
            if day < oldest:
                continue  # past the 30-day horizon: nothing to ask (a README limit)
            params = {"date": day.strftime("%Y-%m-%d")}
            payload = send(self.client, "GET", endpoint.path, self.settings, params=params, parse_float=Decimal)
            if not isinstance(payload, Mapping):
                raise ProviderError("openrouter activity: expected a JSON object")
            yield Page(payload, day + DAY)

    def account_facts(self) -> dict[str, str]:
        """Credits bought, spent and left, in USD (``/credits``, §7.4: remaining = total - usage)."""
        body = send(self.client, "GET", "credits", self.settings, parse_float=Decimal)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping):
            return {}
        total = to_decimal(data.get("total_credits", 0), "total_credits")
        used = to_decimal(data.get("total_usage", 0), "total_usage")
        return {"credits_usd": str(total), "used_usd": str(used), "balance_usd": str(total - used)}


__all__ = ["ENDPOINTS", "OpenRouterProvider", "parse_activity"]
