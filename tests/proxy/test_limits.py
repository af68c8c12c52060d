"""Rate limits per monitor token and budget caps: the proxy says no, in each provider's own words.

Real sidecars on uvicorn, the fake upstream on loopback, and for the shared counters a private
``redis-server`` started for the test on a free port (so it can be stopped mid-test without
touching anyone else's Redis). The limiter's clock is injected: a window never ends mid-test
and no test sleeps.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import openai
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from collector.core.pricing import estimate_request
from collector.finance.budgets import create_budget
from collector.finance.caps import enforced_caps, lift
from collector.proxy.tokens import create_token, set_limits
from tests.fakes.upstream import OPENAI_USAGE
from tests.proxy.conftest import KEY, Sidecar, events, proxy_settings, start_sidecar

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
GEMINI = {"contents": [{"parts": [{"text": "hi"}]}]}
T0 = 1_764_000_000.0  # a minute boundary; the tests' clock stays inside one window unless moved


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 5

    def __call__(self) -> float:
        return self.now


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server on a free loopback port (skipped where Redis is not installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    import redis

    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:  # readiness, not a timing assumption: ping until it answers
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("redis-server did not start")
    client.close()
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait(10)


def _sidecar(upstream_url: str, engine, tmp_path, name: str, clock: Clock, **settings: object) -> Sidecar:  # type: ignore[no-untyped-def]
    s = proxy_settings(upstream_url, proxy_spool_dir=tmp_path / name, **settings)
    return start_sidecar(s, engine, clock=clock, cap_loader=enforced_caps)


def _token(engine, team: str = "team-a", *, rpm: int = 0, tpm: int = 0) -> str:  # type: ignore[no-untyped-def]
    token_id, token = create_token(engine, team=team, project="p1")
    set_limits(engine, token_id, rpm=rpm, tpm=tpm)
    return token


def _chat(c: httpx.Client, base: str, token: str) -> httpx.Response:
    return c.post(f"{base}/openai/v1/chat/completions", json=CHAT, headers={"x-monitor-token": token})


def test_each_provider_gets_its_own_429_shape_with_retry_after(fake, sqlite_engine, tmp_path):
    _, upstream = fake
    token = _token(sqlite_engine, rpm=1)
    clock = Clock()
    side = _sidecar(upstream.url, sqlite_engine, tmp_path, "a", clock)
    try:
        with httpx.Client(base_url=side.url, timeout=10) as c:
            auth = {"x-monitor-token": token, "authorization": f"Bearer {KEY}"}
            assert c.post("/openai/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
            anth = c.post("/anthropic/v1/messages", json=MESSAGES, headers=auth)
            goog = c.post("/google/v1beta/models/gemini-2.5-flash:generateContent", json=GEMINI, headers=auth)
            other = c.get("/healthz")  # not proxied: never limited
            metrics = c.get("/metrics").text
        sdk = openai.OpenAI(
            base_url=f"{side.url}/openai/v1", api_key=KEY, max_retries=0, default_headers={"x-monitor-token": token}
        )
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(**CHAT)
        side.flush(1)
    finally:
        side.server.stop()
    assert other.status_code == 200
    assert anth.status_code == 429 and anth.json()["type"] == "error"
    assert (
        anth.json()["error"]["type"] == "rate_limit_error"
        and "1 requests per minute" in anth.json()["error"]["message"]
    )
    assert goog.status_code == 429 and goog.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert goog.json()["error"]["code"] == 429
    body = refused.value.response.json()["error"]
    assert (body["type"], body["code"]) == ("requests", "rate_limit_exceeded")
    # Retry-After: the seconds left in the current minute (the clock is 5 s into it).
    assert {
        anth.headers["retry-after"],
        goog.headers["retry-after"],
        refused.value.response.headers["retry-after"],
    } == {"55"}
    assert len(events(sqlite_engine)) == 1  # refusals are never usage
    assert 'llm_proxy_refusals_total{kind="rate_requests",upstream="google"} 1.0' in metrics
    with sqlite_engine.connect() as conn:
        kinds = conn.execute(text("SELECT kind, upstream, team FROM proxy_refusals ORDER BY id")).all()
    assert [tuple(k) for k in kinds] == [
        ("rate_requests", "anthropic", "team-a"),
        ("rate_requests", "google", "team-a"),
        ("rate_requests", "openai", "team-a"),
    ]


@pytest.mark.parametrize("store", ["local", "redis"])
def test_tokens_per_minute_count_recorded_usage(fake, sqlite_engine, tmp_path, request, store):
    _, upstream = fake
    per_call = OPENAI_USAGE[0] + OPENAI_USAGE[2]  # input + output
    token = _token(sqlite_engine, tpm=2 * per_call)  # the third call starts at exactly the limit
    limited_not = _token(sqlite_engine)  # no limits: never refused
    clock = Clock()
    # In Redis a call's tokens ride along with the token's next check (no extra round trip).
    extra = {"redis_url": SecretStr(request.getfixturevalue("redis_server")[0])} if store == "redis" else {}
    side = _sidecar(upstream.url, sqlite_engine, tmp_path, "a", clock, **extra)
    try:
        with httpx.Client(timeout=10) as c:
            codes = [_chat(c, side.url, token).status_code for _ in range(3)]
            free = [_chat(c, side.url, limited_not).status_code for _ in range(5)]
            clock.now += 60  # the next minute
            codes.append(_chat(c, side.url, token).status_code)
    finally:
        side.server.stop()
    assert codes == [200, 200, 429, 200] and free == [200] * 5


def test_limit_60_per_minute_holds_across_two_replicas_sharing_redis(fake, sqlite_engine, tmp_path, redis_server):
    _, upstream = fake
    url, _ = redis_server
    token = _token(sqlite_engine, rpm=60)
    clock = Clock()
    extra = {"redis_url": SecretStr(url), "redis_key_prefix": f"t-{uuid.uuid4().hex[:8]}:"}
    a = _sidecar(upstream.url, sqlite_engine, tmp_path, "a", clock, **extra)
    b = _sidecar(upstream.url, sqlite_engine, tmp_path, "b", clock, **extra)
    try:
        with httpx.Client(timeout=10) as c:
            codes = [_chat(c, (a, b)[i % 2].url, token).status_code for i in range(70)]
            clock.now += 50  # still the same minute
            later = _chat(c, b.url, token)
            clock.now += 10  # the next minute: a fresh window on both replicas
            fresh = [_chat(c, side.url, token).status_code for side in (a, b)]
    finally:
        a.server.stop()
        b.server.stop()
    assert codes == [200] * 60 + [429] * 10
    assert later.status_code == 429 and later.headers["retry-after"] == "5"
    assert fresh == [200, 200]


def test_redis_stopped_mid_test_fails_open_and_counts_the_fallback(fake, sqlite_engine, tmp_path, redis_server, caplog):
    _, upstream = fake
    url, proc = redis_server
    token = _token(sqlite_engine, rpm=2)
    clock = Clock()
    side = _sidecar(upstream.url, sqlite_engine, tmp_path, "a", clock, redis_url=SecretStr(url))
    try:
        with httpx.Client(timeout=10) as c:
            before = [_chat(c, side.url, token).status_code for _ in range(3)]
            proc.kill()
            proc.wait(10)
            after = [_chat(c, side.url, token).status_code for _ in range(5)]
            metrics = c.get(f"{side.url}/metrics").text
    finally:
        side.server.stop()
    assert before == [200, 200, 429]
    assert after == [200] * 5  # the limit store is down: traffic continues
    assert "llm_proxy_limit_store_fallbacks_total 5.0" in metrics
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_budget_cap_refuses_from_the_first_call_after_the_crossing_one_and_can_be_lifted(fake, sqlite_engine, tmp_path):
    _, upstream = fake
    prompt, cached, completion, _ = OPENAI_USAGE
    per_call = estimate_request(
        "openai",
        "gpt-4o-mini-2024-07-18",
        datetime.now(UTC),
        input_tokens=prompt,
        cache_read_tokens=cached,
        output_tokens=completion,
    )
    assert per_call is not None and per_call > 0
    amount = per_call * Decimal("2.5")  # the third call crosses it
    bid = create_budget(
        sqlite_engine, name="team-a cap", scope="team", scope_value="team-a", amount=amount, allow_unknown=True,
        enforce=True,
    )  # fmt: skip
    token, other_team = _token(sqlite_engine), _token(sqlite_engine, "team-b")
    side = _sidecar(upstream.url, sqlite_engine, tmp_path, "a", Clock(), proxy_budget_refresh_seconds=3600)
    try:
        with httpx.Client(timeout=10) as c:
            codes = []
            for n in range(1, 4):
                codes.append(_chat(c, side.url, token).status_code)
                side.flush(n)  # the call is recorded (and its cost added to the cap) before the next
            refused = _chat(c, side.url, token)
            codes.append(refused.status_code)
            unaffected = _chat(c, side.url, other_team).status_code
            anonymous = c.post(f"{side.url}/openai/v1/chat/completions", json=CHAT).status_code
            lift(sqlite_engine, bid)
            side.app.gate.refresh(sqlite_engine)  # what the writer's periodic job does
            lifted = _chat(c, side.url, token).status_code
            metrics = c.get(f"{side.url}/metrics").text
        side.flush(6)
    finally:
        side.server.stop()
    assert codes == [200, 200, 200, 403]
    assert refused.status_code == 403 and "team-a cap" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert (unaffected, anonymous, lifted) == (200, 200, 200)
    assert len(events(sqlite_engine)) == 6  # 3 + team-b + anonymous + lifted; refusals are not usage
    assert 'llm_proxy_refusals_total{kind="budget",upstream="openai"} 1.0' in metrics
    with sqlite_engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, budget_id, budget_name FROM proxy_refusals")).all()
    assert [tuple(r) for r in rows] == [("budget", bid, "team-a cap")]
