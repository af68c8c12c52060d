"""The fake admin API's month, synced into a database through the real sync engine."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Engine

from collector.query.report import Filters
from collector.sync.connections import add_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from tests.fakes.admin_api import FakeAdminAPI, ServerThread
from tests.fakes.month import END, START, Month, generate
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings

WINDOW = Filters(since=START, until=END)


@lru_cache(maxsize=1)
def month() -> Month:
    """The generated month (deterministic; generated once per test process)."""
    return generate()


def load_month(engine: Engine, data_dir: Path) -> None:
    """Serve the month from a fake admin API and sync October through the real engine."""
    server = ServerThread(FakeAdminAPI(month=month())).start()
    try:
        settings = make_settings(data_dir)
        vault = load_vault(settings)
        for provider, key, label in (("openai", OPENAI_KEY, "prod"), ("anthropic", ANTHROPIC_KEY, "claude")):
            conn = add_connection(
                engine, settings, vault, provider=provider, label=label, key=key, base_url=server.base_url
            )
            assert conn.id is not None
            summary = sync_connection(engine, settings, conn.id, vault=vault, since=START, until=END)
            assert summary.ok, summary.error
    finally:
        server.stop()
