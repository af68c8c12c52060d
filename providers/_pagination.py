"""Cursor pagination shared by providers (code-anchors §11.4).

OpenAI and Anthropic page the same way: ``has_more`` + ``next_page``, echoed back as ``page``
(provider-apis.md §1.3, §2.3). The helper treats an empty ``next_page`` as none (§1.7.10). A
cursor that repeats would loop forever on a misbehaving API: the page it names was read already
(its rows meet the stored ones through their natural keys), so the walk stops there, says so in
the log, and reports the page as *not* the last one: the sync keeps what it stored, its mark
advances only past the buckets those pages completed, and the next run goes on from there instead
of the endpoint failing (and never marking unread buckets done).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from collector.core.http import send
from collector.core.settings import Settings
from providers.base import ProviderError

log = logging.getLogger(__name__)


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
        ProviderError: ``has_more`` is true with no cursor (that would lose data silently).
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
            log.warning("%s: the pagination cursor repeated after %d page(s); its page was read already", url,
                        len(seen) + 1)  # fmt: skip
            yield payload, False
            return
        seen.add(str(nxt))
        yield payload, False
        cursor = str(nxt)


__all__ = ["iter_cursor_pages"]
