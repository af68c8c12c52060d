"""``llm-usage tokens`` and ``llm-usage proxy`` (a real process, stopped with Ctrl-C)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text
from typer.testing import CliRunner

from collector.app import SCHEDULER_JOBS, app, build_scheduler
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from collector.proxy.rollup import install_rollup
from tests.conftest import create_database
from tests.proxy.conftest import KEY

runner = CliRunner()


def test_tokens_create_list_revoke():
    create_database()
    created = runner.invoke(app, ["tokens", "create", "--team", "search", "--project", "ranker", "--label", "ci"])
    assert created.exit_code == 0, created.output
    token = created.output.splitlines()[1]
    assert token.startswith("mt_") and len(token) > 30
    listed = runner.invoke(app, ["tokens", "list"])
    assert "team='search'" in listed.output and "active" in listed.output
    assert token not in listed.output  # only a hint
    engine = open_database()
    with engine.connect() as conn:
        stored = " ".join(map(str, conn.execute(text("SELECT * FROM monitor_tokens")).one()))
    assert token not in stored  # only the hash
    assert runner.invoke(app, ["tokens", "revoke", "1"]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["tokens", "list"]).output
    again = runner.invoke(app, ["tokens", "revoke", "1"])
    assert again.exit_code == 1
    missing_team = runner.invoke(app, ["tokens", "create", "--team", " "])
    assert missing_team.exit_code != 0 and "team" in missing_team.output


def test_run_schedules_the_hourly_proxy_rollup():

    settings = get_settings()
    scheduler = build_scheduler(open_database(settings), settings)
    assert "proxy:rollup" in {job.id for job in scheduler.get_jobs()}
    assert install_rollup in SCHEDULER_JOBS


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_proxy_command_serves_and_drains_on_ctrl_c(fake):
    _, upstream = fake
    port = free_port()
    data_dir = Path(get_settings().data_dir)
    env = {
        **os.environ,
        "LLM_USAGE_DATA_DIR": str(data_dir),
        "LLM_USAGE_PROXY_OPENAI_URL": f"{upstream.url}/v1",
        "LLM_USAGE_PROXY_UPSTREAMS": f'{{"local": "{upstream.url}/v1"}}',
        "LLM_USAGE_PROXY_BATCH_INTERVAL_SECONDS": "30",  # only the shutdown drain can write the event
    }
    cmd = [str(Path(sys.executable).parent / "llm-usage"), "proxy", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        r = httpx.post(
            f"http://127.0.0.1:{port}/u/local/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": []},
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "/u/local/v1 ->" in output
    assert KEY not in output
    engine = open_database(url=f"sqlite:///{data_dir / 'usage.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT provider, status FROM proxy_events")).all() == [("local", 200)]
    assert (data_dir / "proxy-salt").stat().st_mode & 0o777 == 0o600


def test_proxy_rollup_rolls_up_now_and_runs_the_after_ingest_hooks(monkeypatch):
    from datetime import UTC, datetime

    from collector import app as application
    from collector.proxy.recorder import insert_events
    from tests.proxy.test_recorder_rollup import make_event

    engine = create_database()
    hour = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    insert_events(engine, [make_event(hour), make_event(hour), make_event(hour, team="ads")])
    ran = []
    monkeypatch.setattr(application, "AFTER_INGEST", (lambda engine, settings: ran.append(engine.url),))

    done = runner.invoke(app, ["proxy", "rollup"])
    assert done.exit_code == 0, done.output
    assert "proxy: 3 calls rolled up into 2 usage rows" in done.output
    assert "otlp: 0 usage rows written" in done.output
    assert len(ran) == 1  # budgets and anomalies see the new rows at once
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT team, requests FROM usage WHERE source = 'proxy' ORDER BY team")).all()
    assert [tuple(r) for r in rows] == [("ads", 1), ("search", 2)]

    again = runner.invoke(app, ["proxy", "rollup"])
    assert "proxy: 0 calls rolled up into 0 usage rows" in again.output
    assert len(ran) == 1  # nothing new, no hooks


def test_proxy_rollup_refuses_a_database_that_does_not_exist():
    done = runner.invoke(app, ["proxy", "rollup"])
    assert done.exit_code == 1 and "no database at" in done.output


def test_tokens_limit_and_budget_caps_from_the_cli():
    from collector.finance.budgets import get_budget
    from collector.proxy.tokens import load_active

    create_database()
    assert runner.invoke(app, ["tokens", "create", "--team", "search"]).exit_code == 0
    limited = runner.invoke(app, ["tokens", "limit", "1", "--rpm", "60", "--tpm", "100000"])
    assert limited.exit_code == 0, limited.output
    assert "rpm=60/min tpm=100000/min" in runner.invoke(app, ["tokens", "list"]).output
    engine = open_database()
    (info,) = load_active(engine).values()
    assert (info.rpm_limit, info.tpm_limit) == (60, 100000)
    assert runner.invoke(app, ["tokens", "limit", "1"]).exit_code == 2  # nothing to set
    assert runner.invoke(app, ["tokens", "limit", "9", "--rpm", "1"]).exit_code == 1
    added = runner.invoke(
        app, ["budgets", "add", "--name", "cap", "--amount", "10", "--scope", "team", "--value", "search",
              "--allow-unknown", "--enforce"],
    )  # fmt: skip
    assert added.exit_code == 0 and "enforced by the proxy" in added.output, added.output
    assert get_budget(engine, 1).enforce
    lifted = runner.invoke(app, ["budgets", "lift", "1"])
    assert lifted.exit_code == 0 and "lifted until" in lifted.output
    assert get_budget(engine, 1).lifted_until is not None
    assert runner.invoke(app, ["budgets", "enforce", "1"]).exit_code == 0  # enforcing again clears the lift
    assert get_budget(engine, 1).lifted_until is None
    assert runner.invoke(app, ["budgets", "enforce", "1", "--off"]).exit_code == 0
    assert not get_budget(engine, 1).enforce
    assert runner.invoke(app, ["budgets", "lift", "1"]).exit_code != 0  # not enforced: nothing to lift
    account = runner.invoke(
        app, ["budgets", "add", "--name", "a", "--amount", "5", "--scope", "account", "--value", "x",
              "--allow-unknown", "--enforce"],
    )  # fmt: skip
    assert account.exit_code != 0 and "cannot be enforced" in account.output
