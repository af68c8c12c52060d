"""The cursor pager: empty cursors, repeating cursors, clamped end times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from collector.core.http import FatalAPIError, make_client
from collector.core.settings import Settings
from collector.core.windows import HOUR, Window, floor
from providers._pagination import iter_cursor_pages
from providers.base import ProviderError
from providers.openai import OpenAIProvider


def _client(pages, seen):
    def handler(request):
        seen.append(request)
        return httpx.Response(200, content=pages[min(len(seen), len(pages)) - 1])

    return make_client(Settings(), base_url="http://127.0.0.1/", transport=httpx.MockTransport(handler))


def test_empty_string_next_page_ends_the_walk_and_floats_stay_exact():
    seen = []
    client = _client([b'{"data": [], "has_more": false, "next_page": "", "v": 1.29e-05}'], seen)
    [(payload, last)] = list(iter_cursor_pages(client, Settings(), "x", {}))
    assert last and payload["v"] == Decimal("1.29e-05") and len(seen) == 1


def test_a_repeating_cursor_ends_the_walk_instead_of_looping_or_failing(caplog):
    seen = []
    client = _client([b'{"data": [1], "has_more": true, "next_page": "same"}'], seen)
    with caplog.at_level("WARNING", logger="providers._pagination"):
        pages = list(iter_cursor_pages(client, Settings(), "x", {}))
    assert len(seen) == 2  # the repeated page is read once more, never again
    assert [last for _, last in pages] == [False, False]  # the walk ends there, not claiming the window done
    assert "cursor repeated after 2 page(s)" in caplog.text


def test_has_more_without_a_cursor_raises():
    client = _client([b'{"data": [], "has_more": true, "next_page": null}'], [])
    with pytest.raises(ProviderError, match="has_more is true"):
        list(iter_cursor_pages(client, Settings(), "x", {}))


def test_openai_end_time_is_clamped_to_now_and_group_by_uses_brackets():
    seen = []
    client = _client([b'{"object": "page", "data": [], "has_more": false, "next_page": null}'], seen)
    api = OpenAIProvider(client, Settings())
    start = floor(datetime.now(UTC), HOUR)
    list(api.pages(api.endpoint("completions"), Window(start, start + timedelta(hours=3))))
    params = seen[0].url.params
    assert int(params["end_time"]) <= datetime.now(UTC).timestamp()
    assert params.get_list("group_by[]") == ["project_id", "api_key_id", "model", "batch", "service_tier"]
    assert params["bucket_width"] == "1h" and params["limit"] == "168"


def test_a_401_is_fatal_and_not_retried():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(401, json={"error": {"message": "Incorrect API key provided: sk-admin-abcdefghijklmnop"}})

    client = make_client(Settings(), base_url="http://127.0.0.1/", transport=httpx.MockTransport(handler))
    with pytest.raises(FatalAPIError) as err:
        list(iter_cursor_pages(client, Settings(), "x", {}))
    assert err.value.is_auth and len(seen) == 1 and "abcdefghijklmnop" not in str(err.value)
