"""Overview: month-to-date spend, today, month-end forecast, change, spend by provider/model/project, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import streamlit as st

from collector.core.windows import floor_day
from collector.finance.forecast import METHOD as FORECAST_METHOD
from collector.query.report import OTHER_LABEL
from dashboard import auth, charts, queries, ui

DAY = timedelta(days=1)


def _money_in(df: pd.DataFrame, since: datetime, until: datetime, currency: str) -> Decimal:
    """Exact spend of ``currency`` rows whose day lies in ``[since, until)``."""
    part = df[(df["period"] >= since) & (df["period"] < until) & (df["currency"] == currency)]
    return sum((v for v in part["cost_exact"] if v is not None), Decimal(0))


def _delta(now: Decimal, before: Decimal) -> str | None:
    if before == 0:
        return None
    return f"{(now - before) / before * 100:+.1f}% vs same days last month"


def render() -> None:
    """Draw the page."""
    auth.require("viewer")
    st.title("Overview")
    now = queries.as_of()
    today = floor_day(now)
    tomorrow = today + DAY
    month_start = today.replace(day=1)
    prev_start = (month_start - DAY).replace(day=1)
    prev_end = min(prev_start + (tomorrow - month_start), month_start)
    minute = now.replace(second=0, microsecond=0)  # budget and forecast reads are cached per minute

    # One grouped read covers every figure on the page but the top lists and the freshness.
    span, month = queries.overview_windows(today)
    fresh_since = today - queries.FRESHNESS_WINDOW
    queries.prefetch(
        *((queries.report_frame, (window,), kwargs) for window, kwargs in queries.overview_reads(today)),
        (queries.freshness_frame, (fresh_since,), {}),
        (queries.scope_forecast, ("all", "", minute, queries.display_currency() or "USD"), {}),
        (queries.budget_frame, (minute,), {}),
    )
    daily = queries.report_frame(span, by=("provider",), grain="day")
    if daily.empty:
        ui.no_usage(span)
        _freshness(fresh_since)
        return
    daily = daily[daily["section"] == "provider"]
    currencies = queries.currencies(daily["currency"]) or [queries.display_currency() or "USD"]
    cur = currencies[0]
    mtd = _money_in(daily, month_start, tomorrow, cur)
    today_spend = _money_in(daily, today, tomorrow, cur)
    prev = _money_in(daily, prev_start, prev_end, cur)
    # The month-end projection is the Budgets page's (collector.finance.forecast), so both agree.
    month_end = queries.scope_forecast("all", "", minute, cur)
    fc = month_end.forecast

    st.caption(f"As of {now:%Y-%m-%d %H:%M} UTC · month {today:%B %Y} · money in {cur}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Month to date", charts.money_exact(mtd, cur), _delta(mtd, prev), delta_color="inverse")
    c2.metric("Today (so far)", charts.money_exact(today_spend, cur))
    c3.metric("Projected month end", charts.money(fc.projected, cur))
    c4.metric("Same days last month", charts.money_exact(prev, cur))
    st.caption(
        f"Projection: {fc.method}, as on the Budgets page; {round(fc.confidence * 100)}% interval "
        f"{charts.money(fc.low, cur)} .. {charts.money(fc.high, cur)}, from {fc.history_days} days of history, "
        f"{fc.remaining_days} day(s) left (today included). Spend is billed where a provider's bill covers the "
        "day, estimated from usage x the price table elsewhere."
    )
    if month_end.notes:
        st.caption(
            f"Left out of the projection for want of an exchange rate into {cur}: {len(month_end.notes)} day(s) of "
            "spend in other currencies (details on the Budgets page)."
        )
    _budgets(minute)
    if len(currencies) > 1:
        others = ", ".join(charts.money_exact(_money_in(daily, month_start, tomorrow, c), c) for c in currencies[1:])
        st.caption(f"Also this month in other currencies (never converted or added): {others}")

    left, right = st.columns([3, 2])
    recent = daily[(daily["period"] >= today - 29 * DAY) & (daily["currency"] == cur)]
    left.plotly_chart(
        charts.stacked_over_time(
            recent,
            x="period",
            y="cost",
            color="provider",
            title="Daily spend, last 30 days",
            y_title=f"cost ({cur})",
            currency=cur,
        ),
        width="stretch",
    )
    by_provider = daily[(daily["period"] >= month_start) & (daily["currency"] == cur)]
    by_provider = by_provider.groupby("provider", as_index=False)["cost"].sum()
    right.plotly_chart(
        charts.ranked_bar(
            by_provider,
            label="provider",
            value="cost",
            title="Spend by provider, this month",
            x_title=f"cost ({cur})",
            color="provider",
            currency=cur,
        ),
        width="stretch",
    )
    left, mid, right = st.columns(3)
    conversions = [daily.attrs["conversion"]]
    for column, dim, title in ((left, "model", "Top models, this month"), (mid, "project", "Top projects, this month")):
        # The report's top 10 (as `llm-usage report --top 10`); the folded rest is not a bar of its own.
        top = queries.report_frame(month, by=(dim,), top=10)
        conversions.append(top.attrs["conversion"])
        top = top[(top["section"] == "provider") & (top["currency"] == cur) & (top[dim] != OTHER_LABEL)]
        top = top.groupby(dim, as_index=False)["cost"].sum()
        column.plotly_chart(
            charts.ranked_bar(top, label=dim, value="cost", title=title, x_title=f"cost ({cur})", currency=cur),
            width="stretch",
        )
    month_rows = daily[(daily["period"] >= month_start) & (daily["currency"] == cur)]
    shares = month_rows.groupby("basis", as_index=False)["cost"].sum()
    right.plotly_chart(charts.basis_share(shares, currency=cur), width="stretch")
    unpriced = daily[(daily["period"] >= month_start) & (daily["basis"] == "unpriced")]
    if not unpriced.empty:
        n = int(unpriced["input_tokens"].sum() + unpriced["output_tokens"].sum())
        right.caption(f"Unpriced usage this month: {charts.tokens(n)} (models missing from the price table; not $0).")
    ui.currency_notes(*conversions)
    _freshness(fresh_since)


def _budgets(minute: datetime) -> None:
    """Active budgets: spend so far and month-end forecast against the amount (Budgets page has more)."""
    frame = queries.budget_frame(minute)
    if frame.empty:
        return
    shown = frame.assign(
        spent=[charts.money_exact(v, c) for v, c in zip(frame["spent"], frame["currency"], strict=True)],
        amount=[charts.money_exact(v, c) for v, c in zip(frame["amount"], frame["currency"], strict=True)],
        forecast=[charts.money(v, c) for v, c in zip(frame["forecast"], frame["currency"], strict=True)],
    ).drop(columns=["currency"])
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "used": st.column_config.ProgressColumn("used", format="percent", min_value=0, max_value=1),
            "forecast used": st.column_config.NumberColumn("forecast used", format="percent"),
        },
    )
    st.caption(f"Budget forecasts (as on the Budgets page): {FORECAST_METHOD}.")
    over = frame[frame["forecast used"] > 1]
    if not over.empty:
        st.warning(
            "Forecast over budget: " + ", ".join(over["budget"]) + " (details on the Budgets page).",
            icon=":material/savings:",
        )


def _freshness(since: datetime) -> None:
    st.subheader("Data freshness")
    fresh = queries.freshness_frame(since)
    if fresh.empty:
        st.caption(f"No source has delivered data since {since:%Y-%m-%d}.")
        return
    now = datetime.now(UTC)
    per_source = fresh.groupby("source", as_index=False).agg(
        oldest_newest_bucket=("newest_bucket_end", "min"), last_write=("last_ingested", "max")
    )
    cols = st.columns(max(1, len(per_source)))
    for col, row in zip(cols, per_source.itertuples(), strict=False):
        age = now - row.oldest_newest_bucket
        col.metric(
            f"{row.source}: oldest of the newest data",
            f"{row.oldest_newest_bucket:%Y-%m-%d %H:%M}",
            f"{age.days} d {age.seconds // 3600} h old",
            delta_color="off",
        )
    with st.expander("Per provider account and kind"):
        st.dataframe(fresh, hide_index=True, width="stretch")


render()
