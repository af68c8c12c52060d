"""Every endpoint through real httpx against vcrpy cassettes of the documented examples."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collector.core.settings import Settings
from collector.core.windows import DAY, Window, floor
from providers import REGISTRY
from tests.providers.conftest import CASSETTES
from tests.providers.helpers import CTX

#: AWS is stubbed with botocore's Stubber instead (tests/providers/test_cloud_documented.py).
CASES = [(name, ep.name) for name, cls in REGISTRY.items() for ep in cls.endpoints if name != "aws_bedrock"]
#: Values from the documented examples (provider-apis.md §1.6, §2.4-§2.6), checked on playback.
DOCUMENTED = {
    ("openai", "completions"): lambda recs: [r.input_tokens for r in recs] == [1000, 5000],
    ("openai", "embeddings"): lambda recs: recs[0].input_tokens == 16,
    ("openai", "costs"): lambda recs: recs[0].cost == Decimal("0.06"),
    ("openai", "images"): lambda recs: recs[0].quantity == 2,
    ("anthropic", "messages"): lambda recs: recs[0].input_tokens == 3200,
    ("anthropic", "cost_report"): lambda recs: recs[0].cost == Decimal("1.2378912"),
    ("anthropic", "claude_code"): lambda recs: len(recs) == 3,
    ("openrouter", "activity"): lambda recs: (
        [(r.cost, r.input_tokens, r.output_tokens, r.reasoning_tokens, r.requests) for r in recs]
        == [(Decimal("0.015"), 50, 125, 25, 5)]
    ),
    ("xai", "usage"): lambda recs: (
        [(r.cost, r.model, r.account) for r in recs] == [(Decimal("0.75973725"), "grok-test-v1", "org-test")]
    ),
    ("azure_openai", "cost_management"): lambda recs: (
        [r.cost for r in recs] == [Decimal("2.10333307059661"), Decimal("20.10333307059661")]
    ),
    ("google", "bigquery_billing"): lambda recs: (
        sum(r.cost for r in recs) == Decimal("13.45") and {r.account for r in recs} == {"0123AB-4567CD-89EF01"}
    ),
}
CLOUD_OPTIONS = {
    "azure_openai": {"scope": "subscriptions/55312978-ba1b-415c-9304-c4b9c43c0481"},
    "google": {"table": "billing-proj.billing_export.gcp_billing_export_v1_0123AB_4567CD_89EF01"},
}


def _credential(name: str, admin_key: dict[str, str]) -> str:
    """The dummy credential a cassette is played with (cloud ones are multi-part)."""
    from tests.cloud.helpers import service_account
    from tests.providers.build_cassettes import AZURE_TENANT

    cls = REGISTRY[name]
    if name == "openrouter":
        return "sk-or-v1-cassette-0000000000"
    if name == "xai":
        return "xai-mgmt-cassette-0000000000"
    if name == "azure_openai":
        return cls.pack_credential(
            {"tenant_id": AZURE_TENANT, "client_id": "0b1f7c2e-5d4a-4e3b-9c8d-7a6b5c4d3e2f", "client_secret": "dummy"}
        )
    if name == "google":
        return cls.pack_credential({"service_account_json": service_account("https://oauth2.googleapis.com/token")})
    return admin_key[name]


def test_every_endpoint_has_a_cassette_with_a_provenance_header():
    for name, endpoint in CASES:
        text = (CASSETTES / f"{name}_{endpoint}.yaml").read_text()
        assert text.startswith(f"# Cassette {name}_{endpoint}: built by tests/providers/build_cassettes.py")
        assert "sk-admin-" not in text and "sk-ant-admin" not in text and "client_secret" not in text
        assert not re.search(r"\n\s+authorization:", text.lower().split("interactions")[1])


@pytest.mark.parametrize(("name", "endpoint"), CASES)
def test_endpoint_over_http_from_its_cassette(name, endpoint, cassette_vcr, admin_key, record_mode, tmp_path):
    cls = REGISTRY[name]
    settings = Settings(data_dir=tmp_path, http_max_backoff_seconds=0.01)
    end = floor(datetime.now(UTC), DAY)
    with cassette_vcr.use_cassette(f"{name}_{endpoint}.yaml") as cassette:
        api = cls.connect(settings, _credential(name, admin_key), options=CLOUD_OPTIONS.get(name))
        ep = api.endpoint(endpoint)
        window = Window(end - DAY, end) if endpoint == "claude_code" else Window(end - timedelta(days=1), end)
        records = [r for page in api.pages(ep, window) for r in ep.parse(page.payload, CTX)]
        api.close()
        assert cassette.play_count >= 1 or record_mode != "none"
    # Azure's documented example groups by resource group, not meter: its rows are AI Services rows.
    assert all(r.provider in (name, "azure_ai") and r.kind == endpoint for r in records)
    header = (CASSETTES / f"{name}_{endpoint}.yaml").read_text().startswith("# Cassette")
    if record_mode == "none" and header:  # built from the documented example: its exact values
        assert records
        check = DOCUMENTED.get((name, endpoint))
        assert check is None or check(records), [r.describe() for r in records]
