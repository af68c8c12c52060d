"""Data & health (admin): connections and their syncs, imported files, freshness, the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import streamlit as st

from collector.core.windows import floor_day
from dashboard import actions, auth, charts, queries


def render() -> None:
    """Draw the page."""
    auth.require("admin")
    st.title("Data & health")
    info = queries.database_info()
    c = st.columns(4)
    c[0].metric("Database", info.backend)
    c[1].metric("Usage rows", charts.compact(info.usage_rows))
    c[2].metric("Daily rollup rows", charts.compact(info.daily_rows))
    c[3].metric("Schema revision", info.revision or charts.NO_VALUE)
    st.caption(f"Database: `{info.url}`")
    if st.button("Check health (as `llm-usage status --check`)", key="check_health"):
        problems, notes = queries.status_problems()
        if problems:
            st.error("\n".join(f"- {p}" for p in problems))
        else:
            st.success("No problem found: every active connection is syncing and the schema is current.")
        for note in notes:
            st.caption(note)

    _overlaps()
    st.subheader("Connections")
    flash = st.session_state.pop("health_flash", None)
    if flash is not None:
        (st.success if flash[0] else st.error)(flash[1])
    conns = queries.connections_frame()
    if conns.empty:
        st.info(
            "No provider connection yet: add an admin key on the Connections page "
            "(or `llm-usage connections add openai --label prod`)."
        )
    else:
        st.dataframe(conns, hide_index=True, width="stretch")
        labels = {int(r.id): f"{r.id}: {r.provider} {r.label}" for r in conns.itertuples()}
        ident = st.selectbox("Connection", list(labels), format_func=labels.__getitem__, key="health_conn")
        b1, b2 = st.columns(2)
        if b1.button("Sync now", key="sync_now"):
            _run(actions.sync_now, ident, "sync")
        if b2.button("Test", key="test_conn"):
            _run(actions.test_connection, ident, "test")

    st.subheader("Sync runs")
    runs = queries.sync_runs_frame()
    if runs.empty:
        st.caption("No sync has run yet (the scheduler syncs every connection hourly once one is added).")
    else:
        st.dataframe(runs, hide_index=True, width="stretch")

    st.subheader("Imported files")
    files = queries.import_files_frame()
    if files.empty:
        st.caption("No file imported yet: finance uploads billing CSVs on the Import page.")
    else:
        st.dataframe(files, hide_index=True, width="stretch")

    st.subheader("Freshness per source")
    since = floor_day(queries.as_of()) - queries.FRESHNESS_WINDOW
    fresh = queries.freshness_frame(since)
    if fresh.empty:
        st.caption(f"No source has delivered data since {since:%Y-%m-%d}.")
    else:
        st.dataframe(fresh, hide_index=True, width="stretch")


def _run(fn: Callable[[int], tuple[bool, str]], ident: int, what: str) -> None:
    with st.spinner(f"{what} {ident}…"):
        try:
            ok, message = fn(ident)
        except Exception as exc:  # noqa: BLE001  (shown masked; the page keeps working)
            ok, message = False, actions.safe_message(exc)
    st.session_state["health_flash"] = (ok, f"{what} {'finished' if ok else 'failed'}: {message}")
    st.rerun()  # redraw the connection and sync-run tables with the outcome


def _overlaps() -> None:
    """Account-days two billed sources bill: one counts, the others are kept (the Import page chooses)."""
    until = floor_day(queries.as_of()) + timedelta(days=1)
    found = queries.billing_overlaps(until - timedelta(days=90), until)
    if found:
        st.subheader("Billed twice (one source counts)")
        for overlap in found:
            st.write(f"- {overlap.describe()}")


render()
