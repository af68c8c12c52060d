"""Number formatting for people, provider colours and figure contents (no Streamlit involved)."""

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd

from collector.core.catalog import PROVIDERS
from dashboard import charts


def test_numbers_for_people():
    assert charts.money(Decimal("1234.5")) == "$1.2k"
    assert charts.money(1_250_000) == "$1.3M"
    assert charts.money(Decimal("950")) == "$950.00"
    assert charts.money(Decimal("3.414")) == "$3.41"
    assert charts.money(Decimal("0.00412")) == "$0.00412"
    assert charts.money(None) == charts.NO_VALUE
    assert charts.money(Decimal("-12.5")) == "-$12.50"
    assert charts.money(Decimal(10), "CHF") == "10.00 CHF"
    assert charts.money_exact(Decimal("12345.675")) == "$12,345.68"
    assert charts.tokens(3_400_000) == "3.4M tokens"
    assert charts.tokens(999) == "999 tokens"
    assert charts.compact(999_999) == "1M"
    assert charts.compact(1_000) == "1k"
    assert charts.percent(0.1234) == "12.3%"
    assert charts.percent(None) == charts.NO_VALUE


def test_one_colour_per_provider_everywhere():
    assert charts.provider_color("openai") == PROVIDERS["openai"].colour
    assert charts.provider_color("somecorp") == charts.provider_color("somecorp")
    m = charts.color_map("provider", ["anthropic", "openai"])
    assert m == {"anthropic": PROVIDERS["anthropic"].colour, "openai": PROVIDERS["openai"].colour}


def test_stacked_chart_has_title_units_and_human_hover():
    day = datetime(2026, 11, 1, tzinfo=UTC)
    df = pd.DataFrame(
        {"period": [day, day], "provider": ["openai", "anthropic"], "cost": [1234.5, 10.0]},
    )
    fig = charts.stacked_over_time(
        df, x="period", y="cost", color="provider", title="Daily spend", y_title="cost (USD)"
    )
    assert fig.layout.title.text == "Daily spend"
    assert fig.layout.yaxis.title.text == "cost (USD)"
    assert fig.layout.xaxis.title.text == "day (UTC)"
    by_name = {t.name: t for t in fig.data}
    assert by_name["openai"].marker.color == PROVIDERS["openai"].colour
    assert list(by_name["openai"].customdata) == ["$1.2k"]
    assert [t.name for t in fig.data] == ["openai", "anthropic"]  # biggest series first


def test_empty_data_gets_a_titled_empty_figure():
    fig = charts.ranked_bar(
        pd.DataFrame(columns=["model", "cost"]), label="model", value="cost", title="Top", x_title="$"
    )
    assert fig.layout.title.text == "Top"
    assert fig.layout.annotations[0].text == "no data in this window"


def test_charts_module_does_not_import_streamlit():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(charts.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("streamlit" in (x or "") for x in names | modules)
