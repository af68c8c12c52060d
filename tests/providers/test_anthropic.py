"""Anthropic parsers from the documented examples, with no HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from collector.core.ingest import priced
from collector.core.pricing import estimate_tokens_cost
from providers.anthropic import (
    ENDPOINTS,
    MESSAGES_GROUP_BY,
    AnthropicProvider,
    parse_claude_code,
    parse_cost_report,
    parse_messages,
)
from tests.providers.helpers import CTX, load


def test_messages_documented_example_sums_input_parts():
    rec, searches = parse_messages(load("anthropic", "messages_documented"), CTX)
    assert rec.input_tokens == 1500 + 200 + 500 + 1000
    assert (rec.cache_read_tokens, rec.cache_write_5m_tokens, rec.cache_write_1h_tokens, rec.output_tokens) == (
        200,
        500,
        1000,
        500,
    )
    assert (rec.project, rec.api_key_id, rec.user_id, rec.model) == (
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "apikey_01Rj2N8SVvo6BePZj99NhmiT",
        "user_01WCz1FkmYMm4gnmykNKUu3Q",
        "claude-opus-5",
    )
    assert rec.variant == "context_window=0-200k;inference_geo=global;service_account_id=svac_01Hk3R9TWxq7CfQak00OiVw4"
    assert rec.bucket_start == datetime(2025, 8, 1, tzinfo=UTC)
    assert json.loads(rec.details) == {"server_tool_use": {"web_search_requests": 10}}
    expected = estimate_tokens_cost(
        "anthropic",
        "claude-opus-5",
        rec.bucket_start.date(),
        input_tokens=3200,
        cache_read_tokens=200,
        cache_write_5m_tokens=500,
        cache_write_1h_tokens=1000,
        output_tokens=500,
    )
    assert rec.basis == "unpriced" and rec.cost is None  # parsers leave money to the ingest path
    rec = priced(rec)
    assert rec.cost == expected and rec.basis == ("unpriced" if expected is None else "estimated")
    # The 10 server-side web searches are a row of their own, priced per search ($10 / 1,000).
    assert (searches.line_item, searches.quantity, searches.quantity_unit) == ("web_search", 10, "calls")
    assert searches.input_tokens == searches.output_tokens == 0 and searches.record_key != rec.record_key
    assert (searches.model, searches.project, searches.variant) == (rec.model, rec.project, rec.variant)
    assert priced(searches).cost == Decimal("0.1")


def test_cost_report_amount_is_cents_as_a_string():
    [rec] = parse_cost_report(load("anthropic", "cost_report_documented"), CTX)
    assert rec.cost == Decimal("1.2378912")  # "123.78912" cents, not $123.79
    assert (rec.basis, rec.currency, rec.line_item, rec.model) == (
        "billed",
        "USD",
        "Claude Opus 5 Usage - Input Tokens",
        "claude-opus-5",
    )
    assert "token_type=uncached_input_tokens" in rec.variant


def test_claude_code_rows_per_model_plus_sessions():
    recs = parse_claude_code(load("anthropic", "claude_code_documented"), CTX)
    assert len(recs) == 3
    opus, sonnet, sessions = recs
    assert sonnet.model == "claude-sonnet-5" and sonnet.output_tokens == 5680
    assert opus.user_id == "user@emaildomain.com" and opus.model == "claude-opus-5"
    assert opus.input_tokens == 45230 + 8790 + 2340 and opus.output_tokens == 12450
    assert json.loads(opus.details)["anthropic_estimated_cost_cents"] == 186
    assert sessions.model == "" and sessions.quantity == 15 and sessions.quantity_unit == "sessions"
    assert len({r.record_key for r in recs}) == 3
    assert opus.bucket_end - opus.bucket_start == ENDPOINTS[2].width


def test_headers_and_group_by_limit():
    headers = AnthropicProvider.auth_headers("sk-ant-admin01-x")
    assert headers["anthropic-version"] == "2023-06-01" and headers["x-api-key"] == "sk-ant-admin01-x"
    assert headers["User-Agent"].startswith("llm-usage-collector/")
    assert len(MESSAGES_GROUP_BY) <= 5  # the API refuses more (provider-apis.md §2.8.7)
