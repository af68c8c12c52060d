"""OpenAI parsers from the documented examples and the §1.7 gotchas, with no HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from collector.core.ingest import priced
from collector.core.pricing import PRICE_VERSION, estimate_tokens_cost
from providers.base import ProviderError
from providers.openai import ENDPOINTS, parse_costs, parse_usage, parser
from tests.providers.helpers import CTX, load, page

NOV_1 = datetime(2024, 11, 1, tzinfo=UTC)


def test_completions_documented_example_maps_every_token_field():
    [rec] = parser("completions")(load("openai", "completions_documented"), CTX)
    assert (rec.provider, rec.source, rec.kind, rec.account, rec.source_ref) == (
        "openai",
        "api",
        "completions",
        "org-test",
        "conn:1/run:1",
    )
    assert (rec.bucket_start, rec.bucket_end) == (NOV_1, datetime(2024, 11, 2, tzinfo=UTC))
    assert (rec.input_tokens, rec.cache_read_tokens, rec.cache_write_5m_tokens, rec.output_tokens, rec.requests) == (
        1000,
        400,
        100,
        500,
        5,
    )
    assert (rec.project, rec.api_key_id, rec.model, rec.batch) == ("", "", "", False)
    assert rec.basis == "unpriced" and rec.cost is None  # no model grouped: never $0
    extra = json.loads(rec.details)
    assert extra["input_uncached_tokens"] == 500 and extra["output_audio_tokens"] == 50


def test_schema_example_row_is_priced_at_the_bucket_date():
    result = load("openai", "completions_result_schema_example")
    [rec] = parse_usage(
        "completions", page({"start_time": 1730419200, "end_time": 1730422800, "results": [result]}), CTX
    )
    assert (rec.project, rec.user_id, rec.api_key_id, rec.model, rec.service_tier) == (
        "proj_abc",
        "user-abc",
        "key_abc",
        "gpt-4o-mini-2024-07-18",
        "default",
    )
    expected = estimate_tokens_cost(
        "openai",
        rec.model,
        NOV_1.date(),
        input_tokens=5000,
        cache_read_tokens=1800,
        cache_write_5m_tokens=200,
        output_tokens=1000,
    )
    assert rec.basis == "unpriced" and rec.cost is None  # parsers leave money to the ingest path
    rec = priced(rec)
    assert rec.basis == "estimated" and rec.cost == expected and rec.cost > 0
    assert rec.price_version == PRICE_VERSION and rec.currency == "USD"


def test_old_and_new_shapes_unknown_fields_unknown_models_and_empty_buckets():
    recs = parse_usage("completions", load("openai", "completions_mixed_shapes_constructed"), CTX)
    assert len(recs) == 3  # the empty bucket adds nothing
    old, new, future = recs
    assert (old.input_tokens, old.cache_read_tokens, old.cache_write_5m_tokens) == (141201, 0, 0)
    assert (new.cache_read_tokens, new.cache_write_5m_tokens, new.batch) == (1800, 200, True)
    assert "a_field_added_next_year" in new.details
    assert future.basis == "unpriced" and future.cost is None
    assert old.record_key != new.record_key  # batch flag and user keep rows apart


def test_cookbook_bucket_with_unaligned_start_parses():
    [rec] = parse_usage("completions", page(load("openai", "completions_cookbook_bucket")), CTX)
    assert rec.bucket_start == datetime.fromtimestamp(1736616660, UTC) and rec.requests == 470
    assert parse_usage("completions", page(load("openai", "completions_cookbook_empty_bucket")), CTX) == []


@pytest.mark.parametrize(
    ("kind", "quantity", "unit", "requests"),
    [
        ("embeddings", 0, "", 2),
        ("moderations", 0, "", 2),
        ("images", 2, "images", 2),
        ("audio_speeches", 45, "characters", 1),
        ("audio_transcriptions", 20, "seconds", 1),
        ("vector_stores", 1024, "bytes", 0),
        ("code_interpreter_sessions", 1, "sessions", 0),
        ("file_search_calls", 2, "calls", 2),
        ("web_search_calls", 2, "calls", 2),
    ],
)
def test_every_documented_usage_example(kind, quantity, unit, requests):
    [rec] = parser(kind)(load("openai", f"{kind}_documented"), CTX)
    assert rec.kind == kind and rec.quantity == quantity and rec.quantity_unit == unit and rec.requests == requests
    if kind in ("embeddings", "moderations"):
        assert rec.input_tokens == 16
    else:
        assert rec.basis == "unpriced"  # non-token usage is never priced at $0


def test_images_group_bys_go_to_variant():
    r = {"object": "organization.usage.images.result", "images": 3, "num_model_requests": 3, "size": "1024x1024",
         "source": "image.edit", "project_id": "p", "model": "dall-e-3"}  # fmt: skip
    [rec] = parse_usage("images", page({"start_time": 0, "end_time": 3600, "results": [r]}), CTX)
    assert rec.variant == "size=1024x1024;source=image.edit"


def test_costs_documented_example_is_billed_exactly():
    [rec] = parse_costs(load("openai", "costs_documented"), CTX)
    assert rec.cost == Decimal("0.06") and str(rec.cost) == "0.06"
    assert (rec.basis, rec.currency, rec.kind) == ("billed", "USD", "costs")


def test_costs_gotchas_strings_scientific_notation_free_text_and_extras():
    recs = parse_costs(load("openai", "costs_gotchas_constructed"), CTX)
    assert [r.cost for r in recs] == [Decimal("12.50"), Decimal("0.0000129"), Decimal("10.1425634"), Decimal("0.0042")]
    assert recs[0].quantity == 10000 and recs[0].quantity_unit == "tokens"
    assert json.loads(recs[0].details) == {"organization_id": "org-abc"}
    assert "project_name" in recs[1].details
    assert recs[3].quantity == 0 and json.loads(recs[3].details)["unitless_quantity"] == "3.5"
    assert recs[3].line_item == "priority | gpt-5.6-sol, output, long context"
    assert len({r.record_key for r in recs}) == 4


def test_schema_cost_example_with_float_parsed_payload_still_exact():
    result = json.loads(json.dumps(load("openai", "costs_result_schema_example"), default=float))
    [rec] = parse_costs(page({"start_time": 0, "end_time": 86400, "results": [result]}), CTX)
    assert rec.cost == Decimal("0.06") and rec.quantity == 10000


def test_bad_payloads_raise_clear_errors():
    with pytest.raises(ProviderError, match="no 'data' list"):
        parse_usage("completions", {"object": "page"}, CTX)
    bad = {"object": "organization.costs.result", "amount": {"value": "twelve", "currency": "usd"}}
    with pytest.raises(ProviderError, match="not a number"):
        parse_costs(page({"start_time": 0, "end_time": 86400, "results": [bad]}), CTX)


def test_endpoint_table_matches_the_spec():
    names = [e.name for e in ENDPOINTS]
    assert names[-1] == "costs" and len(names) == 11
    costs = ENDPOINTS[-1]
    assert costs.max_buckets == 180 and costs.group_by == ("project_id", "line_item")
    assert all(e.max_buckets == 168 for e in ENDPOINTS[:-1])
