"""Every endpoint through real httpx against vcrpy cassettes of the documented examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collector.core.settings import Settings
from collector.core.windows import DAY, Window, floor
from providers import REGISTRY
from tests.providers.conftest import CASSETTES
from tests.providers.helpers import CTX

CASES = [(name, ep.name) for name, cls in REGISTRY.items() for ep in cls.endpoints]
#: Values from the documented examples (provider-apis.md §1.6, §2.4-§2.6), checked on playback.
DOCUMENTED = {
    ("openai", "completions"): lambda recs: [r.input_tokens for r in recs] == [1000, 5000],
    ("openai", "embeddings"): lambda recs: recs[0].input_tokens == 16,
    ("openai", "costs"): lambda recs: recs[0].cost == Decimal("0.06"),
    ("openai", "images"): lambda recs: recs[0].quantity == 2,
    ("anthropic", "messages"): lambda recs: recs[0].input_tokens == 3200,
    ("anthropic", "cost_report"): lambda recs: recs[0].cost == Decimal("1.2378912"),
    ("anthropic", "claude_code"): lambda recs: len(recs) == 3,
}


def test_every_endpoint_has_a_cassette_with_a_provenance_header():
    for name, endpoint in CASES:
        text = (CASSETTES / f"{name}_{endpoint}.yaml").read_text()
        assert text.startswith(f"# Cassette {name}_{endpoint}: built by tests/providers/build_cassettes.py")
        assert "sk-admin-" not in text and "sk-ant-admin" not in text
        assert "authorization" not in text.lower().split("interactions")[1]


@pytest.mark.parametrize(("name", "endpoint"), CASES)
def test_endpoint_over_http_from_its_cassette(name, endpoint, cassette_vcr, admin_key, record_mode, tmp_path):
    cls = REGISTRY[name]
    settings = Settings(data_dir=tmp_path, http_max_backoff_seconds=0.01)
    end = floor(datetime.now(UTC), DAY)
    with cassette_vcr.use_cassette(f"{name}_{endpoint}.yaml") as cassette:
        api = cls.connect(settings, admin_key[name])
        ep = api.endpoint(endpoint)
        window = Window(end - DAY, end) if endpoint == "claude_code" else Window(end - timedelta(days=1), end)
        records = [r for page in api.pages(ep, window) for r in ep.parse(page.payload, CTX)]
        api.close()
        assert cassette.play_count >= 1 or record_mode != "none"
    assert all(r.provider == name and r.kind == endpoint for r in records)
    header = (CASSETTES / f"{name}_{endpoint}.yaml").read_text().startswith("# Cassette")
    if record_mode == "none" and header:  # built from the documented example: its exact values
        assert records
        check = DOCUMENTED.get((name, endpoint))
        assert check is None or check(records), [r.describe() for r in records]
