"""The ``llm-usage`` command: help, db upgrade, demo, and ``run`` serving the dashboard."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from collector.app import app
from collector.core.settings import get_settings
from collector.core.store import USAGE
from collector.db.migrate import head_revision, open_database

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("db", "run", "demo", "scheduler"):
        assert command in result.output


def test_db_upgrade_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATA_DIR", str(tmp_path))
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"upgraded to {head_revision()}" in first.output
    second = runner.invoke(app, ["db", "upgrade"])
    assert f"already at {head_revision()}" in second.output
    assert (tmp_path / "usage.db").exists()


def test_demo_ends_now_and_shows_what_the_product_is_for(tmp_path, monkeypatch):
    """The demo is rebuilt on every run, ends at the current hour, and has a bill beside the estimate,
    proxy traffic, a budget near its threshold, team rules and one real anomaly."""
    from datetime import UTC, datetime, timedelta

    from collector.auth.users import list_users
    from collector.finance.anomaly import find_anomalies
    from collector.finance.budgets import anomaly_params, list_budgets
    from collector.finance.chargeback import load_rules
    from collector.query.report import Filters, report

    monkeypatch.setenv("LLM_USAGE_DATA_DIR", str(tmp_path))
    before = datetime.now(UTC)
    result = runner.invoke(app, ["demo", "--days", "40", "--rows-per-hour", "12", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "DEMO DATA (not real spend)" in result.output
    demo = open_database(url=f"sqlite:///{tmp_path / 'demo.db'}")
    with demo.connect() as conn:
        accounts = conn.execute(select(USAGE.c.account.distinct()).where(USAGE.c.source != "proxy")).scalars().all()
        newest = conn.execute(select(func.max(USAGE.c.bucket_start))).scalar_one()
    assert accounts == ["demo"] and not (tmp_path / "usage.db").exists()  # the real database is untouched
    assert before - timedelta(hours=2) <= newest <= before  # history ends at the current hour
    week = Filters(before - timedelta(days=7), before + timedelta(hours=1), sources=("api", "csv", "proxy"))
    rep = report(demo, week, by=("provider",))
    billed = {r.dims["provider"] for r in rep.rows if r.basis == "billed" and "api:costs" in r.sources}
    assert "openai" in billed and any("api:cost_report" in r.sources for r in rep.rows)  # a bill to reconcile
    assert rep.proxy_totals()  # proxy traffic for part of one account
    (all_spend, team) = list_budgets(demo)
    assert all_spend.scope == "all" and team.scope == "team"
    assert load_rules(demo).rules  # a chargeback rule set
    yesterday = before.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    found = find_anomalies(demo, since=yesterday, until=yesterday + timedelta(days=1), scopes=["project"],
                           params=anomaly_params(get_settings()))  # fmt: skip
    assert found, "the demo's spike yesterday is an anomaly"
    assert "user:     admin" in result.output and [u.name for u in list_users(demo)] == ["admin"]
    # A second run rebuilds it from scratch (the same rows, not twice as many).
    again = runner.invoke(app, ["demo", "--days", "40", "--rows-per-hour", "12", "--no-serve"])
    assert again.exit_code == 0, again.output
    assert report(open_database(url=f"sqlite:///{tmp_path / 'demo.db'}"), week).totals() == rep.totals()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_serves_dashboard_and_a_stop_signal_stops_everything(tmp_path, stop):
    """Ctrl-C and SIGTERM (systemd, ``docker stop``, ``kill``) stop the scheduler and the dashboard child."""
    port = _free_port()
    env = {**os.environ, "LLM_USAGE_DATA_DIR": str(tmp_path), "LLM_USAGE_DASHBOARD_PORT": str(port)}
    cli = Path(sys.executable).parent / "llm-usage"
    log = tmp_path / "run.log"  # a file, not a pipe: nothing the two processes print can fill a buffer and block them
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(cli), "run"], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        ok = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                break
            time.sleep(0.5)
        assert ok, "dashboard did not answer on its port"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        proc.send_signal(stop)
        try:
            proc.wait(timeout=60)  # generous on a loaded machine: the check is that it stops at all
        except subprocess.TimeoutExpired:
            pytest.fail(f"run did not stop; its last output:\n{log.read_text(errors='replace')[-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "scheduler ready" in text and "stopping" in text
    assert proc.returncode == 0
    with socket.socket() as s:  # the dashboard's port is free again: streamlit stopped too
        s.bind(("127.0.0.1", port))


def test_version_prints_and_exits_zero():
    from collector import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_a_mistyped_sqlite_path_is_refused_not_created(tmp_path, monkeypatch):
    missing = tmp_path / "typo" / "usgae.db"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{missing}")
    get_settings.cache_clear()
    for command in (["report"], ["status"], ["connections", "list"], ["budgets", "list"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert f"no database at {missing}" in result.output and "db upgrade" in result.output
    assert not missing.exists() and not missing.parent.exists()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0  # creating one is explicit
    assert missing.exists() and runner.invoke(app, ["report"]).exit_code == 0


def test_every_listing_has_a_json_format():
    """Scripts read listings as JSON: connections, users, budgets, alerts, tokens and imports."""
    import json

    from tests.conftest import create_database

    create_database()
    assert runner.invoke(app, ["budgets", "add", "--name", "all", "--amount", "10"]).exit_code == 0
    assert runner.invoke(app, ["tokens", "create", "--team", "search"]).exit_code == 0
    for command in (["connections", "list"], ["users", "list"], ["budgets", "list"], ["alerts", "list"],
                    ["tokens", "list"], ["imports", "list"]):  # fmt: skip
        result = runner.invoke(app, [*command, "--format", "json"])
        assert result.exit_code == 0, (command, result.output)
        assert isinstance(json.loads(result.output), list), command
    budgets = json.loads(runner.invoke(app, ["budgets", "list", "--format", "json"]).output)
    assert budgets[0]["name"] == "all" and budgets[0]["amount"] == "10" and budgets[0]["thresholds"] == [50, 80, 100]
    tokens = json.loads(runner.invoke(app, ["tokens", "list", "--format", "json"]).output)
    assert tokens[0]["team"] == "search" and set(tokens[0]) >= {"hint", "created_at"} and "hash" not in tokens[0]
    bad = runner.invoke(app, ["budgets", "list", "--format", "yaml"])
    assert bad.exit_code == 2 and "--format: 'yaml' is not one of table, json" in bad.output


def test_windows_are_spelled_alike_and_bad_arguments_exit_2(tmp_path):
    """``--since``/``--until`` everywhere, ``--until`` naming a day that is included; bad arguments exit 2."""
    from tests.conftest import create_database

    create_database()
    out = tmp_path / "e.csv"
    ok = runner.invoke(app, ["export", "--format", "csv", "--since", "2026-10", "--until", "2026-10", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    old = runner.invoke(app, ["export", "--format", "csv", "--from", "2026-10", "--to", "2026-10", "-o", str(out)])
    assert old.exit_code == 0, old.output  # the earlier spelling still works
    for command in (
        ["export", "--since", "2026-11-02", "--until", "2026-11-01"],  # inverted window
        ["report", "--since", "2026-11-02", "--until", "2026-11-01"],
        ["anomalies", "--since", "not-a-day"],
        ["connections", "sync", "1", "--since", "yesterdayy"],
        ["budgets", "add", "--name", "x", "--amount", "-5"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.exit_code, result.output)
        assert result.output.startswith("error: ") or "error: " in result.output, command
