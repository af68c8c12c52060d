"""The provider contract, run over every entry of the registry (code-anchors §11.14)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from collector.core.schema import KEY_FIELDS, UsageRecord
from collector.core.settings import Settings
from collector.core.windows import DAY, Window, floor
from providers import REGISTRY, UnknownProviderError, get_provider
from providers.base import KeyFormatError, Provider
from tests.providers.helpers import CTX, FIXTURES

CASES = [(name, ep.name) for name, cls in REGISTRY.items() for ep in cls.endpoints]
KEYS = {"openai": "sk-admin-test-contract01", "anthropic": "sk-ant-admin01-test-contract"}


def test_registry_names_and_lookup():
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Provider) and cls.name == name and get_provider(name) is cls
        assert cls.endpoints and len({e.name for e in cls.endpoints}) == len(cls.endpoints)
        assert cls.base_url_setting in Settings.model_fields
    with pytest.raises(UnknownProviderError, match="available: anthropic, openai"):
        get_provider("nope")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_wrong_kind_of_key_is_refused(name):
    cls = REGISTRY[name]
    cls.check_key(KEYS[name])
    for bad in ("sk-proj-test-0000000000", "sk-ant-api03-test-000000", "", "sk-admin-has space"):
        if not bad.startswith(cls.admin_key_prefixes) or " " in bad or not bad:
            with pytest.raises(KeyFormatError):
                cls.check_key(bad)


@pytest.mark.parametrize(("name", "endpoint"), CASES)
def test_two_pages_after_a_429_yield_full_records(name, endpoint, tmp_path):
    payload = json.loads((FIXTURES / name / f"{endpoint}_documented.json").read_text())
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"message": "slow down"}})
        more = "page" not in request.url.params
        return httpx.Response(200, json={**payload, "has_more": more, "next_page": "cursor-2" if more else None})

    settings = Settings(data_dir=tmp_path, http_max_backoff_seconds=0.01)
    api = REGISTRY[name].connect(settings, KEYS[name], transport=httpx.MockTransport(handler))
    ep = api.endpoint(endpoint)
    end = floor(datetime.now(UTC), DAY)
    window = Window(end - (DAY if ep.width == DAY else timedelta(hours=6)), end)
    pages = list(api.pages(ep, window))
    assert len(pages) == 2 and len(seen) == 3  # 429, page 1, page 2
    assert pages[-1].through == window.end
    assert seen[-1].url.params["page"] == "cursor-2"
    secret_header = "authorization" if name == "openai" else "x-api-key"
    assert KEYS[name] in seen[-1].headers[secret_header]
    records = [r for p in pages for r in ep.parse(p.payload, CTX)]
    assert records
    for rec in records:
        assert isinstance(rec, UsageRecord)
        assert (rec.provider, rec.kind, rec.source, rec.account) == (name, endpoint, "api", "org-test")
        assert all(getattr(rec, f) is not None for f in KEY_FIELDS)
        assert rec.basis in ("billed", "estimated", "unpriced")
