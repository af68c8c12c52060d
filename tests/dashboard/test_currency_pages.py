"""Money in the reader's currency (``LLM_USAGE_DISPLAY_CURRENCY``) on every page but Budgets.

A rates file gives USD->EUR 0.5 from 2026-11-10 and EUR->USD 1.25 from 2026-11-19 (so USD->EUR
0.8, inverted, from the 19th). Worked from the seed (conftest): this month's spend in EUR is
100.00 x 0.5 (12th) + 4.80 x 0.5 (13th) + 20.00 x 0.8 (19th) + 13.20 x 0.8 (20th) = 78.96; the
6.25 billed on the 5th has no rate on or before its day and stays in USD, as do October's 7.00
(10th) and 1.00 (20th). Each page names the days without a rate once, in one warning.
"""

from __future__ import annotations

import pytest
import streamlit as st

from collector.core.settings import get_settings
from collector.finance import fx
from dashboard import queries
from tests.dashboard.conftest import app, texts

RATES = "date,base,quote,rate\n2026-11-10,USD,EUR,0.5\n2026-11-19,EUR,USD,1.25\n"


@pytest.fixture
def in_euros(dashboard_db, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DISPLAY_CURRENCY", "eur")
    get_settings.cache_clear()
    fx.import_rates_csv(queries.engine(), RATES, "ecb.csv")
    st.cache_data.clear()
    return dashboard_db


def _rate_warnings(at) -> list[str]:
    return [w.value for w in at.warning if "rate for" in w.value]


def _rates_table(at):
    return next(d.value for d in at.dataframe if "source" in d.value.columns and "rate of" in d.value.columns)


def test_overview_in_euros_day_by_day_with_one_note_for_the_days_without_a_rate(in_euros):
    at = app("viewer")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Month to date"] == "€78.96"
    assert metrics["Today (so far)"] == "€10.56"
    assert "money in EUR" in texts(at)
    assert "$6.25" in texts(at)  # the day without a rate stays in its own currency, never 1:1
    assert _rate_warnings(at) == [
        "No USD->EUR rate for 3 day(s): 2026-10-10, 2026-10-20, 2026-11-05. That money is shown in USD, never "
        "converted at a guessed rate. Add rates with `llm-usage fx import FILE` or on the Budgets page."
    ]
    rates = _rates_table(at)
    by_day = {str(r.day): (r.value, r.source) for r in rates.itertuples()}
    assert by_day["2026-11-12"] == (0.5, "csv:ecb.csv")
    assert by_day["2026-11-20"] == (0.8, "csv:ecb.csv, inverted")
    assert "2026-11-05" not in by_day


def test_explore_and_tokens_convert_and_warn_once(in_euros):
    explore = app("viewer", "app_pages/explore.py")
    assert not explore.exception, explore.exception
    assert {m.label: m.value for m in explore.metric}["Spend"] == "€78.96"
    assert _rate_warnings(explore) == [w for w in _rate_warnings(explore) if "1 day(s): 2026-11-05." in w]
    assert len(_rate_warnings(explore)) == 1
    tokens = app("viewer", "app_pages/tokens.py")
    assert not tokens.exception, tokens.exception
    assert len(_rate_warnings(tokens)) == 1
    per_model = next(d.value for d in tokens.dataframe if "cost per 1M tokens" in d.value.columns)
    assert any(str(v).startswith("€") for v in per_model["cost"])


def test_proxy_spend_in_euros(in_euros):
    at = app("viewer", "app_pages/proxy.py")
    assert not at.exception, at.exception
    assert "€7.99 at the price table" in texts(at)  # 9.99 USD on the 20th at 0.8
    assert not _rate_warnings(at)


def test_without_a_display_currency_nothing_is_converted(dashboard_db):
    fx.import_rates_csv(queries.engine(), RATES, "ecb.csv")
    st.cache_data.clear()
    at = app("viewer")
    assert {m.label: m.value for m in at.metric}["Month to date"] == "$144.25"
    assert not _rate_warnings(at)
    assert "Exchange rates used" not in [e.label for e in at.expander]


def test_reconciliation_adds_euro_columns_day_by_day_and_warns_once(in_euros):
    at = app("viewer", "app_pages/reconciliation.py")
    assert not at.exception, at.exception
    accounts = next(
        d.value
        for d in at.dataframe
        if "billed (EUR)" in d.value.columns and "gap % (days with both)" in d.value.columns
    )
    google = accounts[accounts["provider"] == "google"].iloc[0]
    assert google["billed"] == "$100.00" and google["billed (EUR)"] == "€50.00"  # the bill's own currency stays
    warnings = _rate_warnings(at)
    assert len(warnings) == 1 and "1 day(s): 2026-11-05. Those days are left out of the EUR columns" in warnings[0]
