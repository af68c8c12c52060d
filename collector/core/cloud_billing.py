"""How cloud bills name AI usage: model and token direction from usage types, SKUs and meters.

A cloud's billing data (AWS Cost Explorer and CUR, Google's billing export, Azure Cost Management
and its exports) says which model and which token direction a charge is for only inside free
text: a Bedrock usage type (``USE1-Claude4.6Sonnet-cache-read-input-token-count``,
provider-apis.md §6.2), a Gemini SKU description ("Generative Language API - Gemini 2.0 Flash -
Input tokens", §3.2), an Azure OpenAI meter name ("gpt-4o-0513-Input-glbl", §5.2). The CSV
importers and the cost-API providers read the *same* bill, so they must read it the same way, or
one charge would be filed under two models and precedence between them could not line up: the
rules live here, in core, because providers and importers never import each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: ``(input, cache_read, cache_write_5m, cache_write_1h, output)`` of a row that holds no tokens.
NO_TOKENS = (0, 0, 0, 0, 0)
#: Billing-export units that count tokens (Google's ``usage.unit``, §3.2).
TOKEN_UNITS = frozenset({"", "count", "token", "tokens", "1000 count", "1k tokens", "1000 tokens"})
#: Bedrock service tiers spelled at the end of a usage type (§6.2).
TIERS = frozenset({"standard", "flex", "priority", "batch", "reserved", "latency-optimized"})
#: Azure meter categories that hold Azure OpenAI / AI Services meters (§5.2, §5.3).
AI_METER_CATEGORIES = frozenset({"cognitive services", "azure openai", "azure openai service", "foundry models"})

_FAMILIES = re.compile(
    r"\b(gemini|gemma|claude|llama|mistral|mixtral|codestral|imagen|veo|chirp|jamba|command|"
    r"text-embedding|embedding|gpt|dall-e|whisper|o1|o3|o4|nova|titan|deepseek|qwen|grok|phi)\b",
    re.I,
)
#: Words that end a model name inside a SKU or meter text.
_STOP = re.compile(
    r"\s*(?:\b|[-_])(input|inp|output|outp|prompt|completion|cached|cchd|cache|tokens?|characters?|"
    r"requests?|images?|count|for|with|on|long|short|batch|online|predictions?|global|glbl|regional|"
    r"regnl|data\s*zone|dzone|priority|flex|standard|text)\b.*$",
    re.I,
)
_DIRECTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"cache[ _-]?(read|hit)|cached|cchd|cache[-_ ]?input", re.I), "cache_read"),
    (re.compile(r"cache[ _-]?(write|creation|storage)", re.I), "cache_write"),
    (re.compile(r"(^|[^a-z])(input|inp|prompt)([^a-z]|$)|inputtoken", re.I), "input"),
    (re.compile(r"(^|[^a-z])(output|outp|completion|generated)([^a-z]|$)|outputtoken", re.I), "output"),
)
_REGION = re.compile(r"^[A-Z]{2,4}\d?-(?=.)")
_TOKEN_TYPE = re.compile(
    r"-(?:mantle-)?(?P<dir>input|output)-tokens?(?:-(?P<tail>.+))?$"
    r"|-cache-(?P<cache>read|write)-input-token-count(?:-(?P<ctail>.+))?$",
    re.I,
)
_MARKETPLACE = re.compile(r"(?P<dir>Input|Output|CacheRead|CacheWrite)TokenCount", re.I)
_NEW_STYLE = re.compile(r"(?:^|[_:-])(?P<dir>input|output)_tokens(?:_(?P<tail>[a-z]+))?", re.I)
_AZURE_OPENAI = re.compile(r"openai|\bgpt|\bo[134]\b|\bo[134]-|dall-?e|whisper|embedding|\btts\b", re.I)


def slug(text: str) -> str:
    """Lower-case, hyphenated identifier from a display name (``Gemini 2.0 Flash`` -> ``gemini-2.0-flash``)."""
    return re.sub(r"[^0-9a-z.]+", "-", text.strip().lower()).strip("-")


def unit_multiplier(unit: str) -> tuple[int, str]:
    """Split a unit such as ``1000 Tokens``, ``1K tokens`` or ``1M`` into (multiplier, base unit).

    FOCUS allows a unit quantity in the unit (provider-apis.md §9.3, "1000 Tokens"); AWS and Azure
    price tokens per 1K (§5.2, §6.2).
    """
    m = re.match(r"^\s*(\d[\d,]*)?\s*([kKmM])?\b\s*(.*)$", unit)
    if not m or not (m[1] or m[2]):
        return 1, unit.strip().lower()
    n = int(m[1].replace(",", "")) if m[1] else 1
    n *= {"k": 1000, "m": 1_000_000}.get((m[2] or "").lower(), 1)
    return max(n, 1), (m[3] or "").strip().lower()


def token_direction(text: str) -> str:
    """Which token field a SKU / meter / usage-type text describes: input, output, cache_read, cache_write or ''.

    Cache texts are tested first because "cache read input tokens" also says "input"
    (AWS usage types, provider-apis.md §6.2; Azure meters §5.2; Gemini SKUs §3.2).
    """
    for pattern, direction in _DIRECTIONS:
        if pattern.search(text):
            if direction == "cache_write" and "storage" in text.lower():
                return ""  # cache *storage* is billed per hour, not tokens
            return direction
    return ""


def token_fields(direction: str, count: int, text: str = "") -> tuple[int, int, int, int, int]:
    """``(input, cache_read, cache_write_5m, cache_write_1h, output)`` for ``count`` tokens of one direction.

    Cache reads and writes are also input: input is total input (design rule 4).
    """
    if direction == "input":
        return (count, 0, 0, 0, 0)
    if direction == "output":
        return (0, 0, 0, 0, count)
    if direction == "cache_read":
        return (count, count, 0, 0, 0)
    if direction == "cache_write":
        if re.search(r"1\s*h", text, re.I):
            return (count, 0, 0, count, 0)
        return (count, 0, count, 0, 0)
    return NO_TOKENS


def model_from_text(text: str) -> str:
    """Best-effort model name from a SKU description or meter name.

    "Generative Language API - Gemini 2.0 Flash - Input tokens" -> ``gemini-2.0-flash``
    (provider-apis.md §3.2); "gpt-4o-0513-Input-glbl" -> ``gpt-4o-0513`` (§5.2). Returns ''
    when no known model family is named: a billed row needs no model to be counted.
    """
    for part in re.split(r"\s+-\s+|\s*[|:]\s*", text):
        m = _FAMILIES.search(part)
        if m:
            name = _STOP.sub("", part[m.start() :])
            return slug(name)
    return ""


@dataclass(frozen=True, slots=True)
class UsageType:
    """What a Bedrock usage type says: model billing name, token direction, tier."""

    model: str
    direction: str
    tier: str


def parse_usage_type(text: str) -> UsageType:
    """Split a Bedrock usage type into model, token direction and tier (provider-apis.md §6.2).

    ``USE1-Claude4.6Sonnet-cache-read-input-token-count`` -> (Claude4.6Sonnet, cache_read, '');
    ``USE1-Nova2.0Lite-input-tokens-flex`` -> (Nova2.0Lite, input, flex);
    ``USE1-MP:USE1_InputTokenCount-Units`` -> ('', input, '') (model from the product name).
    """
    rest = _REGION.sub("", text.strip())
    m = _TOKEN_TYPE.search(rest)
    if m:
        model = rest[: m.start()]
        if m["cache"]:
            direction, tail = f"cache_{m['cache'].lower()}", m["ctail"] or ""
        else:
            direction, tail = m["dir"].lower(), m["tail"] or ""
        tier = tail.lower() if tail.lower() in TIERS else ""
        return UsageType(model, direction, tier)
    m2 = _MARKETPLACE.search(rest)
    if m2:
        d = m2["dir"].lower()
        direction = {"cacheread": "cache_read", "cachewrite": "cache_write"}.get(d, d)
        return UsageType("", direction, "")
    m3 = _NEW_STYLE.search(rest)
    if m3:
        tail = (m3["tail"] or "").lower()
        return UsageType("", m3["dir"].lower(), tail if tail in TIERS else "")
    return UsageType("", "", "")


def is_azure_openai_meter(meter_subcategory: str, meter: str) -> bool:
    """True when an Azure meter's sub-category or name names an OpenAI model (§5.2)."""
    return bool(_AZURE_OPENAI.search(f"{meter_subcategory} {meter}"))


__all__ = [
    "AI_METER_CATEGORIES",
    "NO_TOKENS",
    "TIERS",
    "TOKEN_UNITS",
    "UsageType",
    "is_azure_openai_meter",
    "model_from_text",
    "parse_usage_type",
    "slug",
    "token_direction",
    "token_fields",
    "unit_multiplier",
]
