"""``llm-usage otel`` and ``llm-usage metrics`` as real processes, the scheduler job, and the sidecar mount."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text as sa_text
from typer.testing import CliRunner

from collector.app import SCHEDULER_JOBS, app, build_scheduler
from collector.cli.proxy import sidecar_extras
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from collector.otel.rollup import install_rollup
from collector.proxy.app import ProxyApp
from tests.fakes.upstream import ServerThread
from tests.otel.conftest import PROTOBUF, events, hour, span, traces_body

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "llm-usage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    return out


def test_commands_are_listed_and_the_rollup_is_scheduled():
    help_text = runner.invoke(app, ["--help"]).output
    assert "otel" in help_text and "metrics" in help_text
    settings = get_settings()
    scheduler = build_scheduler(open_database(settings), settings)
    assert "otel:rollup" in {job.id for job in scheduler.get_jobs()}
    assert install_rollup in SCHEDULER_JOBS


def test_otel_command_receives_then_rollup_now_and_report(tmp_path):
    port = free_port()
    data_dir = Path(get_settings().data_dir)
    env = {**os.environ, "LLM_USAGE_DATA_DIR": str(data_dir), "LLM_USAGE_OTEL_BEARER_TOKEN": "tok-123"}
    proc = subprocess.Popen(
        [CLI, "otel", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        body = traces_body([span(1, hour(9)), span(2, hour(9))], service="billing")
        headers = {**PROTOBUF, "authorization": "Bearer tok-123"}
        assert httpx.post(f"{url}/v1/traces", content=body, headers=headers).status_code == 200
        assert "llm_otel_events_written_total" in httpx.get(f"{url}/metrics").text
    finally:
        output = stop(proc)
    assert "/v1/traces" in output and "tok-123" not in output
    rolled = subprocess.run([CLI, "otel", "--rollup-now"], env=env, capture_output=True, text=True, check=True)
    assert "1 usage row(s) written" in rolled.stdout
    shown = subprocess.run(
        [CLI, "report", "--source", "otel", "--by", "project", "--since", "7d", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = json.loads(shown.stdout)
    assert (row["project"], row["section"], row["input_tokens"], row["requests"]) == ("billing", "otel", 200, 2)


def test_metrics_command_serves_prometheus_text(tmp_path):
    port = free_port()
    env = {**os.environ, "LLM_USAGE_DATA_DIR": str(get_settings().data_dir)}
    proc = subprocess.Popen(
        [CLI, "metrics", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        r = httpx.get(f"{url}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"llm_usage_cost", "llm_usage_tokens", "llm_usage_budget_spent", "llm_usage_metrics_part_ok"} <= names
    finally:
        stop(proc)


def test_the_sidecar_can_serve_the_receiver_and_spend_metrics(sqlite_engine, sqlite_url):
    settings = get_settings().model_copy(
        update={"database_url": sqlite_url, "proxy_otel": True, "proxy_spend_metrics": True}
    )
    extras = sidecar_extras(settings)
    server = ServerThread(ProxyApp(settings, engine=sqlite_engine, retry_seconds=0.2, **extras)).start()
    try:
        body = traces_body([span(1, hour(9))], service="sidecar-app")
        assert httpx.post(f"{server.url}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        text = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"llm_proxy_requests", "llm_otel_events_written", "llm_usage_cost"} <= names
    assert [e["project"] for e in events(sqlite_engine)] == ["sidecar-app"]
    ((_, job),) = extras["extra_periodic"]  # what the sidecar's writer thread runs every interval
    job(sqlite_engine)  # (the writer may have run it already at start: either way, once)
    job(sqlite_engine)
    with sqlite_engine.connect() as conn:
        rows = conn.execute(sa_text("SELECT project, input_tokens, requests FROM usage WHERE source = 'otel'")).all()
    assert rows == [("sidecar-app", 100, 1)]
