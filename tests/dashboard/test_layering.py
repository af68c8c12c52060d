"""Pages only draw: they read through ``dashboard.queries`` and write through ``dashboard.actions``.

The rules are checked on the source (pages import nothing from SQLAlchemy, never hold the
engine, never call a feature's write function themselves), and the writes the pages used to
make directly are exercised through the pages that now make them through ``actions``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collector.auth.users import authenticate, get_user
from collector.core.catalog import display_name
from dashboard import queries
from providers import REGISTRY
from tests.dashboard.conftest import app, rendered

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard"
PAGES = sorted((DASHBOARD / "app_pages").glob("*.py"))
#: Functions of the features that write; a page may reach them only as ``actions.<name>``.
WRITERS = {
    "add_connection", "replace_key", "remove_connection", "set_active", "retest_connection", "sync_connection",
    "import_file", "create_token", "revoke_token", "create_budget", "update_budget", "delete_budget",
    "save_rules", "import_rates_csv", "set_rate", "add_user", "set_role", "set_password", "remove_user",
    "authenticate", "record_sso_sign_in", "upsert_records", "ingest",
}  # fmt: skip


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.Module) -> set[str]:
    found = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return found | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_imports_nothing_from_sqlalchemy_and_never_holds_the_engine(page: Path) -> None:
    tree = _tree(page)
    assert not [m for m in _imported_modules(tree) if m.split(".")[0] == "sqlalchemy"]
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not attributes & {"engine", "_engine", "connect", "begin", "execute"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_writes_only_through_actions(page: Path) -> None:
    tree = _tree(page)
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not imported & WRITERS, f"{page.name} imports a write function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITERS:
            owner = node.func.value
            assert isinstance(owner, ast.Name) and owner.id == "actions", f"{page.name}: {ast.unparse(node.func)}"


def test_queries_holds_no_sql() -> None:
    tree = _tree(DASHBOARD / "queries.py")
    sqlalchemy = {m for m in _imported_modules(tree) if m.split(".")[0] == "sqlalchemy"}
    assert sqlalchemy == {"sqlalchemy.engine"}  # the Engine type of the cached engine, nothing else
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"select", "func", "text", "insert", "update", "delete"}


def test_connections_page_offers_the_provider_registry_by_name(dashboard_db) -> None:
    at = app("admin", "app_pages/connections.py")
    assert not at.exception, at.exception
    picker = next(s for s in at.selectbox if s.label == "Provider")
    assert picker.options == [display_name(p) for p in REGISTRY]
    assert picker.value == next(iter(REGISTRY))


def test_users_page_adds_changes_and_removes_accounts_through_actions(dashboard_db) -> None:
    at = app("admin", "app_pages/users.py")
    next(t for t in at.text_input if t.label == "Name (e-mail for SSO)").set_value("dora")
    next(s for s in at.selectbox if s.label == "Role").set_value("finance")
    next(b for b in at.button if b.label == "Add").click().run()
    assert not at.exception, at.exception
    assert "Added dora (finance)." in [s.value for s in at.success]
    password = at.code[0].value
    assert authenticate(queries.engine(), "dora", password).ok
    at.run()  # shown once; the table (read before the form) lists the account on the next run
    assert password not in rendered(at)
    assert "dora" in set(at.dataframe[0].value["name"])

    next(s for s in at.selectbox if s.label == "Account").set_value("dora")
    next(s for s in at.selectbox if s.label == "New role").set_value("viewer")
    next(b for b in at.button if b.label == "Set role").click().run()
    assert get_user(queries.engine(), "dora").role == "viewer"
    next(s for s in at.selectbox if s.label == "Account").set_value("admin")
    next(b for b in at.button if b.label == "Remove").click().run()
    assert "You cannot remove your own account while signed in with it." in [e.value for e in at.error]
    next(s for s in at.selectbox if s.label == "Account").set_value("dora")
    next(b for b in at.button if b.label == "Remove").click().run()
    assert get_user(queries.engine(), "dora") is None
