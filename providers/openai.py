"""OpenAI Administration API: ten usage endpoints at ``1h`` and ``/organization/costs`` at ``1d``.

Facts from provider-apis.md §1 (spec ``openai-usage-spec.yaml``). Usage rows are priced with the
public price table (``estimated``/``unpriced``); cost rows are what OpenAI ``billed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

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
)

NAME = "openai"
#: Page caps per bucket width (provider-apis.md §1.3 and §1.7.1): 168 hourly buckets, 180 cost days.
HOURLY_LIMIT = 168
COST_LIMIT = 180
#: Result fields that become key columns (provider-apis.md §1.4 "Dimension fields").
_DIMS = {"project_id": "project", "user_id": "user_id", "api_key_id": "api_key_id", "model": "model"}
_VARIANT_FIELDS = ("size", "source", "context_level", "vector_store_id")
_KNOWN = frozenset({"object", *_DIMS, "batch", "service_tier", "line_item", *_VARIANT_FIELDS})


def _ts(value: Any, what: str) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProviderError(f"openai {what}: expected Unix seconds, got {value!r}")
    return datetime.fromtimestamp(value, UTC)


def _buckets(payload: Mapping[str, Any], kind: str) -> Iterator[tuple[datetime, datetime, Mapping[str, Any]]]:
    """``(start, end, result)`` for every result of every bucket (spec ``UsageTimeBucket``, §1.4)."""
    data = payload.get("data")
    if not isinstance(data, list):
        raise ProviderError(f"openai {kind}: page has no 'data' list")
    for bucket in data:
        start = _ts(bucket.get("start_time"), f"{kind} bucket start_time")
        end = _ts(bucket.get("end_time"), f"{kind} bucket end_time")
        for result in bucket.get("results") or ():  # empty buckets are "results": [] (§1.6 cookbook)
            yield start, end, result


# -- measures per endpoint (spec result schemas, provider-apis.md §1.5) ---------------------------


def _completions(r: Mapping[str, Any]) -> dict[str, Any]:
    # input_tokens already includes cached and cache-write tokens (§1.5), OpenAI's meaning = ours.
    # Old-shape rows (Dec 2024 schema) lack the cache-write/uncached split: missing counts are 0.
    return {
        "input_tokens": to_int(r.get("input_tokens"), "input_tokens"),
        "cache_read_tokens": to_int(r.get("input_cached_tokens"), "input_cached_tokens"),
        "cache_write_5m_tokens": to_int(r.get("input_cache_write_tokens"), "input_cache_write_tokens"),
        "output_tokens": to_int(r.get("output_tokens"), "output_tokens"),
        "requests": to_int(r.get("num_model_requests"), "num_model_requests"),
    }


def _tokens_only(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "input_tokens": to_int(r.get("input_tokens"), "input_tokens"),
        "requests": to_int(r.get("num_model_requests"), "num_model_requests"),
    }


def _quantity(field: str, unit: str, requests_field: str | None = "num_model_requests") -> Callable[..., dict]:
    def measure(r: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"quantity": to_decimal(r.get(field) or 0, field), "quantity_unit": unit}
        if requests_field:
            out["requests"] = to_int(r.get(requests_field), requests_field)
        return out

    return measure


#: endpoint -> (group_by, measure function, measure fields consumed)
_USAGE: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], dict[str, Any]], frozenset[str]]] = {
    "completions": (
        ("project_id", "api_key_id", "model", "batch", "service_tier"),
        _completions,
        frozenset(
            {"input_tokens", "input_cached_tokens", "input_cache_write_tokens", "output_tokens", "num_model_requests"}
        ),
    ),
    "embeddings": (
        ("project_id", "api_key_id", "model"),
        _tokens_only,
        frozenset({"input_tokens", "num_model_requests"}),
    ),
    "moderations": (
        ("project_id", "api_key_id", "model"),
        _tokens_only,
        frozenset({"input_tokens", "num_model_requests"}),
    ),
    "images": (
        ("project_id", "api_key_id", "model", "size", "source"),
        _quantity("images", "images"),
        frozenset({"images", "num_model_requests"}),
    ),
    "audio_speeches": (
        ("project_id", "api_key_id", "model"),
        _quantity("characters", "characters"),
        frozenset({"characters", "num_model_requests"}),
    ),
    "audio_transcriptions": (
        ("project_id", "api_key_id", "model"),
        _quantity("seconds", "seconds"),
        frozenset({"seconds", "num_model_requests"}),
    ),
    # usage_bytes is a level (bytes stored in the hour), not a flow: do not sum it over time.
    "vector_stores": (("project_id",), _quantity("usage_bytes", "bytes", None), frozenset({"usage_bytes"})),
    "code_interpreter_sessions": (
        ("project_id",),
        _quantity("num_sessions", "sessions", None),
        frozenset({"num_sessions"}),
    ),
    "file_search_calls": (
        ("project_id", "api_key_id"),
        _quantity("num_requests", "calls", "num_requests"),
        frozenset({"num_requests"}),
    ),
    "web_search_calls": (
        ("project_id", "api_key_id", "model", "context_level"),
        _quantity("num_requests", "calls"),
        frozenset({"num_requests", "num_model_requests"}),
    ),
}


def _key_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {col: str(r.get(src) or "") for src, col in _DIMS.items()}
    out["batch"] = bool(r.get("batch"))
    out["service_tier"] = str(r.get("service_tier") or "")
    out["variant"] = ";".join(f"{n}={r[n]}" for n in _VARIANT_FIELDS if r.get(n) not in (None, ""))
    return out


def parse_usage(kind: str, payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Records from one usage page of endpoint ``kind``; token rows carry an estimate.

    Unknown extra fields (provider-apis.md §1.7.4) and the unmapped token breakdowns
    (text/audio/image) go into ``details``; nothing is dropped silently.
    """
    _, measure, consumed = _USAGE[kind]
    known = _KNOWN | consumed
    records = []
    for start, end, r in _buckets(payload, kind):
        rec = UsageRecord(
            provider=NAME,
            source=SOURCE,
            kind=kind,
            bucket_start=start,
            bucket_end=end,
            account=ctx.account,
            source_ref=ctx.source_ref,
            details=details(r, known),
            **_key_fields(r),
            **measure(r),
        )
        records.append(rec)
    return records


def parse_costs(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed cost rows from one ``/organization/costs`` page (provider-apis.md §1.5, §1.7)."""
    records = []
    for start, end, r in _buckets(payload, "costs"):
        amount = r.get("amount") or {}
        # amount.value: number or string, possibly 1.29e-05; dollars, not cents (§1.7.2, §1.7.3).
        cost = to_decimal(amount.get("value", 0), "costs amount.value")
        currency = str(amount.get("currency") or "usd").upper()  # lowercase ISO code in the spec (§1.5)
        quantity = r.get("quantity")
        unit = str(r.get("quantity_unit") or "")
        qty = to_decimal(quantity, "costs quantity") if quantity is not None and unit else to_decimal(0, "")
        leftovers = dict(r)
        if quantity is not None and not unit:
            leftovers["unitless_quantity"] = quantity
        records.append(
            UsageRecord(
                provider=NAME,
                source=SOURCE,
                kind="costs",
                bucket_start=start,
                bucket_end=end,
                account=ctx.account,
                project=str(r.get("project_id") or ""),
                api_key_id=str(r.get("api_key_id") or ""),
                line_item=str(r.get("line_item") or ""),  # free text, kept raw (§1.7.5)
                quantity=qty,
                quantity_unit=unit if qty else "",
                cost=cost,
                currency=currency,
                basis="billed",
                source_ref=ctx.source_ref,
                details=details(
                    leftovers,
                    frozenset(
                        {"object", "amount", "project_id", "api_key_id", "line_item", "quantity", "quantity_unit"}
                    ),
                ),
            )
        )
    return records


def _usage_endpoint(kind: str) -> Endpoint:
    return Endpoint(
        name=kind,
        path=f"organization/usage/{kind}",
        width=HOUR,
        max_buckets=HOURLY_LIMIT,
        lookback="usage",
        parse=partial(parse_usage, kind),
        group_by=_USAGE[kind][0],
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    *(_usage_endpoint(kind) for kind in _USAGE),
    Endpoint(
        name="costs",
        path="organization/costs",
        width=DAY,
        max_buckets=COST_LIMIT,
        lookback="cost",
        parse=parse_costs,
        group_by=("project_id", "line_item"),
    ),
)


class OpenAIProvider(Provider):
    """OpenAI organisation usage and costs, read with an admin key."""

    name = NAME
    title = "OpenAI"
    admin_key_prefixes = ("sk-admin-",)
    key_help = (
        "this is not an OpenAI admin key: usage and costs can only be read with an admin key "
        "(sk-admin-...). A project key (sk-proj-...) or user key gets 'Missing scopes: api.usage.read'. "
        "An organization Owner creates one at https://platform.openai.com/settings/organization/admin-keys"
    )
    base_url_setting = "openai_base_url"
    endpoints = ENDPOINTS

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        # Bearer admin key (provider-apis.md §1.2).
        return {"Authorization": f"Bearer {key}"}

    def probe(self) -> str:
        """Read one day of costs: cheap, and refused to anything but an admin key (§1.2).

        Returns the ``organization_id`` when the API includes it (an undocumented extra, §1.7.4).
        """
        now = int(datetime.now(UTC).timestamp())
        payload = send(
            self.client,
            "GET",
            "organization/costs",
            self.settings,
            params={"start_time": now - 86_400, "end_time": now, "limit": 1},
        )
        for bucket in payload.get("data") or ():
            for result in bucket.get("results") or ():
                if result.get("organization_id"):
                    return str(result["organization_id"])
        return ""

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Walk ``endpoint`` over ``window``; ``end_time`` is never in the future (§1.7.9)."""
        now = datetime.now(UTC)
        end = min(window.end, now)
        params: dict[str, Any] = {
            "start_time": int(window.start.timestamp()),
            "end_time": int(end.timestamp()),
            "bucket_width": "1h" if endpoint.width == HOUR else "1d",
            "limit": endpoint.max_buckets,
            "group_by[]": list(endpoint.group_by),  # brackets, as the official SDK sends (§1.3)
        }
        for payload, is_last in iter_cursor_pages(self.client, self.settings, endpoint.path, params):
            yield Page(payload, window.end if is_last else _last_start(payload))


def _last_start(payload: Mapping[str, Any]) -> datetime | None:
    data = payload.get("data") or []
    if not data:
        return None
    return _ts(data[-1].get("start_time"), "bucket start_time")


def parser(name: str) -> Callable[[Mapping[str, Any], Context], list[UsageRecord]]:
    """The parser of an endpoint by name (for fixture tests)."""
    return next(e.parse for e in ENDPOINTS if e.name == name)


__all__ = ["ENDPOINTS", "OpenAIProvider", "parse_costs", "parse_usage", "parser"]
