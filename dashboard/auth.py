"""Sign-in and roles for the dashboard, checked on the server on every run of every page.

Streamlit keeps ``st.session_state`` on the server, so the signed-in name stored there cannot be
forged by the browser; it is still looked up in the ``users`` table on every run, so removing
an account or changing its role takes effect at the user's next click. Passwords are checked by
:func:`collector.auth.users.authenticate` (argon2id, per-user slow-down; called through
:mod:`dashboard.actions` because it updates the account) and never kept in the session.

OpenID Connect is optional: when ``.streamlit/secrets.toml`` has an ``[auth]`` section
(Streamlit's ``st.login``; needs ``pip install "streamlit[auth]"``), the sign-in page offers
"Sign in with SSO". The identity provider proves who someone is; their role still comes from
the ``users`` table: an account named after their e-mail address, *verified* by the provider
(``email_verified``), and marked for SSO (never a password account such as ``admin``).
"""

from __future__ import annotations

import streamlit as st

from collector.auth.users import Account, role_allows
from dashboard import actions, queries

SESSION_KEY = "auth_user"


def oidc_configured() -> bool:
    """True when ``secrets.toml`` configures Streamlit's OpenID Connect sign-in."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001  (no secrets file, or an unreadable one: no SSO)
        return False


def _sso_name() -> str | None:
    """The identity's e-mail address, only when the identity provider says it verified it.

    ``preferred_username`` and unverified addresses are never used: anyone can register an
    address they do not own at many providers, or pick a username that looks like one.
    """
    if not oidc_configured():
        return None
    try:
        if not st.user.is_logged_in:
            return None
        email, verified = st.user.get("email"), st.user.get("email_verified")
    except Exception:  # noqa: BLE001  (st.user unavailable outside a served session)
        return None
    return str(email) if email and verified is True else None


def _sso_unverified() -> bool:
    """Signed in at the identity provider, but without a verified e-mail address."""
    try:
        return oidc_configured() and bool(st.user.is_logged_in) and _sso_name() is None
    except Exception:  # noqa: BLE001
        return False


def client_address() -> str:
    """Who is signing in, for the per-client limits: the connection's address (``local`` on loopback)."""
    try:
        return st.context.ip_address or "local"
    except Exception:  # noqa: BLE001  (no served session, e.g. under AppTest)
        return "local"


def current_account() -> Account | None:
    """The signed-in account, re-read from the database on every run; None when signed out."""
    name = st.session_state.get(SESSION_KEY)
    if name:
        account = queries.account(name)
        if account is None:  # removed while signed in
            st.session_state.pop(SESSION_KEY, None)
        return account
    sso = _sso_name()
    if sso:
        account = actions.record_sso_sign_in(sso)
        if account is not None:
            st.session_state[SESSION_KEY] = account.name
        return account
    return None


def require(role: str) -> Account:
    """Stop the page unless the signed-in account has ``role`` (or a higher one).

    Every page calls this first, so a page is never rendered for the wrong person even when
    reached by its URL or run on its own.
    """
    account = current_account()
    if account is None:
        st.warning("Please sign in.")
        st.stop()
    if not role_allows(account.role, role):
        st.error(f"This page needs the {role} role; you are signed in as {account.name} ({account.role}).")
        st.stop()
    return account


def sign_out() -> None:
    """Forget the session's account (and end the SSO session when there is one)."""
    st.session_state.pop(SESSION_KEY, None)
    if _sso_name():
        st.logout()


def sign_in_page() -> None:
    """The only thing a signed-out visitor sees (a narrow form that suits a laptop screen)."""
    with st.columns([1, 2, 1])[1]:
        _sign_in_form()


def _sign_in_form() -> None:
    st.title("LLM usage & cost")
    st.subheader("Sign in")
    with st.form("sign_in", clear_on_submit=False):
        name = st.text_input("User name", key="sign_in_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        result = actions.sign_in(name, password, client_address())
        if result.ok and result.account is not None:
            st.session_state[SESSION_KEY] = result.account.name
            st.session_state.pop("sign_in_password", None)
            st.rerun()
        st.error(result.message)
    if oidc_configured():
        st.divider()
        sso = _sso_name()
        if sso:
            st.error(
                f"{sso} signed in through SSO but has no dashboard account allowed to use SSO. "
                f"An admin can add it with `llm-usage users add {sso} --no-password --role viewer`."
            )
            if st.button("Sign out of SSO"):
                st.logout()
        elif _sso_unverified():
            st.error("Your identity provider did not confirm your e-mail address, so SSO cannot sign you in.")
            if st.button("Sign out of SSO"):
                st.logout()
        elif st.button("Sign in with SSO"):
            st.login()
    st.caption(
        "No account? An admin creates one with `llm-usage users add NAME --role viewer`. "
        "The first `make run` creates `admin` and prints its password once."
    )
