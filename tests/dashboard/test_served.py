"""The dashboard as ``llm-usage run`` serves it: loopback by default, anti-framing headers, no error details."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.app import dashboard_command
from collector.core.settings import Settings
from tests.dashboard.conftest import SECRET_KEYS

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_command_binds_loopback_and_hides_error_details_by_default():
    cmd = dashboard_command(Settings())
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert cmd[4].endswith("dashboard/server.py")
    assert flags["--server.address"] == "127.0.0.1" and flags["--client.showErrorDetails"] == "none"
    assert dashboard_command(Settings(dashboard_host="0.0.0.0"))[6] == "0.0.0.0"


@pytest.fixture
def served(dashboard_db, tmp_path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_USAGE_")}
    env.update(LLM_USAGE_DATABASE_URL=dashboard_db, LLM_USAGE_DATA_DIR=str(tmp_path), LLM_USAGE_SECRET_KEYS=SECRET_KEYS)
    cmd = [*dashboard_command(Settings(dashboard_port=port)), "--server.fileWatcherType", "none"]
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "streamlit.log").read_text()
            time.sleep(0.3)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _listening(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        table = Path(f"/proc/net/{name}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_served_pages_carry_anti_framing_headers_and_listen_on_loopback_only(served):
    url, port = served
    for path in ("/", "/_stcore/health", "/budgets?day=garbage"):
        headers = httpx.get(url + path, timeout=10).headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert headers["x-content-type-options"] == "nosniff", path
    addresses = _listening(port)
    if not addresses:
        pytest.skip("no /proc/net/tcp to read listening addresses from")
    assert addresses == {"0100007F"}  # 127.0.0.1, nothing else
