"""A known admin key goes through add / test / sync / fail / rotate; it must surface nowhere."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from collector.app import app
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from collector.sync.engine import sync_connection
from tests.conftest import create_database

KEY = "sk-admin-test-LeakCanary7Qx9Zr4Wm2T"  # dummy; the fake server echoes it in its 401 message
CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"


def _bytes_contain(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_plaintext_key_appears_in_no_file_log_message_run_record_cassette_or_output(fake_api, caplog):
    create_database()
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    outputs: list[str] = []
    errors: list[str] = []

    def cli(*args: str, key: str | None = None, ok: bool = True) -> None:
        result = runner.invoke(app, list(args), input=(key + "\n") if key else None)
        outputs.append(result.output)
        assert (result.exit_code == 0) is ok, result.output
        if result.exception and not isinstance(result.exception, SystemExit):
            errors.append(repr(result.exception))

    cli("connections", "add", "openai", "--label", "prod", "--base-url", fake_api.base_url, key=KEY)
    cli("connections", "test", "1")
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    cli("connections", "sync", "1", "--since", since, "--endpoint", "completions", "--endpoint", "costs")
    fake_api.api.faults.auth_fail = True  # the key is revoked: the provider's 401 message echoes it
    cli("connections", "test", "1", ok=False)
    cli("connections", "sync", "1", ok=False)
    summary = sync_connection(open_database(get_settings()), get_settings(), 1)
    errors += [summary.error, *(e.error for e in summary.endpoints)]
    assert summary.auth_failed and "Incorrect API key provided" in summary.error
    fake_api.api.faults.auth_fail = False
    cli("connections", "set-key", "1", key=KEY)
    cli("secrets", "new")
    cli("secrets", "rotate")
    cli("connections", "list")
    cli("connections", "add", "openai", "--label", "dup", "--skip-test", key=KEY + "x")  # another key, stored too

    engine = open_database(get_settings())
    with engine.connect() as db:
        runs = [tuple(r) for r in db.execute(text("SELECT * FROM sync_runs")).all()]
        conns = [tuple(r) for r in db.execute(text("SELECT * FROM connections")).all()]
    engine.dispose()
    assert any("Incorrect API key provided" in str(r) for r in runs)  # the failure was recorded ...
    needle = KEY[len("sk-admin-") :]  # ... but not the key, nor its secret part on its own
    haystacks = {
        "CLI output": "\n".join(outputs),
        "logs": caplog.text,
        "exception messages": "\n".join(errors),
        "sync_runs rows": repr(runs),
        "connections rows": repr(conns),
    }
    for where, text_ in haystacks.items():
        assert needle not in text_, f"the key leaked into {where}"
    assert "sk-admin…7Qx" in haystacks["CLI output"] or "sk-admin…" in haystacks["CLI output"]
    data_dir = get_settings().data_dir
    assert (data_dir / "usage.db").exists()
    assert _bytes_contain(data_dir, needle.encode()) == []  # the SQLite file, its WAL, the secret file
    assert CASSETTES.is_dir() and _bytes_contain(CASSETTES, needle.encode()) == []
    assert _bytes_contain(CASSETTES, b"sk-admin-") == [] and _bytes_contain(CASSETTES, b"sk-ant-admin") == []


def test_cloud_credentials_appear_in_no_file_log_run_record_or_output(cloud, caplog, tmp_path):
    """Each cloud credential shape goes through add / test / sync / revoke / set-key / rotate / list."""
    import json

    from tests.cloud.helpers import CLOUD, connection, secrets_of

    caplog.set_level(logging.DEBUG)
    create_database()
    runner = CliRunner()
    outputs: list[str] = []

    def cli(*args: str, stdin: str | None = None, ok: bool = True) -> None:
        result = runner.invoke(app, list(args), input=stdin)
        outputs.append(result.output)
        assert (result.exit_code == 0) is ok, result.output

    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    for i, provider in enumerate(CLOUD, start=1):
        spec = connection(provider, cloud.url, cloud.authority_url)
        sets = [arg for k, v in spec["options"].items() for arg in ("--set", f"{k}={v}")]
        args = ["connections", "add", provider, "--label", provider, "--base-url", spec["base_url"], *sets]
        if provider == "google":  # the service-account key file itself
            key_file = tmp_path / "sa.json"
            key_file.write_text(json.loads(spec["key"])["service_account_json"])
            cli(*args, "--credential-file", str(key_file))
        else:  # a JSON object of the parts on stdin (or the one key)
            cli(*args, stdin=spec["key"] + "\n")
        cli("connections", "test", str(i))
        cli("connections", "sync", str(i), "--since", since)
        cloud.api.revoked.add(provider.split("_")[0])
        cli("connections", "test", str(i), ok=False)
        cli("connections", "sync", str(i), ok=False)
        cloud.api.revoked.clear()
        if provider == "google":
            cli("connections", "set-key", str(i), "--credential-file", str(key_file))
        else:
            cli("connections", "set-key", str(i), stdin=spec["key"] + "\n")
    cli("secrets", "new")
    cli("secrets", "rotate")
    cli("connections", "list")
    assert "re-encrypted 5 stored key(s)" in "\n".join(outputs)

    engine = open_database(get_settings())
    with engine.connect() as db:
        runs = [tuple(r) for r in db.execute(text("SELECT * FROM sync_runs")).all()]
        conns = [tuple(r) for r in db.execute(text("SELECT * FROM connections")).all()]
    engine.dispose()
    assert any(r for r in runs if "failed" in r)  # the revoked syncs were recorded
    haystacks = {
        "CLI output": "\n".join(outputs),
        "logs": caplog.text,
        "sync_runs rows": repr(runs),
        "connections rows": repr(conns),
    }
    data_dir = get_settings().data_dir
    for provider in CLOUD:
        for secret in secrets_of(provider):
            for where, text_ in haystacks.items():
                assert secret not in text_, f"a {provider} secret leaked into {where}"
            assert _bytes_contain(data_dir, secret.encode()) == [], provider
            assert _bytes_contain(CASSETTES, secret.encode()) == [], provider
    assert "scope=subscriptions/" in haystacks["CLI output"]  # plain settings are shown, secrets are not
