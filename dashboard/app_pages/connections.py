"""Connections (admin): provider admin keys. A key is typed once; afterwards only its hint shows."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, auth, queries

PROVIDERS = ("openai", "anthropic")


def render() -> None:
    """Draw the page."""
    auth.require("admin")
    st.title("Connections")
    conns = queries.connections_frame()
    add = actions.feature_function(actions.CONNECTIONS_MODULE, "add_connection")
    if conns is None or conns.empty:
        st.info(
            "No provider connection yet. Add an admin key with `llm-usage connections add openai --label prod` "
            "(or `anthropic`); keys are encrypted at rest and only their hint is ever shown again.",
            icon=":material/key:",
        )
    else:
        st.dataframe(conns, hide_index=True, width="stretch")
        _manage(conns)
    if add is None:
        if conns is None:
            st.caption(
                "Connection management is not installed in this build: use the `llm-usage connections` commands."
            )
        return
    st.subheader("Add a provider admin key")
    with st.form("add_connection", clear_on_submit=True):
        provider = st.selectbox("Provider", PROVIDERS)
        label = st.text_input("Label", placeholder="prod")
        key = st.text_input("Admin key", type="password", help="Never shown again; stored encrypted.")
        if st.form_submit_button("Test and add", type="primary"):
            try:
                add(queries.engine(), provider=provider, label=label, key=key)
            except Exception as exc:  # noqa: BLE001  (shown masked)
                st.error(actions.safe_message(exc))
            else:
                queries.clear_caches()
                st.success(f"Added {provider} {label}.")
                st.rerun()


def _manage(conns) -> None:  # type: ignore[no-untyped-def]
    if "id" not in conns:
        return
    funcs = {
        name: actions.feature_function(actions.CONNECTIONS_MODULE, fn)
        for name, fn in (
            ("Test", "test_connection"),
            ("Disable", "disable_connection"),
            ("Enable", "enable_connection"),
            ("Remove", "remove_connection"),
        )
    }
    available = {k: f for k, f in funcs.items() if f is not None}
    if not available:
        st.caption("Test, disable or remove with `llm-usage connections test|disable|remove ID`.")
        return
    ident = st.selectbox("Connection", conns["id"].tolist(), key="conn_id")
    cols = st.columns(len(available))
    for col, (name, fn) in zip(cols, available.items(), strict=True):
        if col.button(name, key=f"conn_{name}"):
            try:
                fn(queries.engine(), ident)
            except Exception as exc:  # noqa: BLE001
                st.error(actions.safe_message(exc))
            else:
                queries.clear_caches()
                st.rerun()


render()
