"""Reconciliation: billed vs usage x price table vs proxy-recorded, per provider account and day."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collector.query.report import Filters
from dashboard import auth, charts, queries, ui


def _status(row: pd.Series, has_proxy: bool) -> str:
    missing = []
    if pd.isna(row["billed"]):
        missing.append("no billed data")
    if pd.isna(row["estimated"]):
        missing.append("no usage data")
    if has_proxy and pd.isna(row["proxy"]):
        missing.append("no proxy data")
    return "; ".join(missing) if missing else "complete"


def render() -> None:
    """Draw the page."""
    auth.require("viewer")
    st.title("Reconciliation")
    st.caption(
        "Per provider account and UTC day: what the provider billed, what its usage costs at the public price "
        "table, and what the proxy recorded. The three are compared, never added together."
    )
    with st.columns([1, 2])[0]:
        window = ui.window_picker("recon_days", default_days=30)
    if window is None:
        return
    since, until = window
    data = queries.reconciliation(since, until)
    df = data.daily.copy()
    if df.empty:
        ui.no_usage(Filters(since=since, until=until))
        return
    for col in ("billed", "estimated", "proxy"):
        df[col] = pd.to_numeric(df[col].map(lambda v: float(v) if v is not None else None), errors="coerce")
    df["gap"] = df["estimated"] - df["billed"]
    df["gap %"] = df["gap"] / df["billed"].where(df["billed"] != 0)
    df["proxy gap %"] = (df["proxy"] - df["billed"]) / df["billed"].where(df["billed"] != 0)
    proxy_accounts = set(df.loc[df["proxy"].notna(), "provider"] + "/" + df.loc[df["proxy"].notna(), "account"])
    df["status"] = [_status(row, f"{row['provider']}/{row['account']}" in proxy_accounts) for _, row in df.iterrows()]
    accounts = sorted({f"{p} / {a}" if a else p for p, a in zip(df["provider"], df["account"], strict=True)})
    per_account = df.groupby(["provider", "account"], as_index=False)[["billed", "estimated", "proxy"]].sum(min_count=1)
    # The gap compares like with like: only days on which both the bill and the usage exist.
    both = df[df["billed"].notna() & df["estimated"].notna()]
    paired = both.groupby(["provider", "account"])[["billed", "estimated"]].sum()
    gap = (paired["estimated"] - paired["billed"]) / paired["billed"].where(paired["billed"] != 0)
    per_account["gap % (days with both)"] = [
        gap.get((p, a)) for p, a in zip(per_account["provider"], per_account["account"], strict=True)
    ]
    st.subheader("Per provider account, whole window")
    st.dataframe(_pretty(per_account), hide_index=True, width="stretch")
    choice = st.selectbox("Provider account", accounts, key="recon_account")
    provider, _, account = choice.partition(" / ")
    one = df[(df["provider"] == provider) & (df["account"] == account)].sort_values("day")
    st.plotly_chart(
        charts.reconciliation_lines(one, title=f"{choice}: billed vs usage x price vs proxy, per day"),
        width="stretch",
    )
    missing = one[one["status"] != "complete"]
    if not missing.empty:
        st.warning(f"{len(missing)} day(s) with a source missing for {choice}: marked in the table below.")
    st.dataframe(_pretty(one.drop(columns=["provider", "account"])), hide_index=True, width="stretch")
    st.subheader("Largest gaps in the window")
    gaps = df[df["gap"].notna()].assign(abs_gap=lambda d: d["gap"].abs()).nlargest(10, "abs_gap")
    st.dataframe(_pretty(gaps.drop(columns=["abs_gap"])), hide_index=True, width="stretch")
    st.subheader(f"Largest contributors for {choice}")
    c1, c2 = st.columns(2)
    mine = data.estimated_by_model
    est = mine[(mine["provider"] == provider) & (mine["account"] == account)].nlargest(10, "cost")
    c1.plotly_chart(
        charts.ranked_bar(est, label="model", value="cost", title="Usage x price table by model", x_title="cost (USD)"),
        width="stretch",
    )
    lines = data.billed_by_line
    billed = lines[(lines["provider"] == provider) & (lines["account"] == account)].nlargest(10, "cost")
    c2.plotly_chart(
        charts.ranked_bar(billed, label="line_item", value="cost", title="Billed by line item", x_title="cost (USD)"),
        width="stretch",
    )


def _pretty(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in ("billed", "estimated", "proxy", "gap"):
        if col in out:
            out[col] = [charts.money(v) if pd.notna(v) else "missing" for v in out[col]]
    for col in ("gap %", "proxy gap %", "gap % (days with both)"):
        if col in out:
            out[col] = [charts.percent(v) if pd.notna(v) else charts.NO_VALUE for v in out[col]]
    if "day" in out:
        out["day"] = [f"{d:%Y-%m-%d}" for d in out["day"]]
    if "unpriced_tokens" in out:
        out["unpriced_tokens"] = [charts.compact(v) for v in out["unpriced_tokens"]]
    return out


render()
