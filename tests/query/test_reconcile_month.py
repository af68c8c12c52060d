"""Reconciliation of the fake admin API's month: every gap named, the residual within 1 % of the bill.

The month (:mod:`tests.fakes.month`) is synced through the real sync engine over HTTP, priced by
the real ingest path, and reconciled by :func:`collector.query.reconcile.reconcile`. Each figure
is compared with :class:`tests.fakes.month.Truth`, which the generator computed from its own
ledger and its own transcription of the documented prices, sharing no code with the product.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine

from collector.query.reconcile import CAUSES, reconcile, summarise
from tests.fakes.month import UNBILLED_DAY
from tests.query.month_db import WINDOW, load_month, month

#: Stored money has 10 decimals (SQLite's scaled integers): sums over ~20k rows agree to far below a cent.
TOLERANCE = Decimal("0.000001")


@pytest.fixture
def synced(engine: Engine, tmp_path) -> Engine:
    load_month(engine, tmp_path)
    return engine


def _close(got: Decimal, want: Decimal) -> bool:
    return abs(got - want) <= TOLERANCE


def test_every_cause_of_the_months_gap_is_named_and_the_residual_is_under_one_percent(synced: Engine) -> None:
    result = reconcile(synced, WINDOW)
    by_provider = {s.provider: s for s in summarise(result, ("provider",))}
    assert set(by_provider) == {"openai", "anthropic"}
    for provider, truth in month().truth.items():
        s = by_provider[provider]
        assert s.currency == "USD"
        assert s.billed == truth.billed  # rounded bill lines, exactly
        assert _close(s.estimated, truth.estimate), (provider, s.estimated, truth.estimate)
        parts = {"standard_tokens": truth.standard_tokens, "tiers": truth.tiers, "line_items": truth.line_items}
        for name, want in parts.items():
            assert _close(s.parts[name], want), (provider, name, s.parts[name], want)
        for name in CAUSES[:-1]:
            assert _close(s.causes[name], getattr(truth, name)), (provider, name, s.causes[name], getattr(truth, name))
        assert sum(s.causes.values()) == s.billed - s.estimated  # the causes add up to the gap, exactly
        assert sum(s.parts.values()) == s.estimated
        assert abs(s.residual) <= s.billed / 100, (provider, s.residual, s.billed)
        # Before attribution the whole gap to the tokens at standard rates was unexplained.
        assert abs(s.gap_before) > 10 * abs(s.residual)


def test_the_months_named_causes_land_on_their_days(synced: Engine) -> None:
    result = reconcile(synced, WINDOW)
    openai_days = {d.day: d for d in result.days if d.provider == "openai"}
    unbilled = openai_days[UNBILLED_DAY]
    assert unbilled.billed is None and unbilled.missing == ("billed",)
    assert unbilled.causes["one_sided"] == -unbilled.estimated
    assert openai_days[UNBILLED_DAY.replace(day=1)].causes["credits"] == Decimal("-50.00")
    assert openai_days[UNBILLED_DAY.replace(day=7)].causes["bill_only"] == Decimal("42.50")
    assert openai_days[UNBILLED_DAY.replace(day=15)].causes["discounts"] == Decimal("-12.34")
    assert openai_days[UNBILLED_DAY.replace(day=30)].causes["tax"] == Decimal("27.18")
    # Claude Code's tokens are in the Messages usage: never in the estimate (design rule 7).
    anthropic = [d for d in result.days if d.provider == "anthropic"]
    assert len(anthropic) == 31 and all(d.causes["billed_elsewhere"] < 0 for d in anthropic)
    # Rounding and OpenAI's free first GiB of vector storage are all that is left, well under 2 %.
    assert not any(d.flagged for d in result.days)
    strict = reconcile(synced, WINDOW, threshold=Decimal("0.00001"))
    assert any(d.flagged for d in strict.days if d.billed is not None)
