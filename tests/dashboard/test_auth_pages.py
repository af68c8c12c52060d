"""Sign-in and roles in the running app: nothing before sign-in, each role sees only its pages."""

import contextlib

from streamlit.testing.v1 import AppTest

from collector.auth.users import remove_user, set_role
from dashboard import queries
from tests.dashboard.conftest import APP, PASSWORD, app, texts

ALL_PAGES = {
    "Overview",
    "Explore",
    "Tokens",
    "Budgets",
    "Reconciliation",
    "Proxy",
    "Import",
    "Data & health",
    "Connections",
    "Users",
}
ADMIN_ONLY = {"Data & health", "Connections", "Users"}


def _nav(at: AppTest) -> set[str]:
    return {info["page_name"] for info in at._registered_pages.values()}


def test_signed_out_sees_only_the_sign_in_form(dashboard_db):
    at = app()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert at.text_input[1].proto.type == at.text_input[1].proto.PASSWORD
    assert not at.metric and not at.dataframe
    assert "$" not in texts(at)
    assert _nav(at) == {"Sign in"}


def test_sign_in_with_the_form_then_sign_out(dashboard_db):
    at = app()
    at.text_input[0].input("Viewer")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["auth_user"] == "viewer"
    assert {m.label for m in at.metric} >= {"Month to date", "Today (so far)"}
    at.button(key="sign_out").click().run()
    assert "auth_user" not in at.session_state
    assert not at.metric


def test_wrong_password_is_refused(dashboard_db):
    at = app()
    at.text_input[0].input("viewer")
    at.text_input[1].input("not the password")
    at.button[0].click().run()
    assert "Wrong user name or password." in [e.value for e in at.error]
    assert "auth_user" not in at.session_state
    assert not at.metric


def test_navigation_per_role(dashboard_db):
    assert _nav(app("viewer")) == ALL_PAGES - ADMIN_ONLY - {"Import"}
    assert _nav(app("finance")) == ALL_PAGES - ADMIN_ONLY
    assert _nav(app("admin")) == ALL_PAGES


def test_a_viewer_cannot_reach_connections_or_import(dashboard_db):
    at = app("viewer")
    for page in ("connections", "import_csv", "health", "users"):
        # Not in the viewer's navigation: switching there is refused ...
        with contextlib.suppress(ValueError):
            at.switch_page(f"app_pages/{page}.py").run()
        assert not any(df for df in at.dataframe if "key_hint" in df.value)
        assert "Import billing CSV files" not in texts(at)
        # ... and the page itself checks the role when run on its own.
        direct = AppTest.from_file(str(APP.parent / "app_pages" / f"{page}.py"), default_timeout=30)
        direct.session_state["auth_user"] = "viewer"
        direct.run()
        assert not direct.exception
        assert any("needs the" in e.value for e in direct.error), page
        assert not direct.dataframe and not direct.title


def test_finance_reaches_import_but_not_connections(dashboard_db):
    at = app("finance", "app_pages/import_csv.py")
    assert "Import billing CSV files" in texts(at)
    direct = AppTest.from_file(str(APP.parent / "app_pages" / "connections.py"), default_timeout=30)
    direct.session_state["auth_user"] = "finance"
    direct.run()
    assert any("needs the admin role" in e.value for e in direct.error)


def test_role_changes_apply_at_the_next_click(dashboard_db):
    at = app("finance")
    assert "Import" in _nav(at)
    set_role(queries.engine(), "finance", "viewer")
    at.run()
    assert "Import" not in _nav(at)
    remove_user(queries.engine(), "finance")
    at.run()
    assert _nav(at) == {"Sign in"} and not at.metric


OIDC = {
    "auth": {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": "test-cookie-secret",
        "client_id": "dashboard",
        "client_secret": "test-client-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    }
}


def _sso_app(email: str, *, verified: bool | None = True, **claims: object) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets.update(OIDC)
    identity = {"is_logged_in": True, "email": email, **claims}
    if verified is not None:
        identity["email_verified"] = verified
    at.user = identity
    return at.run()


def test_sso_identity_gets_the_role_of_its_local_account(dashboard_db):
    from collector.auth.users import add_user, get_user

    add_user(queries.engine(), "carol@example.com", "finance", None)
    at = _sso_app("Carol@example.com")
    assert not at.exception, at.exception
    assert _nav(at) == ALL_PAGES - ADMIN_ONLY
    assert get_user(queries.engine(), "carol@example.com").last_sign_in_at is not None


def test_sso_identity_without_an_account_gets_no_access(dashboard_db):
    at = _sso_app("mallory@example.com")
    assert not at.exception, at.exception
    assert _nav(at) == {"Sign in"} and not at.metric
    assert any("llm-usage users add mallory@example.com" in e.value for e in at.error)


def test_sign_in_page_offers_sso_only_when_configured(dashboard_db):
    assert "Sign in with SSO" not in [b.label for b in app().button]
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets.update(OIDC)
    at.user = {"is_logged_in": False}
    at.run()
    assert "Sign in with SSO" in [b.label for b in at.button]


def test_sso_needs_a_verified_e_mail_and_an_account_marked_for_sso(dashboard_db):
    from collector.auth.users import add_user

    add_user(queries.engine(), "carol@example.com", "finance", None)
    for verified in (False, None):  # said unverified, or said nothing
        at = _sso_app("carol@example.com", verified=verified)
        assert _nav(at) == {"Sign in"} and not at.metric, verified
        assert any("did not confirm your e-mail" in e.value for e in at.error)
    # preferred_username is never an identity: no e-mail, no access.
    at = _sso_app("", preferred_username="carol@example.com")
    assert _nav(at) == {"Sign in"}
    # The seeded admin has a password: an identity provider vouching for "admin" gets nowhere.
    at = _sso_app("admin")
    assert _nav(at) == {"Sign in"} and not at.metric
