from datetime import UTC, date, datetime, timedelta

import genai_prices
import pytest

from collector.core.ingest import priced
from collector.core.pricing import PRICE_VERSION, estimate_tokens_cost
from collector.core.schema import UsageRecord


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-flash")],
)
def test_fast_path_equals_library_below_tier_threshold(provider, model):
    kw = dict(input_tokens=150_000, cache_read_tokens=40_000, output_tokens=7_000)
    ours = estimate_tokens_cost(provider, model, date(2026, 1, 1), **kw)
    lib = genai_prices.calc_price(
        genai_prices.Usage(**kw),
        model,
        provider_id=provider,
        genai_request_timestamp=datetime(2026, 1, 1, 12, tzinfo=UTC),
    ).total_price
    assert ours == lib


def test_aggregates_priced_at_base_tier_not_long_context_tier():
    # 2M input tokens summed over an hour must not be charged at the >200k long-context rate.
    cost = estimate_tokens_cost("anthropic", "claude-sonnet-4-5", date(2026, 1, 1), input_tokens=2_000_000)
    assert cost == 6  # $3 / MTok base


def test_unknown_model_is_unpriced_never_zero():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    r = UsageRecord(
        provider="openai",
        source="api",
        kind="completions",
        bucket_start=t0,
        bucket_end=t0 + timedelta(hours=1),
        model="gpt-nonexistent-9",
        input_tokens=10,
    )
    r = priced(r)
    assert (r.basis, r.cost, r.currency) == ("unpriced", None, "")
    r2 = UsageRecord(
        provider="openai",
        source="api",
        kind="completions",
        bucket_start=t0,
        bucket_end=t0 + timedelta(hours=1),
        model="gpt-4o",
        input_tokens=1_000_000,
    )
    r2 = priced(r2)
    assert (r2.basis, r2.cost, r2.currency, r2.price_version) == ("estimated", 2.5, "USD", PRICE_VERSION)
