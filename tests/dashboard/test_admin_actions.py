"""The admin buttons against the real connection, sync and vault code and the fake admin API.

The fake OpenAI admin API (tests/fakes/admin_api.py) runs on 127.0.0.1; like OpenAI, its 401
quotes the key it was sent, so the pages are checked never to show it (only ``sk-admi…``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from collector.core.settings import get_settings
from collector.core.store import USAGE
from collector.sync.connections import add_connection, get_connection, list_connections
from dashboard import queries
from tests.dashboard.conftest import DUMMY_KEY, app, rendered, texts, vault
from tests.fakes.admin_api import FakeAdminAPI, ServerThread

OTHER_KEY = "sk-admin-test-Rt5Vb8Nm2Qw4Ks7Lp9Xd3"


@pytest.fixture
def fake_api(dashboard_db, monkeypatch) -> Iterator[ServerThread]:
    """The fake admin API, and a one-day back-fill so a first sync stays small."""
    monkeypatch.setenv("LLM_USAGE_BACKFILL_DAYS", "1")
    get_settings.cache_clear()
    server = ServerThread(FakeAdminAPI(groups=1)).start()
    yield server
    server.stop()


def _local_connection(server: ServerThread) -> int:
    conn = add_connection(
        queries.engine(),
        get_settings(),
        vault(),
        provider="openai",
        label="local",
        key=DUMMY_KEY,
        base_url=server.base_url,
        test=False,
    )
    assert conn.id is not None
    return conn.id


def _usage_rows() -> int:
    with queries.engine().connect() as conn:
        return int(conn.execute(select(func.count()).select_from(USAGE)).scalar_one())


def test_sync_now_and_test_buttons(fake_api):
    ident = _local_connection(fake_api)
    before = _usage_rows()
    at = app("admin", "app_pages/health.py")
    at.selectbox(key="health_conn").set_value(ident).run()
    at.button(key="sync_now").click().run()
    assert not at.exception, at.exception
    body = texts(at)
    assert f"sync finished: connection {ident}: " in body, body
    assert _usage_rows() > before
    assert get_connection(queries.engine(), ident).last_synced_at is not None
    at.button(key="test_conn").click().run()
    assert f"test finished: connection {ident}: the key works" in texts(at)

    fake_api.api.faults.auth_fail = True  # the provider now refuses the key, quoting it
    at.button(key="test_conn").click().run()
    body = texts(at)
    # The provider quoted the key: the known key is masked whole.
    assert f"test failed: connection {ident}: " in body and "Incorrect API key provided: …." in body
    assert DUMMY_KEY not in body
    assert get_connection(queries.engine(), ident).status == "auth_failed"
    at.button(key="sync_now").click().run()
    assert "sync failed" in texts(at)  # shown above the redrawn tables: the failed runs, masked
    runs = next(df.value for df in at.dataframe if "endpoint" in df.value)
    failed = runs[(runs["connection_id"] == ident) & (runs["status"] == "failed")]
    assert not failed.empty and failed["error"].str.contains("Incorrect API key provided: …", regex=False).any()
    assert runs["started_at"].dt.tz is not None
    assert DUMMY_KEY not in rendered(at)


def test_connections_page_adds_tests_disables_and_removes(fake_api):
    at = app("admin", "app_pages/connections.py")
    fields = {t.label: t for t in at.text_input}
    fields["Label"].set_value("staging")
    fields["Admin key"].set_value(OTHER_KEY)
    fields["API base URL (optional)"].set_value(fake_api.base_url)
    next(b for b in at.button if b.label == "Test and add").click().run()
    assert not at.exception, at.exception
    assert "Added openai connection 'staging' (key sk-admin…Xd3" in texts(at)
    assert OTHER_KEY not in rendered(at)
    added = next(c for c in list_connections(queries.engine()) if c.label == "staging")
    assert added.status == "ok" and OTHER_KEY not in added.key_encrypted
    assert vault().decrypt(added.key_encrypted) == OTHER_KEY

    at.selectbox(key="conn_id").set_value(added.id).run()
    at.button(key="conn_toggle").click().run()
    assert get_connection(queries.engine(), added.id).active is False
    assert at.button(key="conn_toggle").label == "Enable"
    at.button(key="conn_remove").click().run()
    at.button(key="conn_remove_yes").click().run()
    assert [c.label for c in list_connections(queries.engine())] == ["prod"]
    assert "Removed" in texts(at)


def test_a_project_key_is_refused_with_guidance_and_never_shown(dashboard_db):
    project_key = "sk-proj-test-Hn4Kd8Wq2Zx6Tb9Mv3Lc7"
    at = app("admin", "app_pages/connections.py")
    fields = {t.label: t for t in at.text_input}
    fields["Label"].set_value("wrong")
    fields["Admin key"].set_value(project_key)
    next(b for b in at.button if b.label == "Test and add").click().run()
    body = rendered(at)
    assert "this is not an OpenAI admin key" in body
    assert project_key not in body
    assert [c.label for c in list_connections(queries.engine())] == ["prod"]


def test_connections_page_adds_a_cloud_credential_with_its_form_and_never_shows_the_secret(dashboard_db, cloud):
    from tests.cloud.helpers import AZURE_SECRET, connection

    spec = connection("azure_openai", cloud.url, cloud.authority_url)
    at = app("admin", "app_pages/connections.py")
    next(s for s in at.selectbox if s.label == "Provider").set_value("azure_openai").run()
    assert not any(t.label == "Admin key" for t in at.text_input)  # a service principal, not one key
    fields = {t.label: t for t in at.text_input}
    fields["Label"].set_value("azure")
    fields["Tenant id"].set_value("72f988bf-86f1-41af-91ab-2d7cd011db47")
    fields["Client id"].set_value("0b1f7c2e-5d4a-4e3b-9c8d-7a6b5c4d3e2f")
    fields["Client secret"].set_value(AZURE_SECRET)
    fields["Scope"].set_value(spec["options"]["scope"])
    fields["Authority (optional)"].set_value(cloud.authority_url)
    fields["Billing account id (optional)"].set_value("8611537")
    fields["API base URL (optional)"].set_value(spec["base_url"])
    next(b for b in at.button if b.label == "Test and add").click().run()
    assert not at.exception, at.exception
    body = texts(at)
    assert "Added azure_openai connection 'azure' (key client 0b1f7c2e…, secret …789, account 8611537)" in body, body
    assert AZURE_SECRET not in rendered(at)
    added = next(c for c in list_connections(queries.engine()) if c.label == "azure")
    assert added.status == "ok" and added.option_values["scope"] == spec["options"]["scope"]
    assert AZURE_SECRET in vault().decrypt(added.key_encrypted) and AZURE_SECRET not in added.key_encrypted
    assert cloud.api.requests["azure"] == 1  # the test call before saving
