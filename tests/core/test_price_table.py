"""The product's price table against the documented prices it cites, and pricing what a row says.

``DOCUMENTED`` below is typed from the cited pages independently of ``prices.json``: every shipped
entry must appear here with the same source and the same numbers, so a price can only change
together with the citation it rests on.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest

from collector.core import pricing
from collector.core.ingest import priced
from collector.core.price_table import SHIPPED, PriceTableError, load, table_for
from collector.core.pricing import (
    PRICE_VERSION,
    STANDARD,
    PriceContext,
    estimate_request,
    estimate_tokens_cost,
    standard_tokens_cost,
    unit_prices,
)
from collector.core.schema import UsageRecord
from collector.core.settings import get_settings

D = Decimal
OPENAI_PRICING = "https://platform.openai.com/docs/pricing"
PRIORITY = "https://openai.com/api-priority-processing/"
ANTHROPIC_BATCH = "https://docs.anthropic.com/en/docs/build-with-claude/batch-processing#pricing"
ANTHROPIC_LONG = "https://docs.anthropic.com/en/docs/about-claude/pricing#long-context-pricing"
TABLE = f"llm-usage {json.loads(SHIPPED.read_text())['version']}"

#: (provider, model, when) -> (source, {field: USD per MTok}) as the cited pages state them.
DOCUMENTED_TOKENS: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[str, dict[str, str]]] = {
    # Anthropic batch: 50% of standard; cache multipliers (0.1x read, 1.25x / 2x writes) stack.
    ("anthropic", "claude-sonnet-4-0", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {"input": "1.50", "output": "7.50", "cache_read": "0.15", "cache_write_5m": "1.875", "cache_write_1h": "3.00"},
    ),
    ("anthropic", "claude-opus-4-1", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {
            "input": "7.50",
            "output": "37.50",
            "cache_read": "0.75",
            "cache_write_5m": "9.375",
            "cache_write_1h": "15.00",
        },
    ),
    ("anthropic", "claude-opus-4-0", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {
            "input": "7.50",
            "output": "37.50",
            "cache_read": "0.75",
            "cache_write_5m": "9.375",
            "cache_write_1h": "15.00",
        },
    ),
    ("anthropic", "claude-3-5-haiku-latest", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {"input": "0.40", "output": "2.00", "cache_read": "0.04", "cache_write_5m": "0.50", "cache_write_1h": "0.80"},
    ),
    ("anthropic", "claude-sonnet-4-5", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {"input": "1.50", "output": "7.50", "cache_read": "0.15", "cache_write_5m": "1.875", "cache_write_1h": "3.00"},
    ),
    ("anthropic", "claude-haiku-4-5", (("processing", "batch"),)): (
        ANTHROPIC_BATCH,
        {"input": "0.50", "output": "2.50", "cache_read": "0.05", "cache_write_5m": "0.625", "cache_write_1h": "1.00"},
    ),
    # Sonnet 4 / 4.5 over 200k input tokens: $6 / $22.50, cache multipliers on $6.
    ("anthropic", "claude-sonnet-4-0", (("context_window", "200k-1M"),)): (
        ANTHROPIC_LONG,
        {"input": "6.00", "output": "22.50", "cache_read": "0.60", "cache_write_5m": "7.50", "cache_write_1h": "12.00"},
    ),
    ("anthropic", "claude-sonnet-4-0", (("context_window", "200k-1M"), ("processing", "batch"))): (
        ANTHROPIC_LONG,
        {"input": "3.00", "output": "11.25", "cache_read": "0.30", "cache_write_5m": "3.75", "cache_write_1h": "6.00"},
    ),
    ("anthropic", "claude-sonnet-4-5", (("context_window", "200k-1M"), ("processing", "batch"))): (
        ANTHROPIC_LONG,
        {"input": "3.00", "output": "11.25", "cache_read": "0.30", "cache_write_5m": "3.75", "cache_write_1h": "6.00"},
    ),
    ("openai", "moderation", ()): (f"{OPENAI_PRICING}#moderation", {"input": "0", "output": "0"}),
    # Fine-tuned inference by base model (input / cached input / output).
    ("openai", "gpt-4.1", (("fine_tuned", "yes"),)): (
        f"{OPENAI_PRICING}#fine-tuning",
        {"input": "3.00", "cache_read": "0.75", "output": "12.00"},
    ),
    ("openai", "gpt-4.1-mini", (("fine_tuned", "yes"),)): (
        f"{OPENAI_PRICING}#fine-tuning",
        {"input": "0.80", "cache_read": "0.20", "output": "3.20"},
    ),
    ("openai", "gpt-4.1-nano", (("fine_tuned", "yes"),)): (
        f"{OPENAI_PRICING}#fine-tuning",
        {"input": "0.20", "cache_read": "0.05", "output": "0.80"},
    ),
    ("openai", "gpt-4o", (("fine_tuned", "yes"),)): (
        f"{OPENAI_PRICING}#fine-tuning",
        {"input": "3.75", "cache_read": "1.875", "output": "15.00"},
    ),
    ("openai", "gpt-4o-mini", (("fine_tuned", "yes"),)): (
        f"{OPENAI_PRICING}#fine-tuning",
        {"input": "0.30", "cache_read": "0.15", "output": "1.20"},
    ),
    # Priority processing (the page's table: input / cached input / output).
    **{
        ("openai", m, (("service_tier", "priority"),)): (PRIORITY, {"input": i, "cache_read": c, "output": o})
        for m, i, c, o in (
            ("gpt-4.1", "3.50", "0.875", "14.00"),
            ("gpt-4.1-mini", "0.70", "0.175", "2.80"),
            ("gpt-4.1-nano", "0.20", "0.05", "0.80"),
            ("gpt-4o", "4.25", "2.125", "17.00"),
            ("gpt-4o-mini", "0.25", "0.125", "1.00"),
            ("o3", "3.50", "0.875", "14.00"),
            ("o4-mini", "2.00", "0.50", "8.00"),
        )
    },
    ("openai", "o3", (("service_tier", "flex"),)): (
        f"{OPENAI_PRICING}#flex-processing",
        {"input": "1.00", "cache_read": "0.25", "output": "4.00"},
    ),
    ("openai", "o4-mini", (("service_tier", "flex"),)): (
        f"{OPENAI_PRICING}#flex-processing",
        {"input": "0.55", "cache_read": "0.138", "output": "2.20"},
    ),
    **{
        ("openai", m, (("processing", "batch"),)): (f"{OPENAI_PRICING}#batch", {"input": i, "output": o})
        for m, i, o in (
            ("gpt-4.1", "1.00", "4.00"),
            ("gpt-4.1-mini", "0.20", "0.80"),
            ("gpt-4.1-nano", "0.05", "0.20"),
            ("gpt-4o", "1.25", "5.00"),
            ("gpt-4o-mini", "0.075", "0.30"),
            ("o3", "1.00", "4.00"),
            ("o4-mini", "0.55", "2.20"),
            ("o3-mini", "0.55", "2.20"),
        )
    },
}

#: (provider, kind, model, variant, unit) -> (source, USD, per units[, per day]).
DOCUMENTED_LINE_ITEMS: dict[tuple[str, str, str, tuple[tuple[str, str], ...], str], tuple[str, str, str, bool]] = {
    ("openai", "images", "dall-e-3", (("size", "1024x1024"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.040",
        "1",
        False,
    ),
    ("openai", "images", "dall-e-3", (("size", "1024x1792"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.080",
        "1",
        False,
    ),
    ("openai", "images", "dall-e-3", (("size", "1792x1024"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.080",
        "1",
        False,
    ),
    ("openai", "images", "dall-e-2", (("size", "256x256"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.016",
        "1",
        False,
    ),
    ("openai", "images", "dall-e-2", (("size", "512x512"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.018",
        "1",
        False,
    ),
    ("openai", "images", "dall-e-2", (("size", "1024x1024"),), "images"): (
        f"{OPENAI_PRICING}#image-generation",
        "0.020",
        "1",
        False,
    ),
    ("openai", "audio_speeches", "tts-1", (), "characters"): (
        f"{OPENAI_PRICING}#transcription-and-speech-generation",
        "15.00",
        "1000000",
        False,
    ),
    ("openai", "audio_speeches", "tts-1-hd", (), "characters"): (
        f"{OPENAI_PRICING}#transcription-and-speech-generation",
        "30.00",
        "1000000",
        False,
    ),
    ("openai", "audio_transcriptions", "whisper-1", (), "seconds"): (
        f"{OPENAI_PRICING}#transcription-and-speech-generation",
        "0.006",
        "60",
        False,
    ),
    ("openai", "web_search_calls", "", (), "calls"): (f"{OPENAI_PRICING}#built-in-tools", "10.00", "1000", False),
    ("openai", "file_search_calls", "", (), "calls"): (f"{OPENAI_PRICING}#built-in-tools", "2.50", "1000", False),
    ("openai", "code_interpreter_sessions", "", (), "sessions"): (
        f"{OPENAI_PRICING}#built-in-tools",
        "0.03",
        "1",
        False,
    ),
    ("openai", "vector_stores", "", (), "bytes"): (f"{OPENAI_PRICING}#built-in-tools", "0.10", "1073741824", True),
    ("anthropic", "messages", "", (), "calls"): (
        "https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool#usage-and-pricing",
        "10.00",
        "1000",
        False,
    ),
}

T0 = datetime(2026, 10, 5, tzinfo=UTC)  # before genai-prices' tier variants start (2026-10-12)
T1 = datetime(2026, 10, 20, tzinfo=UTC)  # after they do


@pytest.fixture(autouse=True)
def _fresh_prices():
    pricing.clear_caches()
    yield
    pricing.clear_caches()


def _rec(**kw) -> UsageRecord:
    start = kw.pop("start", T0)
    base = {
        "provider": "openai",
        "source": "api",
        "kind": "completions",
        "bucket_start": start,
        "bucket_end": start + kw.pop("width", timedelta(hours=1)),
    }
    return UsageRecord(**{**base, **kw})


def test_every_shipped_token_entry_is_the_documented_price_it_cites():
    shipped = table_for("")
    seen = set()
    for e in shipped.tokens:
        key = (e.provider, e.model, e.when)
        assert key in DOCUMENTED_TOKENS, f"no documented price for {key}"
        source, prices = DOCUMENTED_TOKENS[key]
        assert e.source == source
        assert {f: getattr(e.rates, f) for f in prices} == {f: D(v) for f, v in prices.items()}
        unset = {"input", "output", "cache_read", "cache_write_5m", "cache_write_1h"} - set(prices)
        assert all(getattr(e.rates, f) is None for f in unset)
        seen.add(key)
    assert seen == set(DOCUMENTED_TOKENS)


def test_every_shipped_line_item_is_the_documented_price_it_cites():
    shipped = table_for("")
    seen = set()
    for e in shipped.line_items:
        key = (e.provider, e.kind, e.model, e.variant, e.unit)
        source, price, per, per_day = DOCUMENTED_LINE_ITEMS[key]
        assert (e.source, e.price, e.per, e.per_day) == (source, D(price), D(per), per_day)
        seen.add(key)
    assert seen == set(DOCUMENTED_LINE_ITEMS)
    assert {(t.provider, tuple(sorted(t.service_tiers)), t.billed_elsewhere) for t in shipped.tiers} == {
        ("anthropic", ("priority", "priority_on_demand"), True)
    }


@pytest.mark.parametrize(
    ("provider", "model", "context"),
    [
        ("openai", "gpt-4o-mini", PriceContext(service_tier="priority")),
        ("openai", "gpt-4.1", PriceContext(service_tier="priority")),
        ("openai", "gpt-4o", PriceContext(batch=True)),
        ("openai", "o4-mini", PriceContext(service_tier="flex")),
        ("openai", "o3", PriceContext(service_tier="flex")),
        ("anthropic", "claude-sonnet-4-5", PriceContext(batch=True)),
        ("anthropic", "claude-haiku-4-5", PriceContext(batch=True)),
    ],
)
def test_table_tiers_equal_genai_prices_variants_once_those_start(provider, model, context):
    # Where genai-prices has the same tier (from 2026-10-12/14), the table's earlier entry agrees with it.
    # Below every long-context threshold, so the library's per-request tiers do not apply.
    kw = {"input_tokens": 150_000, "cache_read_tokens": 50_000, "output_tokens": 20_000}
    before = estimate_tokens_cost(provider, model, T0.date(), context=context, **kw)
    after_price = genai_prices.calc_price(
        genai_prices.Usage(**kw),
        model,
        provider_id=provider,
        genai_request_timestamp=T1,
        price_context=context.genai(),
    ).total_price
    after = estimate_tokens_cost(provider, model, T1.date(), context=context, **kw)
    assert before == after == after_price
    assert TABLE in unit_prices(provider, model, T0.date(), context).version
    assert unit_prices(provider, model, T1.date(), context).version.startswith(PRICE_VERSION)


def test_tier_batch_and_cache_durations_are_priced_as_the_row_says():
    tokens = {"input_tokens": 1_000_000, "cache_read_tokens": 200_000, "output_tokens": 100_000}
    std = priced(_rec(model="gpt-4o-mini-2024-07-18", service_tier="default", **tokens))
    prio = priced(_rec(model="gpt-4o-mini-2024-07-18", service_tier="priority", **tokens))
    batch = priced(_rec(model="gpt-4o-mini-2024-07-18", service_tier="default", batch=True, **tokens))
    # 800k uncached x rate + 200k cached x cached rate + 100k out x out rate
    assert std.cost == D("0.8") * D("0.15") + D("0.2") * D("0.075") + D("0.1") * D("0.6")
    assert prio.cost == D("0.8") * D("0.25") + D("0.2") * D("0.125") + D("0.1") * D("1.00")
    assert batch.cost == D("0.8") * D("0.075") + D("0.2") * D("0.075") + D("0.1") * D("0.30")
    assert (std.price_version, prio.price_version) == (PRICE_VERSION, TABLE)
    claude = {
        "provider": "anthropic",
        "kind": "messages",
        "model": "claude-sonnet-4-20250514",
        "input_tokens": 1_000_000,
        "cache_write_5m_tokens": 100_000,
        "cache_write_1h_tokens": 100_000,
        "output_tokens": 10_000,
    }
    short = priced(_rec(service_tier="standard", variant="context_window=0-200k", **claude))
    long = priced(_rec(service_tier="standard", variant="context_window=200k-1M", **claude))
    batch_long = priced(_rec(service_tier="batch", batch=True, variant="context_window=200k-1M", **claude))
    assert short.cost == D("0.8") * 3 + D("0.1") * D("3.75") + D("0.1") * 6 + D("0.01") * 15
    assert long.cost == D("0.8") * 6 + D("0.1") * D("7.5") + D("0.1") * 12 + D("0.01") * D("22.5")
    assert batch_long.cost == long.cost / 2


def test_anthropic_priority_is_standard_rate_from_the_table_and_unknown_tiers_stay_unpriced():
    tokens = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    prio = priced(
        _rec(provider="anthropic", kind="messages", model="claude-opus-4-1-20250805", service_tier="priority", **tokens)
    )
    assert prio.cost == 15 + 75
    assert prio.price_version == f"{PRICE_VERSION} + {TABLE}"  # the table's tier rule decided the rate
    for tier, model in (("scale", "gpt-4o-2024-08-06"), ("flex", "gpt-4o-mini-2024-07-18")):
        r = priced(_rec(model=model, service_tier=tier, **tokens))
        assert (r.basis, r.cost) == ("unpriced", None)  # never guessed at another tier's rate


def test_fine_tuned_models_price_as_their_base_models_fine_tuned_rate():
    tokens = {"input_tokens": 1_000_000, "cache_read_tokens": 500_000, "output_tokens": 1_000_000}
    ft41 = priced(_rec(model="ft:gpt-4.1-2025-04-14:acme:support:AbC123", **tokens))
    assert ft41.cost == D("0.5") * 3 + D("0.5") * D("0.75") + 12
    assert ft41.price_version == TABLE
    ft4o = priced(_rec(model="ft:gpt-4o-mini-2024-07-18:acme::XyZ", **tokens))
    assert ft4o.cost == D("0.5") * D("0.30") + D("0.5") * D("0.15") + D("1.20")
    assert ft4o.price_version == f"{PRICE_VERSION} + {TABLE}"  # genai-prices' ft rates, the table's cached rate
    unknown_base = priced(_rec(model="ft:davinci-002:acme::q", **tokens))
    assert (unknown_base.basis, unknown_base.cost) == ("unpriced", None)
    custom = priced(_rec(model="acme-internal-llm", **tokens))
    assert (custom.basis, custom.cost) == ("unpriced", None)


@pytest.mark.parametrize(
    ("kind", "model", "variant", "quantity", "unit", "cost", "version"),
    [
        ("images", "dall-e-3", "size=1024x1024;source=image.generation", 10, "images", "0.40", TABLE),
        ("images", "dall-e-3", "size=1024x1792;source=image.generation", 10, "images", "0.80", TABLE),
        ("images", "dall-e-2", "size=256x256;source=image.edit", 10, "images", "0.16", TABLE),
        ("audio_speeches", "tts-1", "", 100_000, "characters", "1.5", PRICE_VERSION),
        ("audio_speeches", "tts-1-hd", "", 100_000, "characters", "3", PRICE_VERSION),
        ("audio_transcriptions", "whisper-1", "", 600, "seconds", "0.06", PRICE_VERSION),
        ("web_search_calls", "gpt-4.1-2025-04-14", "context_level=medium", 50, "calls", "0.5", PRICE_VERSION),
        ("web_search_calls", "some-new-search-model", "", 50, "calls", "0.5", TABLE),
        ("file_search_calls", "", "", 400, "calls", "1", TABLE),
        ("code_interpreter_sessions", "", "", 7, "sessions", "0.21", TABLE),
    ],
)
def test_line_items_priced_per_unit(kind, model, variant, quantity, unit, cost, version):
    r = priced(_rec(kind=kind, model=model, variant=variant, quantity=D(quantity), quantity_unit=unit))
    assert (r.basis, r.currency, r.price_version) == ("estimated", "USD", version)
    assert r.cost == D(cost)


def test_vector_storage_is_a_level_priced_per_gib_day_over_the_bucket():
    gib = 2**30
    hour = priced(_rec(kind="vector_stores", project="p", quantity=D(3 * gib), quantity_unit="bytes"))
    day = priced(
        _rec(kind="vector_stores", project="p", quantity=D(3 * gib), quantity_unit="bytes", width=timedelta(days=1))
    )
    assert day.cost == D("0.30")
    assert abs(hour.cost - D("0.30") / 24) < D("1e-20")
    images_unknown = priced(
        _rec(kind="images", model="gpt-image-1", variant="size=1024x1024", quantity=D(2), quantity_unit="images")
    )
    assert (images_unknown.basis, images_unknown.cost) == ("unpriced", None)  # quality unknown: no per-image price
    sessions = priced(_rec(provider="anthropic", kind="claude_code", quantity=D(3), quantity_unit="sessions"))
    assert sessions.basis == "unpriced"  # a Claude Code session count is not a charge


def test_standard_tokens_cost_is_genai_prices_alone():
    day = T0.date()
    assert standard_tokens_cost("openai", "gpt-4o-mini", day, input_tokens=1_000_000) == D("0.15")
    assert standard_tokens_cost("openai", "ft:gpt-4.1-2025-04-14:a::b", day, input_tokens=1_000_000) is None
    assert standard_tokens_cost("openai", "omni-moderation-latest", day, input_tokens=1_000_000) is None
    assert unit_prices("openai", "gpt-4o-mini", day, PriceContext(batch=True), with_table=False) is None
    assert unit_prices("openai", "gpt-4o-mini", day, STANDARD, with_table=False).version == PRICE_VERSION


def test_proxy_requests_are_priced_at_their_service_tier():
    at = T1 + timedelta(hours=3)
    std = estimate_request("openai", "gpt-4o-mini", at, input_tokens=1_000_000, output_tokens=1_000_000)
    prio = estimate_request(
        "openai", "gpt-4o-mini", at, input_tokens=1_000_000, output_tokens=1_000_000, service_tier="priority"
    )
    early = estimate_request(
        "openai", "gpt-4o-mini", T0, input_tokens=1_000_000, output_tokens=1_000_000, service_tier="priority"
    )
    assert (std, prio, early) == (D("0.75"), D("1.25"), D("1.25"))
    # A tiered model in a tier: genai-prices' calculator applies the long-context rate per request.
    long_request = estimate_request("openai", "gpt-5.4", at, input_tokens=300_000, service_tier="priority")
    assert long_request is not None and long_request > 0


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    return path


def test_an_admin_file_overrides_the_shipped_table_and_says_so(tmp_path, monkeypatch):
    path = _write(
        tmp_path,
        {
            "tokens": [
                {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "when": {"service_tier": "priority"},
                    "per_mtok": {"input": "0.20", "output": "0.80"},
                    "source": "https://example.com/our-contract",
                    "checked": "2026-11-01",
                }
            ],
            "line_items": [
                {
                    "provider": "openai",
                    "kind": "file_search_calls",
                    "unit": "calls",
                    "price": "2.00",
                    "per": "1000",
                    "source": "https://example.com/our-contract",
                    "checked": "2026-11-01",
                }
            ],
        },
    )
    monkeypatch.setenv("LLM_USAGE_PRICE_TABLE_FILE", str(path))
    get_settings.cache_clear()
    pricing.clear_caches()
    try:
        r = priced(_rec(model="gpt-4o-mini-2024-07-18", service_tier="priority", input_tokens=1_000_000))
        calls = priced(_rec(kind="file_search_calls", quantity=D(1000), quantity_unit="calls"))
        label = load(path, admin=True).version
        assert label.startswith("admin ") and len(label) == len("admin ") + 8
        # The admin rate, and genai-prices' standard cached rate for the price the entry leaves out.
        assert (r.cost, r.price_version) == (D("0.20"), f"{PRICE_VERSION} + {label}")
        assert (calls.cost, calls.price_version) == (D("2.00"), label)
        # Everything the admin file does not name still comes from genai-prices and the shipped table.
        other = priced(_rec(model="gpt-4.1-2025-04-14", service_tier="priority", input_tokens=1_000_000))
        assert (other.cost, other.price_version) == (D("3.50"), TABLE)
    finally:
        monkeypatch.delenv("LLM_USAGE_PRICE_TABLE_FILE")
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price": "-1"}, "line_items.0.price"),
        ({"price": "NaN"}, "line_items.0.price"),
        ({"source": "http://insecure.example.com/<script>"}, "line_items.0.source"),
        ({"colour": "red"}, "line_items.0.colour"),
        ({"per": "0"}, "line_items.0.per"),
    ],
)
def test_a_bad_admin_file_is_refused_naming_the_entry_without_echoing_it(tmp_path, change, message):
    entry = {
        "provider": "openai",
        "kind": "file_search_calls",
        "unit": "calls",
        "price": "2.00",
        "source": "https://example.com/x",
        "checked": "2026-11-01",
        **change,
    }
    path = _write(tmp_path, {"line_items": [entry]})
    with pytest.raises(PriceTableError) as err:
        load(path, admin=True)
    assert str(err.value).startswith(f"prices.json: {message}")
    assert "<script>" not in str(err.value)


def test_unreadable_or_oversized_files_are_refused(tmp_path, monkeypatch):
    with pytest.raises(PriceTableError, match="cannot read"):
        load(tmp_path / "missing.json", admin=True)
    path = tmp_path / "prices.json"
    path.write_bytes(b"{not json")
    with pytest.raises(PriceTableError, match="not JSON"):
        load(path, admin=True)
    monkeypatch.setattr("collector.core.price_table.MAX_FILE_BYTES", 4)
    with pytest.raises(PriceTableError, match="larger than"):
        load(path, admin=True)


def test_estimate_keeps_genai_prices_results_for_plain_rows():
    # The fast path still equals the library for standard rows (no tier in the row).
    kw = {"input_tokens": 150_000, "cache_read_tokens": 40_000, "output_tokens": 7_000}
    r = priced(_rec(model="gpt-4o-2024-08-06", **kw))
    lib = genai_prices.calc_price(
        genai_prices.Usage(**kw), "gpt-4o-2024-08-06", provider_id="openai", genai_request_timestamp=T0
    ).total_price
    assert r.cost == lib and r.price_version == PRICE_VERSION
    assert date(2026, 10, 5) == T0.date()
