"""Connections (admin): provider admin keys. A key is typed once; afterwards only its hint shows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from collector.core.catalog import display_name
from dashboard import actions, auth, queries


def render() -> None:
    """Draw the page."""
    auth.require("admin")
    st.title("Connections")
    flash = st.session_state.pop("conn_flash", None)
    if flash is not None:
        ok, message = flash
        (st.success if ok else st.error)(message)
    conns = queries.connections_frame()
    if conns.empty:
        st.info(
            "No provider connection yet. Add an admin key below (or with `llm-usage connections add openai "
            "--label prod`); keys are encrypted at rest and only their hint is ever shown again.",
            icon=":material/key:",
        )
    else:
        st.dataframe(conns, hide_index=True, width="stretch")
        _manage(conns)
    st.subheader("Add a provider connection")
    provider = st.selectbox("Provider", queries.connectable_providers(), format_func=display_name)
    fields = queries.connection_fields(provider)
    multipart = any(f.vault for f in fields)
    with st.form(f"add_connection_{provider}", clear_on_submit=True):
        label = st.text_input("Label", placeholder="prod")
        key = (
            ""
            if multipart
            else st.text_input("Admin key", type="password", help="Never shown again; stored encrypted.")
        )
        values = {f.name: _field(f) for f in fields}
        base_url = st.text_input("API base URL (optional)", help="Leave empty for the provider's public API.")
        if st.form_submit_button("Test and add", type="primary"):
            parts = {f.name: values[f.name] for f in fields if f.vault}
            options = {f.name: values[f.name] for f in fields if not f.vault}
            try:
                message = actions.add_connection(provider, label, key, base_url.strip(), parts=parts, options=options)
            except Exception as exc:  # noqa: BLE001  (wrong kind of key, failed test, duplicate: shown masked)
                st.error(actions.safe_message(exc))
            else:
                _done(True, message)


def _field(f: Any) -> str:
    """One credential part or setting: secrets typed hidden (a key file pasted into a text area)."""
    label = f.label + ("" if f.required else " (optional)")
    if f.multiline:
        return str(st.text_area(label, help=f.help or None, key=f"conn_field_{f.name}"))
    return str(
        st.text_input(
            label, type="password" if f.secret else "default", help=f.help or None, key=f"conn_field_{f.name}"
        )
    )


def _done(ok: bool, message: str) -> None:
    """Show ``message`` above the refreshed table (kept across the rerun; the action cleared the caches)."""
    st.session_state["conn_flash"] = (ok, message)
    st.rerun()


def _manage(conns: pd.DataFrame) -> None:
    """Test, disable/enable, replace the key of, or remove the chosen connection."""
    labels = {int(r.id): f"{r.id}: {r.provider} {r.label} ({r.key_hint})" for r in conns.itertuples()}
    ident = st.selectbox("Connection", list(labels), format_func=labels.__getitem__, key="conn_id")
    active = bool(conns.loc[conns["id"] == ident, "active"].iloc[0])
    test, toggle, remove = st.columns(3)
    if test.button("Test", key="conn_test"):
        try:
            ok, message = actions.test_connection(ident)
        except Exception as exc:  # noqa: BLE001  (an undecryptable key, say: shown masked)
            ok, message = False, actions.safe_message(exc)
        _done(ok, message)
    if toggle.button("Disable" if active else "Enable", key="conn_toggle"):
        actions.set_active(ident, not active)
        _done(True, f"{labels[ident]} {'disabled' if active else 'enabled'}.")
    if remove.button("Remove", key="conn_remove"):
        st.session_state["conn_confirm_remove"] = ident
    if st.session_state.get("conn_confirm_remove") == ident:
        st.warning(f"Remove {labels[ident]}? Its usage rows and sync history stay.")
        if st.button("Yes, remove it", key="conn_remove_yes", type="primary"):
            actions.remove_connection(ident)
            del st.session_state["conn_confirm_remove"]
            _done(True, f"Removed {labels[ident]}.")
    with st.form("replace_key", clear_on_submit=True):
        key = st.text_input("New admin key for this connection", type="password")
        if st.form_submit_button("Test and replace key"):
            try:
                message = actions.replace_key(ident, key)
            except Exception as exc:  # noqa: BLE001  (shown masked)
                st.error(actions.safe_message(exc))
            else:
                _done(True, message)


render()
