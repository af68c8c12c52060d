"""Errors, cut connections, client disconnects, attribution tokens, /metrics and /healthz."""

import gc
import socket
import time

import anthropic
import httpx
import openai
import pytest

from collector.proxy import forward
from collector.proxy.app import GC_THRESHOLD, ProxyApp
from collector.proxy.forward import Forwarder
from collector.proxy.metrics import ProxyMetrics
from collector.proxy.spool import SpoolBusyError
from collector.proxy.tokens import create_token, revoke_token
from tests.fakes.upstream import OPENAI_USAGE, ServerThread
from tests.proxy.conftest import KEY, PROMPT_MARKER, events, proxy_settings, start_sidecar

MESSAGES = [{"role": "user", "content": f"hi {PROMPT_MARKER}"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}


@pytest.fixture
def side(fake, sqlite_engine):
    side = start_sidecar(proxy_settings(fake[1].url), sqlite_engine)
    yield side
    side.server.stop()


def test_upstream_error_reaches_the_client_as_sent_and_is_recorded(fake, side, sqlite_engine):
    _, upstream = fake
    seen = []
    for base in (f"{upstream.url}/v1", f"{side.url}/openai/v1"):
        client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(**CHAT, extra_headers={"x-fake-status": "429"})
        seen.append((err.value.status_code, err.value.body))
    assert seen[0] == seen[1]
    side.flush(1)
    (row,) = events(sqlite_engine)
    assert (row["status"], row["error"], row["usage_known"], row["basis"]) == (429, "http_429", False, "unpriced")
    assert row["model"] == ""  # an error count without a model: the request body is the caller's word, not usage


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_refused_upstream_gives_502_naming_it(sqlite_engine):
    side = start_sidecar(proxy_settings(f"http://127.0.0.1:{closed_port()}"), sqlite_engine)
    try:
        r = httpx.post(f"{side.url}/openai/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {KEY}"})
        side.flush(1)
    finally:
        side.server.stop()
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["upstream"] == "openai" and "openai" in error["message"] and error["type"] == "upstream_unreachable"
    (row,) = events(sqlite_engine)
    assert (row["status"], row["error"]) == (502, "upstream_unreachable")


def test_upstream_timeout_mid_stream_drops_the_client_and_is_recorded(fake, sqlite_engine):
    side = start_sidecar(proxy_settings(fake[1].url, proxy_upstream_timeout_seconds=0.3), sqlite_engine)
    try:
        with pytest.raises(httpx.RemoteProtocolError), httpx.Client() as c:
            body = {**CHAT, "stream": True}
            with c.stream(
                "POST", f"{side.url}/openai/v1/chat/completions", json=body, headers={"x-fake-first-ms": "1500"}
            ) as r:
                r.read()
        side.flush(1)
    finally:
        side.server.stop()
    (row,) = events(sqlite_engine)
    assert (row["error"], row["partial"], row["status"]) == ("upstream_timeout", True, 200)


@pytest.mark.parametrize("stream", [True, False])
def test_cut_upstream_connection_reaches_the_client_and_is_recorded_partial(fake, side, sqlite_engine, stream):
    client = openai.OpenAI(base_url=f"{side.url}/openai/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        reply = client.chat.completions.create(**CHAT, stream=stream, extra_headers={"x-fake-cut-after": "2"})
        if stream:
            list(reply)
    side.flush(1)
    (row,) = events(sqlite_engine)
    assert (row["error"], row["partial"], row["usage_known"]) == ("upstream_cut", True, False)


def test_client_disconnect_cancels_upstream_and_records_partial_usage(fake, side, sqlite_engine):
    app, _ = fake
    client = anthropic.Anthropic(base_url=f"{side.url}/anthropic", api_key=KEY, max_retries=0)
    headers = {"x-fake-chunks": "30", "x-fake-interval-ms": "50", "x-fake-tag": "gone"}
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=9, messages=MESSAGES, extra_headers=headers) as s:
        for i, _ in enumerate(s):
            if i == 4:
                break
    side.flush(1)
    deadline = time.monotonic() + 3
    while "gone" not in app.disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "gone" in app.disconnected  # the upstream saw the cancellation and stopped
    assert len(app.sent["gone"]) < 20
    (row,) = events(sqlite_engine)
    assert (row["error"], row["partial"], row["stream"], row["client_gone"]) == (
        "client_disconnected",
        True,
        True,
        True,
    )
    # message_start had arrived: input and cache counts are known, output only provisionally.
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (100, 30, 1)


def test_client_that_gives_up_waiting_is_recorded_with_the_full_usage_and_flagged(fake, side, sqlite_engine):
    app, _ = fake
    headers = {"x-fake-first-ms": "1500", "x-fake-tag": "abandoned", "authorization": f"Bearer {KEY}"}
    with pytest.raises(httpx.ReadTimeout):  # the client's timeout: it closes its connection
        httpx.post(f"{side.url}/openai/v1/chat/completions", json=CHAT, headers=headers, timeout=0.3)
    side.flush(1)
    assert app.sent["abandoned"]  # the upstream still answered (and would bill) ...
    (row,) = events(sqlite_engine)  # ... and what it returned is recorded, flagged
    assert (row["client_gone"], row["partial"], row["error"], row["status"]) == (
        True,
        False,
        "client_disconnected",
        200,
    )
    assert (row["usage_known"], row["input_tokens"], row["output_tokens"]) == (True, OPENAI_USAGE[0], OPENAI_USAGE[2])
    assert row["basis"] == "estimated"


def test_quick_calls_are_not_flagged(fake, side, sqlite_engine):
    for stream in (False, True):
        r = httpx.post(f"{side.url}/openai/v1/chat/completions", json={**CHAT, "stream": stream})
        assert r.status_code == 200
    side.flush(2)
    assert [(r["client_gone"], r["error"]) for r in events(sqlite_engine)] == [(False, ""), (False, "")]


# uvicorn ends a server whose start-up failed with SystemExit(3), here in its thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_second_sidecar_on_the_same_spool_folder_refuses_to_start(fake, side, sqlite_engine):
    second = ProxyApp(side.settings, engine=sqlite_engine)
    server = ServerThread(second)
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()  # it would delete the first one's journal segments
    server.sock.close()
    with pytest.raises(SpoolBusyError, match="LLM_USAGE_PROXY_SPOOL_DIR"):
        second.spool.open()
    assert httpx.post(f"{side.url}/openai/v1/chat/completions", json=CHAT).status_code == 200  # the first serves on
    side.flush(1)
    assert len(events(sqlite_engine)) == 1


def test_monitor_token_attributes_calls_is_stripped_and_revocable(fake, sqlite_engine):
    app, upstream = fake
    token_id, token = create_token(sqlite_engine, team="search", project="ranker")
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    try:
        client = openai.OpenAI(base_url=f"{side.url}/openai/v1", api_key=KEY, max_retries=0)
        client.chat.completions.create(**CHAT, extra_headers={"X-Monitor-Token": token})
        assert "x-monitor-token" not in app.requests[-1]["headers"]
        assert app.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"  # the caller's key goes upstream
        assert revoke_token(sqlite_engine, token_id)
        side.app._reload_tokens(sqlite_engine)
        client.chat.completions.create(**CHAT, extra_headers={"X-Monitor-Token": token})
        client.chat.completions.create(**CHAT, extra_headers={"X-Monitor-Token": "mt_forged"})
        side.flush(3)
    finally:
        side.server.stop()
    first, revoked, forged = events(sqlite_engine)
    assert (first["team"], first["project"], first["token_id"]) == ("search", "ranker", token_id)
    assert (revoked["team"], revoked["token_id"]) == ("", 0)
    assert (forged["team"], forged["status"]) == ("", 200)  # never blocks traffic
    assert first["api_key_fp"] == revoked["api_key_fp"] != ""


def test_metrics_and_healthz(fake, side):
    client = openai.OpenAI(base_url=f"{side.url}/openai/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT, extra_headers={"x-fake-status": "429"})
    side.flush(2)
    text = httpx.get(f"{side.url}/metrics").text
    assert 'llm_proxy_requests_total{status="2xx",upstream="openai"} 1.0' in text
    assert 'llm_proxy_requests_total{status="4xx",upstream="openai"} 1.0' in text
    assert 'llm_proxy_errors_total{kind="http_429",upstream="openai"} 1.0' in text
    assert 'llm_proxy_request_duration_seconds_count{upstream="openai"} 2.0' in text
    assert "llm_proxy_queue_depth 0.0" in text and "llm_proxy_spool_bytes 0.0" in text
    health = httpx.get(f"{side.url}/healthz").json()
    assert (health["status"], health["database"], health["queue_depth"]) == ("ok", "up", 0)
    assert OPENAI_USAGE  # the fake's usage constants are importable for the bench


@pytest.mark.parametrize("fast", [True, False])
def test_an_upstream_url_with_credentials_sends_them_on_either_transport(fake, sqlite_engine, fast):
    """Such a URL skips the direct path, so httpx still turns its userinfo into Basic auth."""
    app, upstream = fake
    host = upstream.url.removeprefix("http://")
    settings = proxy_settings(
        upstream.url, proxy_fast_transport=fast, proxy_upstreams={"cred": f"http://u:pw@{host}/v1"}
    )
    side = start_sidecar(settings, sqlite_engine)
    try:
        r = httpx.post(f"{side.url}/u/cred/v1/chat/completions", json=CHAT)
        assert r.status_code == 200
        side.flush(1)
    finally:
        side.server.stop()
    assert app.requests[-1]["headers"]["authorization"] == "Basic dTpwdw=="  # base64 of "u:pw"
    assert len(events(sqlite_engine)) == 1


def test_cycle_collector_thresholds_are_raised_while_serving_and_restored_after(fake, sqlite_engine):
    before = gc.get_threshold()
    side = start_sidecar(proxy_settings(fake[1].url), sqlite_engine)
    try:
        assert gc.get_threshold() == GC_THRESHOLD
        assert httpx.post(f"{side.url}/openai/v1/chat/completions", json=CHAT).status_code == 200
        side.flush(1)
    finally:
        side.server.stop()
    assert gc.get_threshold() == before
    assert len(events(sqlite_engine)) == 1


def test_metrics_count_each_call_under_its_own_labels():
    """Label children are kept per (upstream, status class, error): each call still lands on its own."""
    metrics = ProxyMetrics(lambda: 0.0, lambda: 0.0)
    for upstream, status, error in [
        ("openai", 200, ""), ("openai", 502, "upstream_timeout"), ("openai", 502, "upstream_unreachable"),
        ("openai", 200, ""), ("groq", 200, "client_disconnected"), ("openai", 0, "upstream_cut"),
    ]:  # fmt: skip
        metrics.observe(upstream, status, 0.002, 0.001 if status else 0.0, error)
    text = metrics.render().decode()
    assert 'llm_proxy_requests_total{status="2xx",upstream="openai"} 2.0' in text
    assert 'llm_proxy_requests_total{status="5xx",upstream="openai"} 2.0' in text
    assert 'llm_proxy_requests_total{status="none",upstream="openai"} 1.0' in text
    assert 'llm_proxy_requests_total{status="2xx",upstream="groq"} 1.0' in text
    assert 'llm_proxy_errors_total{kind="upstream_timeout",upstream="openai"} 1.0' in text
    assert 'llm_proxy_errors_total{kind="upstream_unreachable",upstream="openai"} 1.0' in text
    assert 'llm_proxy_errors_total{kind="client_disconnected",upstream="groq"} 1.0' in text
    assert 'llm_proxy_request_duration_seconds_count{upstream="openai"} 5.0' in text
    assert 'llm_proxy_time_to_first_byte_seconds_count{upstream="openai"} 4.0' in text


@pytest.mark.parametrize("fast", [True, False])
def test_both_transports_forward_and_never_share_cookies_between_callers(fake, sqlite_engine, fast):
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_fast_transport=fast), sqlite_engine)
    try:
        url = f"{side.url}/openai/v1/chat/completions"
        first = httpx.post(url, json=CHAT, headers={"x-fake-set-cookie": "1"})
        assert first.headers["set-cookie"].startswith("session=")  # the caller gets its cookie ...
        with httpx.Client() as other:
            second = other.post(url, json={**CHAT, "stream": True})
        assert "cookie" not in app.requests[-1]["headers"]  # ... and the next caller's request carries none
        assert second.status_code == 200 and b"[DONE]" in second.content
        side.flush(2)
    finally:
        side.server.stop()
    assert [r["usage_known"] for r in events(sqlite_engine)] == [True, True]


def test_large_request_body_is_streamed_upstream(fake, side, sqlite_engine):
    app, _ = fake
    big = {"model": "text-embedding-3-small", "input": ["x" * 1000] * 5000}  # ~5 MB: not read whole
    r = httpx.post(f"{side.url}/openai/v1/embeddings", json=big, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200 and len(r.json()["data"]) == 5000
    assert len(app.requests[-1]["body"]) > 5_000_000
    side.flush(1)
    (row,) = events(sqlite_engine)
    assert (row["model"], row["input_tokens"], row["usage_known"]) == ("text-embedding-3-small", OPENAI_USAGE[0], True)


def test_sidecar_starts_and_serves_while_the_database_is_unreachable(fake, tmp_path):
    from tests.proxy.test_traffic import closed_port as _closed

    settings = proxy_settings(fake[1].url, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{_closed()}/test")
    side = start_sidecar(settings, None)
    try:
        r = httpx.post(f"{side.url}/openai/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200
        side.flush(1)
        health = httpx.get(f"{side.url}/healthz").json()
        assert health["database"] == "down" and health["spool_bytes"] > 0
    finally:
        side.server.stop()
    spooled = "".join(p.read_text() for p in side.app.spool.folder.glob("*.jsonl"))
    assert spooled.count("\n") == 1  # kept for replay when the database is back


def test_upstream_urls_are_parsed_once_per_path_and_never_kept_with_a_query(monkeypatch):
    client = httpx.AsyncClient()  # only its URL cache and the client's timeouts are used
    forwarder = Forwarder(client, None, None, dict, None)  # type: ignore[arg-type]
    url = "http://upstream.test/v1/chat/completions"
    first = forwarder._url(url, b"")
    assert isinstance(first, httpx.URL) and str(first) == url
    assert forwarder._url(url, None) is first  # parsed once
    with_key = forwarder._url("http://upstream.test/v1beta/models", b"key=sk-secret")
    assert with_key == "http://upstream.test/v1beta/models?key=sk-secret"
    assert list(forwarder._urls) == [url]  # a URL with a query string (a key, perhaps) is never kept
    monkeypatch.setattr(forward, "URL_CACHE_SIZE", 2)
    for path in ("a", "b", "c"):
        forwarder._url(f"http://upstream.test/v1/files/{path}", None)
    # Full at "b" (the chat URL and "a"): emptied, then "b" and "c" kept; never more than 2.
    assert list(forwarder._urls) == ["http://upstream.test/v1/files/b", "http://upstream.test/v1/files/c"]
