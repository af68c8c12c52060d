"""Sign-in and roles for the dashboard, checked on the server on every run of every page.

Streamlit keeps ``st.session_state`` on the server, so the signed-in name stored there cannot be
forged by the browser; it is still looked up in the ``users`` table on every run, so removing
an account or changing its role takes effect at the user's next click.

A sign-in survives a refresh, a new tab and a link from an alert e-mail: it is a server-side
session (:mod:`collector.auth.sessions`) whose token the browser keeps in an HttpOnly cookie
(:mod:`dashboard.cookies`). A new tab finds its session through the cookie; every run of a tab
checks that the session still lives (idle and absolute lifetimes, sign-out in another tab,
password or role change, account removed), so a tab signed out elsewhere is signed out at its
next click. An account whose password was generated or reset by an admin sees only the
change-password form until its owner picks a new one. Passwords are checked by
:func:`collector.auth.users.authenticate` (argon2id, per-user slow-down; called through
:mod:`dashboard.actions` because it updates the account) and never kept in the session.

OpenID Connect is optional: when ``.streamlit/secrets.toml`` has an ``[auth]`` section
(Streamlit's ``st.login``; needs ``pip install "streamlit[auth]"``), the sign-in page offers
"Sign in with SSO". The identity provider proves who someone is; their role still comes from
the ``users`` table: an account named after their e-mail address, *verified* by the provider
(``email_verified``), and marked for SSO (never a password account such as ``admin``).
"""

from __future__ import annotations

import json

import streamlit as st

from collector.auth.users import Account, UserError, role_allows
from dashboard import actions, cookies, queries

SESSION_KEY = "auth_user"
#: The id of the tab's server-side session (absent for SSO sign-ins and in AppTest runs).
SESSION_ID_KEY = "auth_session"
#: Where the browser must go on the next run (the cookie routes), set just before ``st.rerun``.
NAVIGATE_KEY = "auth_navigate"


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


def _cookie_token() -> str | None:
    """The session cookie's token as the browser sent it with this tab's connection."""
    try:
        token = st.context.cookies.get(cookies.COOKIE)
    except Exception:  # noqa: BLE001  (no served session, e.g. under AppTest)
        return None
    return token if isinstance(token, str) and token else None


def _session_name() -> str | None:
    """The signed-in name from the tab's state, checked against its server-side session; else from the cookie."""
    name = st.session_state.get(SESSION_KEY)
    session_id = st.session_state.get(SESSION_ID_KEY)
    if session_id is not None:
        if actions.session_alive(session_id) != name:  # expired, signed out elsewhere, password/role changed
            st.session_state.pop(SESSION_KEY, None)
            st.session_state.pop(SESSION_ID_KEY, None)
            return None
        return name
    if name:
        return str(name)
    token = _cookie_token()
    found = actions.session_by_token(token) if token else None
    if found is None:
        return None
    st.session_state[SESSION_ID_KEY], st.session_state[SESSION_KEY] = found
    return found[1]


def current_account() -> Account | None:
    """The signed-in account, re-read from the database on every run; None when signed out."""
    name = _session_name()
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


def navigate_if_asked() -> None:
    """Send the browser where the last run asked (a cookie route), once.

    Streamlit cannot answer with a redirect, so a one-line script changes ``window.location``;
    the target is one of this app's own fixed paths with a URL-safe ticket at most.
    """
    target = st.session_state.pop(NAVIGATE_KEY, None)
    if target:
        st.html(f"<script>window.location.replace({json.dumps(target)});</script>", unsafe_allow_javascript=True)


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
    """End the session (every tab sharing it follows), expire the cookie, and end SSO when signed in by it."""
    actions.end_session(st.session_state.pop(SESSION_ID_KEY, None), _cookie_token())
    st.session_state.pop(SESSION_KEY, None)
    if _sso_name():
        st.logout()
    st.session_state[NAVIGATE_KEY] = cookies.SIGN_OUT_PATH


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
            started = actions.start_session(result.account.name)
            st.session_state[SESSION_KEY] = result.account.name
            st.session_state[SESSION_ID_KEY] = started.id
            st.session_state[NAVIGATE_KEY] = f"{cookies.SESSION_PATH}?ticket={started.ticket}"
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


def change_password_page() -> None:
    """All an account with a generated or reset password sees until its owner picks a new one."""
    with st.columns([1, 2, 1])[1]:
        st.title("Choose a new password")
        st.info(
            "Your password was generated or reset by an admin (and may have been shown in a console or log). "
            "Choose your own before going on."
        )
        with st.form("change_password"):
            current = st.text_input("Current password", type="password", autocomplete="current-password")
            new = st.text_input("New password", type="password", autocomplete="new-password")
            again = st.text_input("New password again", type="password", autocomplete="new-password")
            submitted = st.form_submit_button("Change password", type="primary")
        if submitted:
            _change_password(current, new, again)


def _change_password(current: str, new: str, again: str) -> None:
    name = st.session_state.get(SESSION_KEY)
    if not name:
        return
    if new != again:
        st.error("The two new passwords differ.")
        return
    try:
        actions.change_own_password(name, current, new, st.session_state.get(SESSION_ID_KEY))
    except UserError as exc:
        st.error(str(exc).capitalize() + ".")
        return
    st.rerun()
