"""Tokens: input / cache read / cache write / output per model over time, cache hit rate, cost per 1M."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collector.core.schema import TOKEN_FIELDS
from collector.query.report import Filters
from dashboard import auth, charts, queries, ui

#: Models drawn one by one; the others are folded into "(other)" by the report.
TOP_MODELS = 10


def render() -> None:
    """Draw the page."""
    auth.require("viewer")
    st.title("Tokens")
    left, right = st.columns([2, 3])
    with left:
        window = ui.window_picker("tokens_days", default_days=30)
    if window is None:
        return
    since, until = window
    options = queries.dimension_values(since, until)["provider"]
    providers = right.multiselect("provider", options, key="tokens_provider")
    filters = Filters(since=since, until=until, providers=tuple(providers))
    # The report's top 10 models (by money, then tokens), the rest as one "(other)" series: the
    # same groups `llm-usage report --by model,day --top 10` prints.
    df = queries.report_frame(filters, by=("model",), grain="day", top=TOP_MODELS)
    df = df[df["section"] == "provider"]
    if df.empty:
        ui.no_usage(filters)
        return
    df = df.assign(tokens_total=df["input_tokens"] + df["output_tokens"])
    st.plotly_chart(
        charts.stacked_over_time(
            df,
            x="period",
            y="tokens_total",
            color="model",
            kind="area",
            unit="tokens",
            title="Tokens per day by model (input + output)",
            y_title="tokens",
        ),
        width="stretch",
    )
    st.plotly_chart(
        charts.token_mix(df, x="period", title="Token mix per day: uncached input, cache read, cache write, output"),
        width="stretch",
    )
    daily = df.groupby(["period", "model"], as_index=False)[["input_tokens", "cache_read_tokens"]].sum()
    daily["cache_hit_rate"] = daily["cache_read_tokens"] / daily["input_tokens"].where(daily["input_tokens"] > 0)
    st.plotly_chart(
        charts.line_over_time(
            daily.dropna(subset=["cache_hit_rate"]),
            x="period",
            y="cache_hit_rate",
            color="model",
            title="Cache hit rate per day (cache read ÷ total input)",
            y_title="cache hit rate",
            percent_axis=True,
        ),
        width="stretch",
    )
    st.subheader("Per model over the window")
    cur = (queries.currencies(df["currency"]) or [queries.display_currency() or "USD"])[0]
    st.dataframe(_per_model(df, cur), hide_index=True, width="stretch")
    others = [c for c in queries.currencies(df["currency"]) if c != cur]
    if others:
        st.caption(f"Cost is in {cur}; spend in {', '.join(others)} is left out of it (never added).")
    ui.currency_notes(df.attrs["conversion"])
    st.caption(
        f"The {TOP_MODELS} models with most spend (then tokens) are shown one by one, the rest as (other). "
        "Input is total input (cache reads and writes included); reasoning is part of output. Cost per 1M tokens "
        "divides the money with an amount by input + output tokens of the same rows; unpriced usage has none."
    )


def _per_model(df: pd.DataFrame, cur: str) -> pd.DataFrame:
    # Every token measure of the schema, in its order (cache writes by lifetime: 1 h writes cost more).
    sums = df.groupby("model", as_index=False)[list(TOKEN_FIELDS)].sum()
    priced = df[df["cost"].notna() & (df["currency"] == cur)]
    money = priced.groupby("model")["cost"].sum()
    priced_tokens = priced.groupby("model")[["input_tokens", "output_tokens"]].sum().sum(axis=1)
    sums["cost"] = sums["model"].map(money)
    per_million = sums["model"].map(money / priced_tokens.where(priced_tokens > 0) * 1_000_000)
    sums["cache hit rate"] = [
        charts.percent(r / i if i else None)
        for r, i in zip(sums["cache_read_tokens"], sums["input_tokens"], strict=True)
    ]
    sums["cost per 1M tokens"] = [charts.money(v, cur) if pd.notna(v) else charts.NO_VALUE for v in per_million]
    sums["cost"] = [charts.money(v, cur) if pd.notna(v) else "unpriced" for v in sums["cost"]]
    for col in TOKEN_FIELDS:
        sums[col] = [charts.compact(v) for v in sums[col]]
    return sums.rename(columns=lambda c: c.replace("_tokens", "").replace("_", " "))


render()
