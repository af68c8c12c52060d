"""The gap's named causes line by line: bill-line classes, the models bill lines name, edge cases."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from collector.core.price_table import table_for
from collector.query.attribution import CAUSES, PARTS, Facts, attribute, classify, line_model

D = Decimal
TABLE = table_for("")


@pytest.mark.parametrize(
    ("provider", "text", "cost", "cls"),
    [
        ("openai", "gpt-4.1-2025-04-14, output", "3.10", "usage"),
        ("openai", "Sales tax", "2.00", "tax"),
        ("aws_bedrock", "USE1-Claude4.6Sonnet-input-tokens | Tax", "0.40", "tax"),  # FOCUS ChargeCategory
        ("google", "F4E2-1A2B | Gemini 2.5 Pro input | PROMOTION", "-1.00", "credits"),
        ("openai", "Promotional credit applied", "-50", "credits"),
        ("azure_openai", "Enterprise agreement discount", "-3", "discounts"),
        ("openai", "Fine-tuning training, gpt-4.1-2025-04-14", "42.50", "bill_only"),
        ("anthropic", "Code Execution Usage", "1.25", "bill_only"),
        ("anthropic", "Claude Sonnet 4 Usage - Input Tokens", "5", "usage"),
        ("openai", "Refund for outage", "-2", "credits"),
        ("openai", "some adjustment we do not know", "-0.5", "credits"),  # negative and nothing else: a credit
        ("openai", "Vector storage", "0.30", "usage"),
    ],
)
def test_bill_lines_are_classified_by_their_text(provider, text, cost, cls):
    assert classify(TABLE, provider, text, D(cost)) == cls


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        ("gpt-4o-2024-08-06, input", "", "gpt-4o"),
        ("priority | gpt-4.1-2025-04-14, output, long context", "", "gpt-4.1"),
        ("ft:gpt-4.1-2025-04-14:acme:support:X9y8Z7, cached input", "", "ft:gpt-4.1-2025-04-14:acme:support:X9y8Z7"),
        ("whisper-1, audio", "", "whisper-1"),
        ("Vector storage", "", ""),
        ("Image models", "", ""),
        ("web search tool calls", "", ""),
        ("Claude Sonnet 4 Usage - Input Tokens", "claude-sonnet-4-0", "claude-sonnet-4-0"),  # the model column
    ],
)
def test_the_model_a_bill_line_names(text, model, expected):
    assert line_model("openai", text, model) == expected


def _facts(**kw) -> Facts:
    facts = Facts()
    for name, value in kw.items():
        setattr(facts, name, value)
    return facts


def test_a_bill_with_no_usage_is_one_sided_after_its_credits_and_tax():
    facts = _facts(bill_lines=[("usage", "gpt-4o", D(10)), ("credits", "", D(-4)), ("tax", "", D(1))])
    causes = attribute(D(7), None, facts)
    assert (causes["one_sided"], causes["credits"], causes["tax"], causes["residual"]) == (D(10), D(-4), D(1), 0)
    assert sum(causes.values()) == 7


def test_usage_with_no_bill_is_one_sided():
    causes = attribute(None, D("12.5"), Facts())
    assert causes["one_sided"] == D("-12.5") and sum(causes.values()) == D("-12.5")


def test_unpriced_models_bill_only_models_and_billed_elsewhere():
    facts = _facts(
        bill_lines=[
            ("usage", "gpt-4o", D(10)),
            ("usage", "secret-model", D(3)),
            ("usage", "never-used-model", D(2)),
            ("usage", "half-priced", D(5)),
            ("usage", "", D(1)),
        ],
        priced_models={"gpt-4o", "half-priced", "claude-opus-4-1"},
        unpriced_models={"secret-model", "half-priced"},
        elsewhere=D(4),
    )
    causes = attribute(D(21), D(18), facts)
    assert causes["unpriced_models"] == 3  # only models with no priced usage at all
    assert causes["bill_only"] == 2  # the bill names a model with no usage
    assert causes["billed_elsewhere"] == -4
    assert causes["residual"] == D(21) - D(18) - 3 - 2 + 4
    assert sum(causes.values()) == D(21) - D(18)


def test_the_estimate_splits_into_standard_tokens_tiers_and_line_items():
    facts = Facts()
    day = date(2026, 10, 20)
    tokens = {"input_tokens": 1_000_000, "cache_read_tokens": 0, "cache_write_5m_tokens": 0}
    tokens |= {"cache_write_1h_tokens": 0, "output_tokens": 0}
    facts.add_estimate("openai", "gpt-4o-mini", day, D("0.25"), tokens, elsewhere=False)  # priority: 0.25 vs 0.15
    none = dict.fromkeys(tokens, 0)
    facts.add_estimate("openai", "dall-e-3", day, D("0.40"), none, elsewhere=False)  # 10 images
    facts.add_estimate("openai", "ft:gpt-4.1-2025-04-14:a::b", day, D("3"), tokens, elsewhere=False)  # table only
    assert facts.parts == {"standard_tokens": D("0.15"), "tiers": D("0.10") + 3, "line_items": D("0.40")}
    assert set(facts.parts) == set(PARTS) and CAUSES[-1] == "residual"
