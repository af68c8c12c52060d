"""Provider API clients behind one small base class and an explicit registry (code-anchors §11.1).

Adding a provider is one new module with a :class:`~providers.base.Provider` subclass plus one
line in :data:`REGISTRY`; ``tests/providers/test_contract.py`` runs over every entry.
"""

from __future__ import annotations

from providers.anthropic import AnthropicProvider
from providers.aws_bedrock import AwsBedrockProvider
from providers.azure_openai import AzureOpenAIProvider
from providers.base import Provider
from providers.google import GoogleBillingProvider
from providers.openai import OpenAIProvider
from providers.openrouter import OpenRouterProvider
from providers.xai import XAIProvider

REGISTRY: dict[str, type[Provider]] = {
    OpenAIProvider.name: OpenAIProvider,
    AnthropicProvider.name: AnthropicProvider,
    OpenRouterProvider.name: OpenRouterProvider,
    XAIProvider.name: XAIProvider,
    AwsBedrockProvider.name: AwsBedrockProvider,
    AzureOpenAIProvider.name: AzureOpenAIProvider,
    GoogleBillingProvider.name: GoogleBillingProvider,
}
#: Short names ``connections add`` also accepts (``aws`` -> ``aws_bedrock``).
ALIASES: dict[str, str] = {alias: cls.name for cls in REGISTRY.values() for alias in cls.aliases}


class UnknownProviderError(KeyError):
    """No provider by that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_provider(name: str) -> type[Provider]:
    """The provider class registered as ``name``.

    Raises:
        UnknownProviderError: naming the providers that exist.
    """
    try:
        return REGISTRY[ALIASES.get(name, name)]
    except KeyError:
        raise UnknownProviderError(f"unknown provider {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["ALIASES", "REGISTRY", "Provider", "UnknownProviderError", "get_provider"]
