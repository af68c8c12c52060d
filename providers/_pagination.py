"""Cursor pagination shared by providers (code-anchors §11.4).

OpenAI and Anthropic page the same way: ``has_more`` + ``next_page``, echoed back as ``page``
(provider-apis.md §1.3, §2.3). The helper treats an empty ``next_page`` as none (§1.7.10) and
stops with an error when a cursor repeats, instead of looping forever on a misbehaving API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from collector.core.http import send
from collector.core.settings import Settings
from providers.base import ProviderError


def iter_cursor_pages(
    client: httpx.Client,
    settings: Settings,
    url: str,
    params: Mapping[str, Any],
    *,
    cursor_field: str = "next_page",
    has_more_field: str = "has_more",
    cursor_param: str = "page",
) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Yield ``(payload, is_last)`` for each page, parsed with exact decimals.

    Raises:
        ProviderError: a cursor came back that was already used, or ``has_more`` is true with
            no cursor (either would lose or repeat data silently).
        collector.core.http.FatalAPIError: a client error (401/403/400 ...), at once.
        collector.core.http.RetriableAPIError: a transient error outlived the retry policy.
    """
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        query = dict(params)
        if cursor is not None:
            query[cursor_param] = cursor
        payload = send(client, "GET", url, settings, params=query, parse_float=Decimal)
        if not isinstance(payload, Mapping):
            raise ProviderError(f"{url}: expected a JSON object page, got {type(payload).__name__}")
        nxt = payload.get(cursor_field) or None  # "" means none (provider-apis.md §1.7.10)
        more = bool(payload.get(has_more_field))
        if not more:
            yield payload, True
            return
        if nxt is None:
            raise ProviderError(f"{url}: has_more is true but {cursor_field} is empty; refusing to guess")
        if nxt in seen or nxt == cursor:
            raise ProviderError(f"{url}: the pagination cursor repeated after {len(seen) + 1} page(s); stopping")
        seen.add(str(nxt))
        yield payload, False
        cursor = str(nxt)


__all__ = ["iter_cursor_pages"]
