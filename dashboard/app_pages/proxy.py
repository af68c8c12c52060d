"""Proxy: live traffic the sidecar recorded (requests/s, latency, errors, spend by team and project)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import streamlit as st

from collector.auth.users import role_allows
from collector.query.report import Filters
from dashboard import actions, auth, charts, queries, ui

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def render() -> None:
    """Draw the page."""
    account = auth.require("viewer")
    st.title("Proxy")
    now = queries.as_of()
    stats = queries.proxy_stats(now - HOUR, now)
    if not stats.requests:
        st.info(
            "No proxy traffic recorded in the last hour. Start the sidecar with `llm-usage proxy --port 8787` and "
            "point your SDK at it (`OPENAI_BASE_URL=http://HOST:8787/openai/v1`, Anthropic "
            "`base_url=http://HOST:8787/anthropic`); its traffic appears here within minutes.",
            icon=":material/router:",
        )
    else:
        c = st.columns(4)
        c[0].metric("Requests/s (last hour)", f"{stats.per_second:.2f}")
        c[1].metric("Latency p50", f"{stats.p50_ms:.0f} ms" if stats.p50_ms is not None else charts.NO_VALUE)
        c[2].metric("Latency p95", f"{stats.p95_ms:.0f} ms" if stats.p95_ms is not None else charts.NO_VALUE)
        c[3].metric("Error rate", charts.percent(stats.error_rate))
    _refusals(now)
    window = ui.window_picker("proxy_days", default_days=7)
    if window is None:
        return
    since, until = window
    filters = Filters(since=since, until=until, sources=("proxy",))
    if not queries.has_source("proxy", since, until):
        st.caption("No proxy-recorded usage in this window.")
    else:
        totals = queries.spend_totals(filters, "estimated", section="proxy")
        cur = (totals.currencies() or [queries.display_currency() or "USD"])[0]
        money = ", ".join(charts.money_exact(totals.total(c), c) for c in totals.currencies()) or charts.money_exact(
            Decimal(0), cur
        )
        st.caption(
            f"Proxy-recorded: {charts.compact(totals.requests)} requests, {charts.tokens(totals.input_tokens)} in, "
            f"{charts.tokens(totals.output_tokens)} out, {money} at the price table. "
            "Compared with the providers' numbers on Reconciliation, never added to them."
        )
        left, right = st.columns(2)
        conversions = [totals.conversion]
        for col, dim in ((left, "team"), (right, "project")):
            df = queries.report_frame(filters, by=(dim,), basis="estimated", top=10)
            conversions.append(df.attrs["conversion"])
            df = df[df["cost"].notna() & (df["currency"] == cur)].groupby(dim, as_index=False)["cost"].sum()
            col.plotly_chart(
                charts.ranked_bar(
                    df, label=dim, value="cost", title=f"Top {dim}s by spend", x_title=f"cost ({cur})", currency=cur
                ),
                width="stretch",
            )
        ui.currency_notes(*conversions)
    if role_allows(account.role, "admin"):
        _rollup_now()
        _monitor_tokens()


def _refusals(now: datetime) -> None:
    """Calls refused by a rate limit or an enforced budget in the last day (never usage rows)."""
    refused = queries.proxy_refusals(now - DAY, now)
    if refused.empty:
        return
    st.subheader("Refused calls (last 24 hours)")
    st.caption(
        "Rate limits (`llm-usage tokens limit`) and enforced budgets (`llm-usage budgets enforce`; lift with "
        "`budgets lift`). Refused calls were not forwarded and are not usage."
    )
    st.dataframe(refused, hide_index=True, width="stretch")


def _rollup_now() -> None:
    """Calls reach the charts above once rolled up (every few minutes); admins can do it now."""
    done = st.session_state.pop("rolled_up", None)
    if done is not None:
        st.success(" · ".join(done))
    if st.button("Roll up now", help="Same as `llm-usage proxy rollup`: the last minutes' calls show at once."):
        st.session_state["rolled_up"] = actions.rollup_proxy()
        st.rerun()


def _monitor_tokens() -> None:
    st.subheader("Monitor tokens")
    st.caption("Callers send `X-Monitor-Token` to attribute traffic to a team and project; the proxy strips it.")
    minted = st.session_state.pop("minted_token", None)
    if minted is not None:
        st.success("Token created. Copy it now: it is shown only once.")
        st.code(minted)
    tokens = queries.monitor_tokens_frame()
    if tokens.empty:
        st.caption("No monitor token yet (also `llm-usage tokens create --team T --project P`).")
    else:
        st.dataframe(tokens, hide_index=True, width="stretch")
    with st.form("create_token", clear_on_submit=True):
        team = st.text_input("Team")
        project = st.text_input("Project")
        label = st.text_input("Label (optional)")
        if st.form_submit_button("Create token"):
            try:
                _ident, token = actions.create_token(team, project, label)
            except ValueError as exc:  # no team
                st.error(str(exc))
            else:
                st.session_state["minted_token"] = token
                st.rerun()
    active = tokens[tokens["revoked_at"].isna()] if not tokens.empty else tokens
    if not active.empty:
        with st.form("revoke_token"):
            names = {int(r.id): f"{r.id}: {r.hint} ({r.team}/{r.project})" for r in active.itertuples()}
            ident = st.selectbox("Token", list(names), format_func=names.__getitem__)
            if st.form_submit_button("Revoke"):
                actions.revoke_token(ident)
                st.rerun()


render()
