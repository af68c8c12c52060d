"""One model, one name: the canonical id a model is grouped under, whichever source reported it.

Sources name the same model differently: OpenAI's usage API says ``gpt-4o-mini-2024-07-18``,
Bedrock's CUR a billing name (``USE1-Claude4.6Sonnet-input-tokens`` -> ``Claude4.6Sonnet``,
provider-apis.md §6.2), Bedrock's runtime an inference-profile id
(``us.anthropic.claude-sonnet-4-5-20250929-v1:0``), Fireworks a resource path
(``accounts/fireworks/models/llama-v3p1-8b-instruct``, §8), Vertex ``publishers/google/models/...``.
The canonical id is the ``genai-prices`` table's id for the model, looked up first in the
*publisher's* table (so Claude on Bedrock and Claude on Anthropic's API group together), then in
the reselling provider's own; a model the table does not know keeps its id with the wrappers
removed. The id the source sent is kept on every row as ``model_raw`` (design rule 7).
"""

from __future__ import annotations

import re
from functools import lru_cache

from genai_prices import data_snapshot

from collector.core.catalog import price_id

#: Price tables of the companies that publish models, searched before the reseller's own.
PUBLISHERS = ("anthropic", "openai", "google", "mistral", "x-ai", "deepseek", "cohere", "meta")

_WRAPPERS = (
    re.compile(r"^accounts/[^/]+/models/"),  # Fireworks resources (§8)
    re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/models/"),  # Vertex resource names
    re.compile(r"^models/"),  # Gemini API resource names
    # Bedrock model and inference-profile ids: region / scope, then the vendor (§6.2).
    re.compile(
        r"^(?:(?:us|eu|apac|us-gov|global|regional|jp|au)\.)?(?:anthropic|meta|amazon|mistral|cohere|ai21|deepseek|openai|qwen|writer)\."
    ),
)
_BEDROCK_VERSION = re.compile(r"(?:-v\d+)?(?::\d+)?$")
#: A Bedrock billing name from a CUR usage type: ``Claude4.6Sonnet``, ``Claude3Haiku``, ``Nova2.0Lite``.
_BILLING_NAME = re.compile(r"^(?P<family>[A-Z][a-z]+)(?P<version>\d+(?:\.\d+)?)(?P<rest>(?:[A-Z][a-z0-9]*)+)$")


def _unwrap(raw: str) -> str:
    name = raw.strip()
    for pattern in _WRAPPERS:
        name = pattern.sub("", name)
    if name != raw.strip():
        name = _BEDROCK_VERSION.sub("", name)
    return name


def _candidates(raw: str) -> list[str]:
    """Spellings worth looking up, most specific first."""
    name = _unwrap(raw)
    out = [name]
    billing = _BILLING_NAME.match(name)
    if billing:
        family, version = billing["family"].lower(), billing["version"].replace(".", "-")
        rest = "-".join(w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", billing["rest"]))
        out += [f"{family}-{rest}-{version}", f"{family}-{version}-{rest}"]
    if raw not in out:
        out.append(raw)
    return out


def _lookup(name: str, table: str) -> str | None:
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(name, None, table, None)
    except LookupError:
        return None
    return info.id


@lru_cache(maxsize=16_384)
def canonical_model(provider: str, raw: str) -> str:
    """The id ``raw`` (as ``provider`` reported it) is grouped under; ``''`` stays ``''``."""
    if not raw:
        return raw
    own = price_id(provider)
    tables = (*PUBLISHERS, own) if own not in PUBLISHERS else (own, *(t for t in PUBLISHERS if t != own))
    for name in _candidates(raw):
        for table in tables:
            found = _lookup(name, table)
            if found is not None:
                return found
    return _unwrap(raw) or raw


__all__ = ["PUBLISHERS", "canonical_model"]
