"""One full cycle, then a scan of everything the product wrote for every key and token used.

Sync (with a provider that echoes the admin key upper-cased in its 401), a CSV import, proxy
traffic with keys in headers *and* query strings (plain, streamed, failing, refused), exports in
every format, the dashboard's pages as an admin sees them. Then every file under the data folder
(the SQLite database, its WAL, the spool), the exports, the logs, the CLI output, the proxy's
``/metrics`` and ``/healthz`` and the pages' text must hold none of the secrets, in any case,
with or without their prefix.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
import streamlit as st
from argon2 import PasswordHasher
from typer.testing import CliRunner

from collector.app import app
from collector.auth import users
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from collector.proxy.rollup import rollup
from collector.proxy.tokens import create_token
from tests.fakes.upstream import FakeUpstream, ServerThread
from tests.proxy.conftest import proxy_settings, start_sidecar

pytestmark = pytest.mark.slow

ADMIN_KEY = "sk-admin-scan-Ad9Qm4Rt7Wx2Zp5K"  # dummies, each unique enough to grep for
ANTHROPIC_KEY = "sk-ant-admin01-scan-Bq8Ln3Vs6Yc1Hj4"
CALLER_KEY = "sk-proj-scan-Cw5Tg8Nk2Xf7Mr3D"
QUERY_KEY = "AIzaScanQueryKey-Dm6Pv9Jt4Ls1Qh8"
CSV = (
    b"date,provider,model,input_tokens,output_tokens,cost\n"
    b"2026-11-20,mistral,mistral-large-latest,1000,200,1.25\n"
    b"2026-11-21,xai,grok-4,500,50,-0.40\n"
)
PAGES = (
    "overview",
    "explore",
    "tokens",
    "reconciliation",
    "budgets",
    "proxy",
    "import_csv",
    "health",
    "connections",
    "users",
)


def spellings(secret: str) -> set[str]:
    """The secret, and its body without the ``sk-…-`` prefix, lower-cased (haystacks are too)."""
    body = secret
    for prefix in ("sk-admin-", "sk-ant-admin01-", "sk-proj-"):
        body = body.removeprefix(prefix)
    return {secret.lower(), body.lower()}


def test_no_key_or_token_reaches_anything_the_product_writes(fake_api, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    settings = get_settings()
    data_dir = Path(settings.data_dir)
    runner = CliRunner()
    out: list[str] = []

    def cli(*args: str, stdin: str | None = None) -> None:
        result = runner.invoke(app, list(args), input=stdin)
        out.append(result.output)

    cli("db", "upgrade")  # as a person starts: commands refuse a SQLite file that does not exist yet
    # -- sync: add, test, sync; the provider then refuses the key, echoing it upper-cased --------
    cli("connections", "add", "openai", "--label", "oa", "--base-url", fake_api.base_url, stdin=ADMIN_KEY + "\n")
    cli("connections", "add", "anthropic", "--label", "an", "--base-url", fake_api.base_url, stdin=ANTHROPIC_KEY + "\n")
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    cli("connections", "sync", "1", "--since", since, "--endpoint", "completions", "--endpoint", "costs")
    cli("connections", "sync", "2", "--since", since, "--endpoint", "messages")
    fake_api.api.faults.auth_fail, fake_api.api.faults.echo = True, "upper"
    cli("connections", "test", "1")
    cli("connections", "sync", "1")
    fake_api.api.faults.echo = "bare"
    cli("connections", "test", "1")
    cli("status")
    cli("connections", "list")

    # -- import ---------------------------------------------------------------------------------
    csv_path = tmp_path / "bill.csv"
    csv_path.write_bytes(CSV)
    cli("import", str(csv_path))

    # -- proxy traffic: keys in headers and query strings, a monitor token, failures --------------
    engine = open_database(settings)
    _, monitor = create_token(engine, team="search", project="ranker")
    upstream_app = FakeUpstream()
    with ServerThread(upstream_app) as upstream:
        side = start_sidecar(proxy_settings(upstream.url, data_dir=data_dir), engine)
        try:
            headers = {"x-monitor-token": monitor, "x-api-key": CALLER_KEY}
            client = openai.OpenAI(
                base_url=f"{side.url}/openai/v1", api_key=CALLER_KEY, max_retries=0, default_headers=headers
            )
            query = {"key": QUERY_KEY, "api_key": QUERY_KEY}
            client.chat.completions.create(model="gpt-4o-mini", messages=[], extra_query=query)
            list(client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True, extra_query=query))
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[], extra_query=query, extra_headers={"x-fake-status": "429"}
                )
            with httpx.Client(base_url=side.url, timeout=10) as c:
                c.get(f"/openai/v1/%2e%2e/{QUERY_KEY}", params=query, headers=headers)
                c.get(f"/u/{QUERY_KEY}/v1/models", params=query, headers=headers)
                metrics, health = c.get("/metrics").text, c.get("/healthz").text
            side.flush(3)
        finally:
            side.server.stop()
    rollup(engine)
    assert upstream_app.requests[0]["headers"]["authorization"] == f"Bearer {CALLER_KEY}"  # forwarded, not kept

    # -- exports --------------------------------------------------------------------------------
    exports = tmp_path / "exports"
    exports.mkdir()
    start, end = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d"), datetime.now(UTC).strftime("%Y-%m-%d")
    for fmt, suffix in (("focus", "csv"), ("parquet", "parquet"), ("csv", "csv")):
        cli("export", "--format", fmt, "--from", start, "--to", end, "-o", str(exports / f"out-{fmt}.{suffix}"))
    cli("report", "--since", start, "--until", end, "--by", "provider,model,api_key,team", "--format", "csv")
    cli("report", "--since", start, "--until", end, "--source", "proxy", "--by", "api_key,team", "--format", "json")

    # -- the dashboard, every page as an admin ----------------------------------------------------
    monkeypatch.setattr(users, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    users.add_user(engine, "admin", "admin", "a long enough password")
    st.cache_data.clear()
    pages = []
    from tests.dashboard.conftest import app as dashboard_app
    from tests.dashboard.conftest import rendered

    for page in PAGES:
        at = dashboard_app("admin", f"app_pages/{page}.py")
        assert not at.exception, (page, at.exception)
        pages.append(rendered(at))
    st.cache_data.clear()
    engine.dispose()

    # -- the scan -------------------------------------------------------------------------------
    assert any("Incorrect API key provided" in o for o in out)  # the echoed failures were recorded ...
    # The test's own clients (the OpenAI SDK and its HTTP library) log what *they* send; the
    # product's loggers are everything else.
    clients = ("openai", "anthropic", "httpx2", "httpcore2")
    product_logs = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith(clients)
    )
    texts = {
        "CLI output": "\n".join(out),
        "logs": product_logs,
        "proxy /metrics": metrics,
        "proxy /healthz": health,
        "dashboard pages": "\n".join(pages),
    }
    files = {
        str(p): p.read_bytes().decode("latin-1")
        for folder in (data_dir, exports)
        for p in folder.rglob("*")
        if p.is_file()
    }
    assert any(name.endswith("usage.db") for name in files) and len(list(exports.iterdir())) == 3
    secrets = {name: spellings(value) for name, value in {
        "OpenAI admin key": ADMIN_KEY,
        "Anthropic admin key": ANTHROPIC_KEY,
        "caller's API key": CALLER_KEY,
        "query-string key": QUERY_KEY,
        "monitor token": monitor,
    }.items()}  # fmt: skip
    leaks = [
        f"{secret} in {where}"
        for where, haystack in {**texts, **files}.items()
        for secret, variants in secrets.items()
        if any(v in haystack.lower() for v in variants)
    ]
    assert leaks == []  # ... but no key or token, in any spelling, anywhere
