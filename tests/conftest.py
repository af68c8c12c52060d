"""Shared fixtures: clean settings, and real databases (a SQLite file and PostgreSQL).

PostgreSQL tests read ``LLM_USAGE_TEST_DATABASE_URL`` (``.ci/run`` sets it). Each test gets a
schema of its own in that database, so parallel sessions and helpers never see each other's
rows; without the variable those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from collector.auth.throttle import default_throttle
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from tests.fakes.admin_api import FakeAdminAPI, ServerThread

PG_ENV = "LLM_USAGE_TEST_DATABASE_URL"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No developer ``.env`` or ``LLM_USAGE_*`` variable leaks into a test; data goes to a tmp dir."""
    for name in list(os.environ):
        if name.startswith("LLM_USAGE_") and name != PG_ENV:
            monkeypatch.delenv(name)
    data_dir = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("LLM_USAGE_DATA_DIR", str(data_dir))
    monkeypatch.chdir(data_dir)  # so no stray .env in the checkout is read
    get_settings.cache_clear()
    default_throttle.cache_clear()  # sign-in limits are per process: each test starts afresh
    yield
    get_settings.cache_clear()
    default_throttle.cache_clear()


def postgres_base_url() -> str | None:
    """The PostgreSQL URL from the environment, or None."""
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema in the test PostgreSQL database."""
    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (make test via .ci/run does)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {PG_ENV} not reachable: {type(exc).__name__}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A SQLite file URL in the test's tmp dir."""
    return f"sqlite:///{tmp_path / 'usage.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend."""
    eng = open_database(url=db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated engine on a SQLite file only (for tests that need no PostgreSQL twin)."""
    eng = open_database(url=sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def fake_api() -> Iterator[ServerThread]:
    """A fresh fake OpenAI + Anthropic admin API (4 groups per bucket) on 127.0.0.1 for one test."""
    server = ServerThread(FakeAdminAPI(groups=4)).start()
    yield server
    server.stop()


def create_database() -> Engine:
    """What ``llm-usage run`` / ``db upgrade`` does first: create and migrate the configured database.

    Other commands refuse a SQLite path that does not exist, so command-line tests that start from
    an empty data folder create it the way a person would.
    """
    get_settings.cache_clear()
    return open_database(get_settings())


@pytest.fixture
def cloud(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Fake OpenRouter, xAI, AWS, Azure (with a TLS authority) and BigQuery on 127.0.0.1.

    The bills cover the previous calendar month and this month up to today (so "a month" and
    the last 30 days both exist); azure-identity trusts the fake authority's CA
    through ``REQUESTS_CA_BUNDLE`` (requests' own variable; the product reads no environment).
    """
    from datetime import UTC, datetime, timedelta

    from tests.fakes.cloud_api import CloudFakes
    from tests.fakes.cloud_bills import Bills

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    fakes = CloudFakes(Bills(first, (today - first).days), tmp_path_factory.mktemp("tls")).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fakes.ca_file)
    yield fakes
    fakes.stop()
