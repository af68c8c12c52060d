"""The provider catalogue: one entry per provider the product knows, whatever the source.

A provider's id is what usage rows carry in ``provider``. The catalogue gives each id its
display and invoice names (FOCUS ``ProviderName`` / ``InvoiceIssuerName``), its chart colour
(the same on every page) and its id in the ``genai-prices`` table. Providers a source reports
that are not listed here still work everywhere; they are simply shown by id, priced under their
own id and coloured from a stable hash.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What the product knows about one provider id."""

    id: str
    name: str
    issuer: str
    colour: str
    price_id: str


def _p(pid: str, name: str, colour: str, price_id: str | None = None, issuer: str | None = None) -> ProviderInfo:
    return ProviderInfo(pid, name, issuer or name, colour, price_id or pid)


#: Colours are Okabe-Ito-like and distinguishable when printed.
PROVIDERS: dict[str, ProviderInfo] = {
    p.id: p
    for p in (
        _p("openai", "OpenAI", "#10a37f"),
        _p("anthropic", "Anthropic", "#d97757"),
        _p("google", "Google Cloud", "#4285f4"),
        _p("aws_bedrock", "AWS", "#ff9900", price_id="aws"),
        _p("azure_openai", "Microsoft", "#0078d4", price_id="azure"),
        _p("mistral", "Mistral AI", "#fa520f"),
        _p("xai", "xAI", "#444444", price_id="x-ai"),
        _p("groq", "Groq", "#f55036"),
        _p("deepseek", "DeepSeek", "#4d6bfe"),
        _p("fireworks", "Fireworks AI", "#6720ff"),
        _p("openrouter", "OpenRouter", "#94a3b8"),
    )
}

#: Kinds whose usage is already part of another kind of the same provider, so adding them would
#: count it twice: Claude Code's per-user report repeats tokens of the Messages usage report
#: (provider-apis.md §2.6). Reports keep them apart (design rule 7); kind -> the kind that holds it.
SUBSET_KINDS: dict[tuple[str, str], str] = {("anthropic", "claude_code"): "messages"}

#: Other spellings some sources use for a provider of the catalogue, by price-table id.
_PRICE_ALIASES = {"bedrock": "aws", "gcp_vertex": "google", "vertex": "google", "gemini": "google"}


#: Names people write for a catalogued provider in files and forms (compared lower-cased, with
#: spaces, dots, dashes and underscores removed).
_SPELLINGS = {
    "amazonbedrock": "aws_bedrock",
    "awsbedrock": "aws_bedrock",
    "bedrock": "aws_bedrock",
    "azureopenai": "azure_openai",
    "azureopenaiservice": "azure_openai",
    "googlecloud": "google",
    "gcp": "google",
    "vertexai": "google",
    "gemini": "google",
    "xai": "xai",
    "mistralai": "mistral",
    "fireworksai": "fireworks",
}


def provider_id(name: str) -> str | None:
    """The catalogue id a provider name means (``AWS Bedrock``, ``aws-bedrock`` -> ``aws_bedrock``), or None."""
    squeezed = "".join(ch for ch in name.strip().lower() if ch.isalnum())
    for pid, info in PROVIDERS.items():
        if squeezed in (
            "".join(ch for ch in pid if ch.isalnum()),
            "".join(ch for ch in info.name.lower() if ch.isalnum()),
        ):
            return pid
    return _SPELLINGS.get(squeezed)


def price_id(provider: str) -> str:
    """The provider's id in the ``genai-prices`` table (its own id when not catalogued)."""
    known = PROVIDERS.get(provider)
    return known.price_id if known else _PRICE_ALIASES.get(provider, provider)


def display_name(provider: str) -> str:
    """The provider's name as invoices say it (its id when not catalogued)."""
    known = PROVIDERS.get(provider)
    return known.name if known else provider


__all__ = ["PROVIDERS", "SUBSET_KINDS", "ProviderInfo", "display_name", "price_id", "provider_id"]
