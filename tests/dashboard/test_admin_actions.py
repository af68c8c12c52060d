"""Admin buttons through a stand-in for issue 3's connection API (the seam the pages call).

``collector.connections`` arrives with another branch; the stand-in records the calls, and its
test function fails with the provider's message quoting the key, as a careless provider module
might: the page must still never show the key.
"""

import sys
import types

from tests.dashboard.conftest import DUMMY_KEY, app, texts


def _install(monkeypatch, calls):
    module = types.ModuleType("collector.connections")

    def sync_connection(engine, ident):
        calls.append(("sync", ident))
        return f"connection {ident}: 42 rows"

    def test_connection(engine, ident):
        calls.append(("test", ident))
        raise RuntimeError(f"401 Unauthorized for key {DUMMY_KEY}")

    def disable_connection(engine, ident):
        calls.append(("disable", ident))

    module.sync_connection = sync_connection
    module.test_connection = test_connection
    module.disable_connection = disable_connection
    monkeypatch.setitem(sys.modules, "collector.connections", module)


def test_sync_now_and_test_buttons(dashboard_db, monkeypatch):
    calls = []
    _install(monkeypatch, calls)
    at = app("admin", "app_pages/health.py")
    at.button(key="sync_now").click().run()
    assert calls == [("sync", 1)]
    assert "sync finished: connection 1: 42 rows" in texts(at)
    at.button(key="test_conn").click().run()
    assert calls[-1] == ("test", 1)
    body = texts(at)
    assert "test failed: RuntimeError: 401 Unauthorized for key sk-admi…" in body
    assert DUMMY_KEY not in body


def test_connections_page_offers_only_the_actions_installed(dashboard_db, monkeypatch):
    calls = []
    _install(monkeypatch, calls)
    at = app("admin", "app_pages/connections.py")
    labels = {b.label for b in at.button}
    assert {"Test", "Disable"} <= labels and "Remove" not in labels
    at.button(key="conn_Disable").click().run()
    assert calls == [("disable", 1)]
    assert not at.exception
