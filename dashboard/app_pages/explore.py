"""Explore: any filter, any grouping, daily or hourly, as a chart and a table with CSV download.

Every control is bound to the URL (``bind="query-params"``), so a view is a link to share.
"""

from __future__ import annotations

import functools

import streamlit as st

from collector.core import csvout
from collector.query.report import DIMENSIONS, SOURCES, Filters
from dashboard import auth, charts, queries, ui

#: Hourly reads ``usage_hourly`` (by provider, account, model, source or kind; the raw rows for
#: the other dimensions): a week of hours is as much as a chart shows legibly.
MAX_HOURLY_DAYS = queries.HOURLY_DAYS
METRICS = {
    "cost": ("cost", "money", "cost"),
    "tokens": ("tokens_total", "tokens", "tokens (input + output)"),
    "input tokens": ("input_tokens", "tokens", "input tokens"),
    "output tokens": ("output_tokens", "tokens", "output tokens"),
    "requests": ("requests", "tokens", "requests"),
}


def render() -> None:
    """Draw the page."""
    auth.require("viewer")
    st.title("Explore")
    bar = st.columns([2, 1, 1, 1, 1])
    with bar[0]:
        grain = st.segmented_control(
            "Grain", ["day", "hour"], default="day", key="grain", bind="query-params", required=True
        )
    window = None
    with bar[0]:
        window = ui.window_picker(
            "days",
            default_days=2 if grain == "hour" else 30,
            max_days=MAX_HOURLY_DAYS if grain == "hour" else None,
            bind=True,
        )
    if window is None:
        return
    since, until = window
    by = bar[1].selectbox("Group by", DIMENSIONS, index=0, key="by", bind="query-params")
    metric = bar[2].selectbox("Measure", list(METRICS), key="measure", bind="query-params")
    kind = bar[3].selectbox("Chart", ["bar", "area"], key="chart", bind="query-params")
    basis = bar[4].selectbox(
        "Money basis",
        ["preferred", "billed", "estimated"],
        key="basis",
        bind="query-params",
        help="preferred: billed where a provider's bill covers the day, estimated elsewhere.",
    )
    options = queries.dimension_values(since, until)
    cols = [*st.columns(4), *st.columns(4)]
    chosen: dict[str, tuple[str, ...]] = {}
    for col, (dim, field_name) in zip(cols, queries.FILTER_FIELDS.items(), strict=False):
        picked = col.multiselect(dim.replace("_", " "), options[dim], key=dim, bind="query-params")
        chosen[field_name] = tuple(picked)
    sources = cols[6].multiselect(
        "source",
        SOURCES,
        default=["api", "csv"],
        key="source",
        bind="query-params",
        help="proxy rows are shown as their own series, never added to provider numbers",
    )
    if not sources:
        st.info("Pick at least one source.")
        return
    filters = Filters(since=since, until=until, sources=tuple(sources), **chosen)
    df = queries.report_frame(filters, by=(by,), grain=grain, basis=basis, top=12)
    if df.empty:
        ui.no_usage(filters)
        return
    df["tokens_total"] = df["input_tokens"] + df["output_tokens"]
    df["series"] = df[by].where(df["section"] == "provider", df[by] + " (" + df["section"] + ")")
    column, unit, y_title = METRICS[metric]
    m = st.columns(4)
    provider_rows = df[df["section"] == "provider"]
    cur = (queries.currencies(df["currency"]) or [queries.display_currency() or "USD"])[0]
    m[0].metric("Spend", charts.money_exact(queries.frame_totals(df, cur), cur))
    m[1].metric("Input tokens", charts.tokens(int(provider_rows["input_tokens"].sum())))
    m[2].metric("Output tokens", charts.tokens(int(provider_rows["output_tokens"].sum())))
    m[3].metric("Requests", charts.compact(int(provider_rows["requests"].sum())))
    plot = df[df["currency"].isin([cur, ""])] if column == "cost" else df
    # Usage another kind already holds (Claude Code in Messages) is listed in the table below,
    # never stacked on the chart, where it would read as added spend (design rule 7).
    plot = plot[plot["section"] != "subset"]
    fig = charts.stacked_over_time(
        plot.assign(**{by: plot["series"]}),
        x="period",
        y=column,
        color=by,
        title=f"{metric.capitalize()} per {grain} by {by.replace('_', ' ')}",
        y_title=f"{y_title} ({cur})" if unit == "money" else y_title,
        kind=kind,
        unit=unit,
        x_title=f"{grain} (UTC)",
        currency=cur,
    )
    st.plotly_chart(fig, width="stretch")
    for note in df.attrs.get("notes", []):
        st.caption(note)
    others = [c for c in queries.currencies(df["currency"]) if c != cur]
    if others and column == "cost":
        st.caption(f"Spend in {', '.join(others)} is in the table below (never added to {cur}).")
    ui.currency_notes(df.attrs["conversion"])
    if (df["section"] == "subset").any():
        st.caption("Rows of section 'subset' (e.g. Claude Code, already inside Messages) are in the table only.")
    table = df.drop(columns=["cost_exact", "series", "tokens_total"])
    table["cost"] = [str(v) if v is not None else "" for v in df["cost_exact"]]
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(
        "Download CSV",
        # Built when clicked, not on every run: at hourly grain the CSV took a third of a warm run.
        functools.partial(csvout.frame_to_csv, table),
        file_name=f"llm-usage_{since:%Y%m%d}-{until:%Y%m%d}_{by}_{grain}.csv",
        mime="text/csv",
    )


render()
