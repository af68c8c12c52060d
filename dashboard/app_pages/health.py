"""Data & health (admin): connections and their syncs, imported files, freshness, the database."""

from __future__ import annotations

import streamlit as st

from collector.http import redact
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

    st.subheader("Connections")
    conns = queries.connections_frame()
    if conns is None or conns.empty:
        st.info("No provider connection yet: add an admin key with `llm-usage connections add openai` (or anthropic).")
    else:
        st.dataframe(conns, hide_index=True, width="stretch")
        sync = actions.feature_function(actions.CONNECTIONS_MODULE, "sync_connection")
        test = actions.feature_function(actions.CONNECTIONS_MODULE, "test_connection")
        if (sync or test) and "id" in conns:
            ident = st.selectbox("Connection", conns["id"].tolist(), key="health_conn")
            b1, b2 = st.columns(2)
            if sync and b1.button("Sync now", key="sync_now"):
                _run(sync, ident, "sync")
            if test and b2.button("Test", key="test_conn"):
                _run(test, ident, "test")
        elif not (sync or test):
            st.caption("Sync and test from the command line: `llm-usage connections sync ID`, `... test ID`.")

    st.subheader("Sync runs")
    runs = queries.sync_runs_frame()
    if runs is None or runs.empty:
        st.caption("No sync has run yet (the scheduler syncs every connection hourly once one is added).")
    else:
        st.dataframe(runs, hide_index=True, width="stretch")

    st.subheader("Imported files")
    files = queries.import_files_frame()
    if files is None or files.empty:
        st.caption("No file imported yet: finance uploads billing CSVs on the Import page.")
    else:
        st.dataframe(files, hide_index=True, width="stretch")

    st.subheader("Freshness per source")
    since = queries.floor_day(queries.as_of()) - queries.FRESHNESS_WINDOW
    fresh = queries.freshness_frame(since)
    if fresh.empty:
        st.caption(f"No source has delivered data since {since:%Y-%m-%d}.")
    else:
        st.dataframe(fresh, hide_index=True, width="stretch")


def _run(fn, ident, what: str) -> None:  # type: ignore[no-untyped-def]
    with st.spinner(f"{what} {ident}…"):
        try:
            result = fn(queries.engine(), ident)
        except Exception as exc:  # noqa: BLE001  (shown masked; the page keeps working)
            st.error(f"{what} failed: {actions.safe_message(exc)}")
            return
    queries.clear_caches()
    st.success(f"{what} finished: {redact(str(result))}")


render()
