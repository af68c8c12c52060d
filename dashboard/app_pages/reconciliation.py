"""Reconciliation: billed vs usage x price table vs proxy-recorded vs OpenTelemetry, per provider account and day.

The numbers, gaps, missing-source flags and the gap's named causes are
:func:`collector.query.reconcile.reconcile`'s (and :func:`~collector.query.reconcile.summarise`'s,
as ``llm-usage reconcile`` prints them); this page only picks an account and draws them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pandas as pd
import streamlit as st

from collector.query.reconcile import CAUSES, LABELS, PARTS, PRICE_TABLE_CURRENCY
from collector.query.report import Filters
from dashboard import auth, charts, queries, ui

MONEY = ("billed", "estimated", "proxy", "otel", "gap", "residual")
RATIOS = ("gap %", "proxy gap %", "otel gap %", "gap % (days with both)")


def render() -> None:
    """Draw the page."""
    auth.require("viewer")
    st.title("Reconciliation")
    st.caption(
        "Per provider account and UTC day: what the provider billed, what its usage costs at the public price "
        "table, what the proxy recorded and what applications reported through OpenTelemetry (otel). They are "
        "compared, never added together; money in different currencies stays on separate lines."
    )
    with st.columns([1, 2])[0]:
        window = ui.window_picker("recon_days", default_days=30)
    if window is None:
        return
    since, until = window
    data = queries.reconciliation(since, until)
    if data.daily.empty:
        ui.no_usage(Filters(since=since, until=until))
        return
    daily, conversion = queries.in_display_currency(data.daily)
    st.subheader("Per provider account, whole window")
    st.dataframe(_pretty(_with_converted_totals(data.accounts, daily, conversion.to)), hide_index=True, width="stretch")
    ui.currency_notes(
        conversion,
        without_rate=f"Those days are left out of the {conversion.to} columns; the other columns keep each "
        "line's own currency.",
    )
    choices = {_label(r.provider, r.account, r.currency): r for r in data.accounts.itertuples()}
    choice = st.selectbox("Provider account", sorted(choices), key="recon_account")
    picked = choices[choice]
    _why(since, until, picked.provider, picked.account, picked.currency, choice)
    mine = (daily["provider"] == picked.provider) & (daily["account"] == picked.account)
    one = daily[mine & (daily["currency"] == picked.currency)].sort_values("day")
    st.plotly_chart(
        charts.reconciliation_lines(
            one, title=f"{choice}: billed vs usage x price vs proxy, per day", currency=picked.currency
        ),
        width="stretch",
    )
    missing = one[one["status"] != "complete"]
    if not missing.empty:
        st.warning(f"{len(missing)} day(s) with a source missing for {choice}: marked in the table below.")
    st.dataframe(
        _pretty(one.drop(columns=["provider", "account", "currency"]), picked.currency),
        hide_index=True,
        width="stretch",
    )
    st.subheader("Largest gaps in the window")
    st.dataframe(_pretty(data.largest_gaps), hide_index=True, width="stretch")
    st.subheader(f"Largest contributors for {choice}")
    c1, c2 = st.columns(2)
    unit = f"cost ({picked.currency})"
    for column, frame, title in (
        (c1, data.estimated_by_model, "Usage x price table by model"),
        (c2, data.billed_by_line, "Billed by line item"),
    ):
        own = frame[
            (frame["provider"] == picked.provider)
            & (frame["account"] == picked.account)
            & (frame["currency"] == picked.currency)
        ]
        column.plotly_chart(
            charts.ranked_bar(own.head(10), label="label", value="cost", title=title, x_title=unit),
            width="stretch",
        )


def _why(since: datetime, until: datetime, provider: str, account: str, currency: str, choice: str) -> None:
    """The waterfall from tokens at standard rates to the bill, and the same steps as a table."""
    summary = queries.reconciliation_summary(since, until)
    mine = summary[
        (summary["provider"] == provider) & (summary["account"] == account) & (summary["currency"] == currency)
    ]
    if mine.empty:
        return
    row = mine.iloc[0]
    st.subheader(f"Why the bill and usage x price differ: {choice}")
    st.plotly_chart(
        charts.reconciliation_waterfall(row, title=f"{choice}: from usage x price to the bill", currency=currency),
        width="stretch",
    )
    names = (*PARTS, *CAUSES)
    billed = row["billed"]
    table = pd.DataFrame(
        {
            "step": [LABELS[n] for n in names],
            "amount": [charts.money_exact(Decimal(str(row[n])), currency) for n in names],
            "share of billed": [charts.percent(row[n] / billed) if billed else charts.NO_VALUE for n in names],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch")
    share = f" ({charts.percent(row['residual %'])} of billed)" if pd.notna(row["residual %"]) else ""
    flagged = f" {int(row['flagged days'])} day(s) flagged." if row["flagged days"] else ""
    st.caption(
        f"Residual (unexplained): {charts.money(row['residual'], currency)}{share}; before attribution, "
        f"billed - tokens at standard rates was {charts.money(row['gap before'], currency)}.{flagged}"
    )
    if pd.notna(row["outside proxy"]):
        outside = charts.money(row["outside proxy"], currency)
        st.caption(f"Outside the proxy (usage x price the proxy did not see): {outside}")


def _with_converted_totals(accounts: pd.DataFrame, daily: pd.DataFrame, to: str) -> pd.DataFrame:
    """The accounts table with its billed and estimated money summed in ``to`` over the days that had a rate."""
    if not to:
        return accounts
    keys = ["provider", "account", "currency"]
    money = [f"billed ({to})", f"estimated ({to})"]
    sums = daily.groupby(keys, as_index=False)[money].sum(min_count=1)
    return accounts.merge(sums, on=keys, how="left")


def _label(provider: str, account: str, currency: str) -> str:
    """``provider / account``, with the currency when it is not the price table's."""
    name = f"{provider} / {account}" if account else provider
    return name if currency == PRICE_TABLE_CURRENCY else f"{name} ({currency})"


def _pretty(df: pd.DataFrame, currency: str = PRICE_TABLE_CURRENCY) -> pd.DataFrame:
    """Money, ratios, days and token counts as people read them (money in each line's currency)."""
    out = df.copy()
    currencies = list(out["currency"]) if "currency" in out else [currency] * len(out)
    for col in MONEY:
        if col in out:
            out[col] = [
                charts.money(v, c) if pd.notna(v) else "missing" for v, c in zip(out[col], currencies, strict=True)
            ]
    to = queries.display_currency()
    for col in (f"billed ({to})", f"estimated ({to})"):
        if to and col in out:
            out[col] = [charts.money(v, to) if pd.notna(v) else charts.NO_VALUE for v in out[col]]
    for col in RATIOS:
        if col in out:
            out[col] = [charts.percent(v) if pd.notna(v) else charts.NO_VALUE for v in out[col]]
    if "day" in out:
        out["day"] = [f"{d:%Y-%m-%d}" for d in out["day"]]
    if "unpriced_tokens" in out:
        out["unpriced_tokens"] = [charts.compact(v) for v in out["unpriced_tokens"]]
    return out


render()
