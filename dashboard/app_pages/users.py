"""Users (admin): dashboard accounts and roles. Generated passwords are shown once."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from collector.auth.users import ROLES, UserError, generate_password
from dashboard import actions, auth, queries


def render() -> None:
    """Draw the page."""
    me = auth.require("admin")
    st.title("Users")
    accounts = queries.accounts()
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": a.name,
                    "role": a.role,
                    "sign-in": " + ".join(m for m, on in (("password", a.has_password), ("SSO", a.sso)) if on),
                    "last sign-in": a.last_sign_in_at,
                    "failed attempts": a.failed_attempts,
                    "created": a.created_at,
                }
                for a in accounts
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.caption("viewer sees spend · finance also imports · admin also manages connections, users and tokens")
    left, right = st.columns(2)
    with left.form("add_user", clear_on_submit=True):
        st.markdown("**Add an account**")
        name = st.text_input("Name (e-mail for SSO)")
        role = st.selectbox("Role", ROLES)
        sso_only = st.checkbox("SSO only (no password)")
        if st.form_submit_button("Add"):
            password = None if sso_only else generate_password()
            try:
                actions.add_user(name, role, password)
            except UserError as exc:
                st.error(str(exc))
            else:
                st.success(f"Added {name} ({role}).")
                if password:
                    st.info(
                        "Password, shown only now: give it to the user, who must choose their own at first sign-in."
                    )
                    st.code(password)
    with right.form("change_user"):
        st.markdown("**Change an account**")
        target = st.selectbox("Account", [a.name for a in accounts])
        new_role = st.selectbox("New role", ROLES)
        c1, c2, c3 = st.columns(3)
        do_role = c1.form_submit_button("Set role")
        do_reset = c2.form_submit_button("New password")
        do_remove = c3.form_submit_button("Remove")
    try:
        if do_role:
            actions.set_role(target, new_role)
            st.success(f"{target} is now {new_role}.")
        elif do_reset:
            password = generate_password()
            actions.set_password(target, password)
            right.info("New password, shown only now (to be changed at the next sign-in; signed out everywhere):")
            right.code(password)
        elif do_remove:
            if target == me.name:
                st.error("You cannot remove your own account while signed in with it.")
            else:
                actions.remove_user(target)
                st.success(f"Removed {target}.")
    except UserError as exc:
        st.error(str(exc))


render()
