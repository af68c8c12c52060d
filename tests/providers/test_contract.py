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

KEYS = {"openai": "sk-admin-test-contract01", "anthropic": "sk-ant-admin01-test-contract"}
#: The cursor-paged admin APIs (``has_more`` + ``next_page``); the cloud billing providers page
#: their own ways and run through their fakes in tests/cloud.
CASES = [(name, ep.name) for name, cls in REGISTRY.items() for ep in cls.endpoints if name in KEYS]


def test_registry_names_and_lookup():
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Provider) and cls.name == name and get_provider(name) is cls
        assert cls.endpoints and len({e.name for e in cls.endpoints}) == len(cls.endpoints)
        assert cls.base_url_setting in Settings.model_fields
    with pytest.raises(UnknownProviderError, match="available: anthropic, aws_bedrock, azure_openai, google, openai"):
        get_provider("nope")
    assert get_provider("aws") is REGISTRY["aws_bedrock"] and get_provider("azure") is REGISTRY["azure_openai"]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_credential_parts_are_declared_consistently(name):
    cls = REGISTRY[name]
    names = [f.name for f in cls.fields]
    assert len(names) == len(set(names))
    assert all(f.vault for f in cls.fields if f.secret)  # a secret is never a plain setting
    if not cls.vault_fields():
        return
    with pytest.raises(KeyFormatError):
        cls.check_key("not json")
    with pytest.raises(KeyFormatError):
        cls.check_key("{}")  # the required parts are missing
    with pytest.raises(KeyFormatError):
        cls.pack_credential({"no_such_part": "x"})


def test_cloud_credentials_hint_without_their_secrets():
    from tests.cloud.helpers import connection, secrets_of

    for name in ("aws_bedrock", "azure_openai", "google"):
        cls = REGISTRY[name]
        key = connection(name, "http://127.0.0.1:9", "https://127.0.0.1:9")["key"]
        cls.check_key(key)
        hint = cls.key_hint(key)
        assert hint and len(hint) <= 64
        for secret in (*secrets_of(name), *cls.secrets_in(key)):
            assert secret not in hint and secret[-12:] not in hint
        assert all(cls.secrets_in(key))


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        ("azure_openai", {"scope": "subscriptions/not-a-guid"}, "scope"),
        (
            "azure_openai",
            {"scope": "subscriptions/3f2e5d1c-0a9b-4c8d-9e7f-6a5b4c3d2e1f", "authority": "http://evil.example"},
            "authority",
        ),
        ("google", {"table": "proj.dataset.t` WHERE 1=1 --"}, "table"),
        ("google", {"table": "billing-proj.ds.t", "max_bytes_billed": "1e9"}, "max_bytes_billed"),
        ("aws_bedrock", {"account": "12345"}, "12 digits"),
        ("aws_bedrock", {"sts_url": "http://sts.example.com"}, "sts_url"),
        ("aws_bedrock", {"nonsense": "x"}, "no setting"),
        ("xai", {"team_id": "a\x00b"}, "printable"),
    ],
)
def test_hostile_settings_are_refused(name, options, error):
    with pytest.raises(KeyFormatError, match=error):
        REGISTRY[name].check_options(options)


@pytest.mark.parametrize("name", list(KEYS))
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
