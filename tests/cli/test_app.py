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
from sqlalchemy import func, select
from typer.testing import CliRunner

from collector.app import app
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


def test_demo_writes_labelled_rows_to_a_separate_database(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["demo", "--days", "2", "--rows-per-hour", "5", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "DEMO DATA" in result.output
    demo = open_database(url=f"sqlite:///{tmp_path / 'demo.db'}")
    with demo.connect() as conn:
        rows, accounts = conn.execute(select(func.count(), func.count(USAGE.c.account.distinct()))).one()
        account = conn.execute(select(USAGE.c.account).limit(1)).scalar_one()
    assert rows > 50 and accounts == 1 and account == "demo"
    assert not (tmp_path / "usage.db").exists()  # the real database is untouched
    # the demo database has its own admin, whose generated password was printed once
    assert "user:     admin" in result.output and "password: " in result.output
    from collector.auth.users import list_users

    assert [u.name for u in list_users(demo)] == ["admin"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_dashboard_and_ctrl_c_stops_everything(tmp_path):
    port = _free_port()
    env = {**os.environ, "LLM_USAGE_DATA_DIR": str(tmp_path), "LLM_USAGE_DASHBOARD_PORT": str(port)}
    cli = Path(sys.executable).parent / "llm-usage"
    proc = subprocess.Popen([str(cli), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert "scheduler ready" in text
    assert proc.returncode is not None
    with socket.socket() as s:  # the dashboard's port is free again: streamlit stopped too
        s.bind(("127.0.0.1", port))
