"""A seeded database for the dashboard tests, and AppTest helpers.

The seed is small and hand-made so every total a page shows can be checked to the cent:
"now" is pinned to 2026-11-20 15:00 UTC through :func:`dashboard.queries.as_of` (the pages'
one clock), and the expected figures are worked out in the comments below. Everything besides
the usage rows goes in through the features' own APIs (users, a connection with an encrypted
dummy key, a budget), so the pages read the real migrated tables.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from streamlit.testing.v1 import AppTest

from collector.auth import users
from collector.auth.users import add_user
from collector.core.schema import UsageRecord
from collector.core.settings import Settings, get_settings
from collector.core.store import upsert_records
from collector.db.migrate import open_database
from collector.finance import budgets
from collector.sync.connections import add_connection, mark_status
from collector.sync.vault import Vault, load_vault
from dashboard import queries

APP = Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py"
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
PASSWORD = "dashboard test password"
#: A dummy admin key stored (encrypted) as connection ``prod``: no page may ever render it.
DUMMY_KEY = "sk-admin-test-Zq8Lw3Vd9Tx4Pn7Rk2Hj5"
#: The vault secret of this test session (``LLM_USAGE_SECRET_KEYS``), made fresh per run.
SECRET_KEYS = Fernet.generate_key().decode()
H = timedelta(hours=1)
D = timedelta(days=1)

# Expected figures (preferred basis: billed where a billed row covers the provider account and day):
#   this month (Nov 1-20): openai 10.00 (20th) + 20.00 (19th) + 6.25 billed on the 5th (replaces the
#   5.50 estimate) + anthropic 3.20 (20th) + 4.80 (13th) + google 100.00 billed (12th) = 144.25
#   today (20th): 10.00 + 3.20 = 13.20;  same days last month (Oct 1-20): 7.00 + 1.00 = 8.00
#   the proxy row (9.99) is never added; the unpriced row has tokens only.
# Month-end projection (collector/finance/forecast.py's method, worked by hand): history is the 41
#   complete days Oct 10 .. Nov 19 (total 139.05; every weekday seen at least 5 times), so weekday
#   factors = weekday mean / 139.05 * 41: Thu 126.25/6 -> 6.2043, Fri 4.80/5 -> 0.2831, Sat 7/6 ->
#   0.3440, Tue 1/6 -> 0.0491, Mon/Wed/Sun 0 -> 0.01. Level = mean of the last 14 deseasonalised days
#   (Nov 6-19: 100/6.2043 + 4.80/0.2831 + 20/6.2043) / 14 = 2.5928. Remaining Nov 20-30 factors sum
#   to 7.5576, so projected = 131.05 (Nov 1-19) + 2.5928 x 7.5576 = 150.65 (above the 144.25 spent).
MTD = "$144.25"
TODAY = "$13.20"
PREV = "$8.00"
PROJECTED = "$150.65"


def _rec(provider: str, account: str, start: datetime, cost: str | None, **kw) -> UsageRecord:
    daily = kw.pop("daily", False)
    basis = kw.pop("basis", "estimated" if cost is not None else "unpriced")
    return UsageRecord(
        provider=provider,
        account=account,
        source=kw.pop("source", "api"),
        kind=kw.pop("kind", "completions"),
        bucket_start=start,
        bucket_end=start + (D if daily else H),
        cost=Decimal(cost) if cost is not None else None,
        currency="USD" if cost is not None else "",
        basis=basis,
        price_version="test-prices" if basis == "estimated" else "",
        **kw,
    )


def seed_records() -> list[UsageRecord]:
    """The hand-made seed behind the expected figures above."""
    nov = lambda day, hour=10: datetime(2026, 11, day, hour, tzinfo=UTC)  # noqa: E731
    oct_ = lambda day, hour=10: datetime(2026, 10, day, hour, tzinfo=UTC)  # noqa: E731
    tok = {"input_tokens": 1000, "cache_read_tokens": 400, "output_tokens": 200, "requests": 4}
    return [
        _rec("openai", "org-a", nov(20), "10.00", model="gpt-4o", project="proj_search", team="search", **tok),
        _rec("openai", "org-a", nov(19), "20.00", model="gpt-4o-mini", project="proj_bot", team="support", **tok),
        _rec("openai", "org-a", nov(5), "5.50", model="gpt-4o", project="proj_search", team="search", **tok),
        _rec("openai", "org-a", nov(5, 0), "6.25", kind="costs", basis="billed", daily=True, line_item="gpt-4o, input"),
        _rec("openai", "org-a", oct_(10), "7.00", model="gpt-4o", project="proj_search", **tok),
        _rec(
            "anthropic", "org-b", nov(20), "3.20", kind="messages", model="claude-sonnet-4-5", project="proj_bot", **tok
        ),
        _rec("anthropic", "org-b", nov(13), "4.80", kind="messages", model="claude-sonnet-4-5", **tok),
        _rec("anthropic", "org-b", oct_(20), "1.00", kind="messages", model="claude-sonnet-4-5", **tok),
        _rec(
            "google",
            "billing-1",
            nov(12, 0),
            "100.00",
            source="csv",
            kind="gcp_billing",
            basis="billed",
            daily=True,
            model="gemini-2.5-pro",
            input_tokens=50_000,
            output_tokens=5_000,
        ),
        _rec("openai", "org-a", nov(18), None, model="mystery-model", input_tokens=5000),
        _rec(
            "openai",
            "org-a",
            nov(20, 11),
            "9.99",
            source="proxy",
            kind="proxy",
            model="gpt-4o",
            team="search",
            project="proj_search",
            input_tokens=900,
            output_tokens=100,
            requests=3,
        ),
    ]


def seed(url: str) -> None:
    """Write the seed, the three role accounts, a failing connection and a budget.

    The connection goes through :func:`collector.sync.connections.add_connection` (untested, so no
    provider is called) and its failure through ``mark_status``, as a sync would record a 401
    whose message quoted the key.
    """
    engine = open_database(url=url)
    upsert_records(engine, seed_records())
    for role in ("viewer", "finance", "admin"):
        add_user(engine, role, role, PASSWORD)
    settings = Settings(secret_keys=SECRET_KEYS)
    conn = add_connection(
        engine, settings, load_vault(settings), provider="openai", label="prod", key=DUMMY_KEY, test=False
    )
    assert conn.id is not None
    mark_status(engine, conn.id, "failing", f"401 from provider for key {DUMMY_KEY}")
    budgets.create_budget(engine, name="All LLM", scope="all", amount="200")
    engine.dispose()


def vault() -> Vault:
    """The test session's vault (the same secret the dashboard reads from the environment)."""
    return load_vault(Settings(secret_keys=SECRET_KEYS))


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    """The seeded SQLite file, built once (argon2 hashing of the accounts is slow on purpose)."""
    path = tmp_path_factory.mktemp("seed") / "dashboard.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(users, "_HASHER", QUICK_HASHER)
        seed(f"sqlite:///{path}")
    return path


@pytest.fixture
def dashboard_db(tmp_path, monkeypatch, seeded_template) -> Iterator[str]:
    """A fresh copy of the seeded SQLite file, read by the dashboard; "now" is :data:`NOW`."""
    path = tmp_path / "dashboard.db"
    shutil.copyfile(seeded_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", url)
    monkeypatch.setenv("LLM_USAGE_SECRET_KEYS", SECRET_KEYS)
    get_settings.cache_clear()
    monkeypatch.setattr(queries, "as_of", lambda: NOW)
    st.cache_data.clear()
    yield url
    st.cache_data.clear()


def app(user: str | None = None, page: str | None = None, **query: str) -> AppTest:
    """Run the app, signed in as ``user`` (a seeded account name), optionally on ``page``."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    if user:
        at.session_state["auth_user"] = user
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def texts(at: AppTest) -> str:
    """Everything a person reads on the page, as one string."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error", "success", "code", "json"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(parts)


#: Cheaper argon2id parameters for tests: the same algorithm and code path, less memory and time.
#: Production keeps argon2-cffi's defaults (RFC 9106: t=3, m=64 MiB, p=4), about 0.7 s per hash on
#: this shared machine; ``test_production_parameters_follow_rfc_9106`` checks them.
QUICK_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PRODUCTION_HASHER = users._HASHER


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch):
    """Every dashboard test hashes with :data:`QUICK_HASHER`."""
    monkeypatch.setattr(users, "_HASHER", QUICK_HASHER)


def rendered(at: AppTest) -> str:
    """:func:`texts` plus every table's cells and every JSON block: all a page sends to the browser."""
    return "\n".join([texts(at), *(df.value.to_csv() for df in at.dataframe)])


def proxy_event(ts: datetime, latency_ms: float, status: int = 200, error: str = "") -> dict:
    """One event as the proxy's request path builds it (collector/proxy/recorder.py ``EVENT_KEYS``)."""
    from collector.proxy.recorder import EVENT_KEYS, new_event_id

    event: dict = dict.fromkeys(EVENT_KEYS, "")
    event.update({k: 0 for k in EVENT_KEYS if k.endswith(("_tokens", "_ms")) or k == "token_id"})
    event.update(
        id=new_event_id(), ts=ts.timestamp(), provider="openai", upstream="openai", endpoint="chat/completions",
        method="POST", model="gpt-4o", status=status, stream=False, partial=bool(error), usage_known=True,
        client_gone=error == "client_disconnected",
        error=error, input_tokens=100, output_tokens=10, latency_ms=latency_ms, team="search",
        project="proj_search",
    )  # fmt: skip
    return event
