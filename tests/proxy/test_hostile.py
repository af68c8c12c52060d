"""Hostile callers get nowhere: every finding of the security review, through a real uvicorn sidecar.

Paths are sent over raw sockets where an HTTP client would normalise them first (``..``,
percent-escapes); everything else goes through httpx or the official SDKs.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import tracemalloc

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from collector.proxy.forward import clean_model
from collector.proxy.rollup import rollup
from collector.proxy.tokens import create_token
from tests.fakes.upstream import FakeUpstream, ServerThread
from tests.proxy.conftest import KEY, events, proxy_settings, start_sidecar

SECRET_Q = "QUERYSECRET-5f2a9c"  # dummy key a caller puts in the query string
SECRET_H = "sk-HEADERSECRET-77b1e0d4"  # dummy key in a header
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def raw(url: str, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or ``timeout``)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data


def get(path: bytes) -> bytes:
    return (
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )


@pytest.fixture
def two_tenants(sqlite_engine):
    """Upstreams ``a`` and ``b`` on two fake servers, plus the built-in routes on ``a``'s."""
    a, b = FakeUpstream(), FakeUpstream()
    with ServerThread(a) as sa, ServerThread(b) as sb:
        settings = proxy_settings(sa.url, proxy_upstreams={"a": f"{sa.url}/v1", "b": f"{sb.url}/v1"})
        side = start_sidecar(settings, sqlite_engine)
        try:
            yield side, a, b
        finally:
            side.server.stop()


@pytest.mark.parametrize(
    "path",
    [
        b"/openai/v1/../../secret-admin",
        b"/openai/v1/%2e%2e/%2e%2e/secret-admin",
        b"/openai/v1/./models",
        b"/u/a/v1/../../b/v1/models",
        b"/u/a/v1/%2E%2E/%2e%2E/b/v1/models",
        b"/openai/v1/models%2fgpt-4o",
        b"/openai/v1/models%5c..%5cx",
        b"/openai/v1/models%3fx=1",
        b"/openai/v1/models%23frag",
        b"/openai/v1/models%0d%0aX-Injected:%201",
        b"/openai/v1/models%00",
    ],
)
def test_traversal_and_encoded_separators_get_400_and_reach_no_upstream(two_tenants, path):
    side, a, b = two_tenants
    answer = raw(side.url, get(path))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert json.loads(body)["error"]["type"] == "invalid_path"
    assert a.requests == [] and b.requests == []
    assert b"Traceback" not in answer


def test_a_clean_path_still_goes_through(two_tenants):
    side, a, b = two_tenants
    assert raw(side.url, get(b"/u/b/v1/models")).startswith(b"HTTP/1.1 200")
    assert [r["path"] for r in b.requests] == ["/v1/models"] and a.requests == []


def test_keys_in_query_strings_and_headers_reach_no_log_metric_event_or_error_body(fake, sqlite_engine, caplog):
    caplog.set_level(logging.DEBUG)
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    answers = []
    try:
        with httpx.Client(base_url=side.url, timeout=10) as c:
            headers = {"authorization": f"Bearer {SECRET_H}", "x-goog-api-key": SECRET_H}
            query = {"api_key": SECRET_Q, "key": SECRET_Q}
            answers.append(c.post("/openai/v1/chat/completions", params=query, json=CHAT, headers=headers))
            answers.append(c.post("/openai/v1/chat/completions", params=query, json={**CHAT, "stream": True}))
            failing = {**headers, "x-fake-status": "500"}
            answers.append(c.post("/openai/v1/chat/completions", params=query, json=CHAT, headers=failing))
            answers.append(c.get(f"/u/{SECRET_Q}/v1/models", params=query))
            answers.append(c.get("/openai/v1/%2e%2e/x", params=query))
            metrics = c.get("/metrics").text
            health = c.get("/healthz").text
        side.flush(3)
    finally:
        side.server.stop()
    assert [r.status_code for r in answers] == [200, 200, 500, 404, 400]
    assert app.requests[0]["headers"]["authorization"] == f"Bearer {SECRET_H}"  # forwarded, untouched
    with sqlite_engine.connect() as conn:
        stored = repr(conn.execute(text("SELECT * FROM proxy_events")).all())
    own_bodies = "".join(r.text for r in answers[3:])  # the sidecar's own error bodies
    for where, haystack in {"logs": caplog.text, "metrics": metrics, "healthz": health, "events": stored}.items():
        assert SECRET_Q not in haystack and SECRET_H not in haystack, f"a key reached the {where}"
    assert SECRET_Q not in own_bodies and SECRET_H not in own_bodies


def test_usage_rows_come_only_from_upstream_answers(fake, sqlite_engine):
    _, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    formula = '=HYPERLINK("http://evil.example","x")'
    try:
        with httpx.Client(base_url=side.url, timeout=10) as c:
            # No key, a junk model, failing calls, an invented endpoint: none may mint a model row.
            for i in range(5):
                c.post(
                    "/openai/v1/chat/completions",
                    json={**CHAT, "model": f"{formula}{i}"},
                    headers={"x-fake-status": "401"},
                )
            c.post(f"/openai/v1/{formula}/x", json={"model": formula})
            c.get("/openai/v1/models")
            ok = c.post("/openai/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {KEY}"})
        side.flush(8)
    finally:
        side.server.stop()
    assert ok.status_code == 200
    rows = events(sqlite_engine)
    assert {r["model"] for r in rows} == {"", "gpt-4o-mini-2024-07-18"}  # only what a response named
    assert {r["endpoint"] for r in rows} == {"chat.completions", "other", "models"}
    rollup(sqlite_engine)
    with sqlite_engine.connect() as conn:
        usage = conn.execute(text("SELECT model, variant, requests, details FROM usage WHERE source='proxy'")).all()
    assert all("=" not in (u.model + u.variant.removeprefix("endpoint=")) for u in usage)
    errors = sum(json.loads(u.details)["errors"] for u in usage)
    assert errors == 6 and len(usage) == 4  # failures are counted, one row per endpoint and model


def test_required_monitor_token_refuses_anonymous_calls_with_403_and_forwards_nothing(fake, sqlite_engine):
    app, upstream = fake
    _, token = create_token(sqlite_engine, team="search")
    side = start_sidecar(proxy_settings(upstream.url, proxy_require_monitor_token=True), sqlite_engine)
    try:
        with httpx.Client(base_url=side.url, timeout=10) as c:
            url = "/openai/v1/chat/completions"
            missing = c.post(url, json=CHAT, headers={"authorization": f"Bearer {KEY}"})
            forged = c.post(url, json=CHAT, headers={"x-monitor-token": "mt_forged"})
            assert app.requests == []
            good = c.post(url, json=CHAT, headers={"x-monitor-token": token})
            metrics = c.get("/metrics").text
        side.flush(1)
    finally:
        side.server.stop()
    assert (missing.status_code, forged.status_code, good.status_code) == (403, 403, 200)
    assert missing.json()["error"]["type"] == "monitor_token_required"
    assert len(app.requests) == 1 and "x-monitor-token" not in app.requests[0]["headers"]
    assert [r["team"] for r in events(sqlite_engine)] == ["search"]
    assert 'llm_proxy_errors_total{kind="monitor_token_required",upstream="openai"} 2.0' in metrics


@pytest.mark.parametrize("fast", [True, False])
def test_a_nested_stream_flag_is_not_the_request_s_and_headers_are_forwarded_exactly(fake, sqlite_engine, fast):
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_fast_transport=fast), sqlite_engine)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"properties": {"x": {"stream": True}}}}}
    body = json.dumps({**CHAT, "stream": False, "tools": [tool], "metadata": {"stream": True}}).encode()
    request = (
        b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Custom: kept\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body
    try:
        answer = raw(side.url, request)
    finally:
        side.server.stop()
    assert answer.startswith(b"HTTP/1.1 200") and b"content-encoding" not in answer.lower().split(b"\r\n\r\n")[0]
    forwarded = app.requests[-1]
    assert forwarded["body"] == body  # byte for byte: no stream_options spliced in
    sent = {k for k in forwarded["headers"] if k not in ("host", "content-length")}
    assert sent == {"content-type", "x-custom"}  # no Accept, Accept-Encoding or User-Agent of ours


def test_a_complete_stream_closed_by_the_client_at_done_is_not_partial(fake, sqlite_engine):
    """The OpenAI SDK closes the response at ``data: [DONE]``; the upstream's end may come later."""
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    try:
        client = openai.OpenAI(base_url=f"{side.url}/openai/v1", api_key=KEY, max_retries=0)
        for i in range(3):
            hold = {"x-fake-hold-end": "1", "x-fake-tag": f"held{i}"}
            chunks = list(client.chat.completions.create(**CHAT, stream=True, extra_headers=hold))
            assert chunks and all(c.usage is None for c in chunks)
        side.flush(3)
    finally:
        side.server.stop()
    rows = events(sqlite_engine)
    assert [(r["partial"], r["error"], r["usage_known"]) for r in rows] == [(False, "", True)] * 3
    assert {"held0", "held1", "held2"} <= app.disconnected  # the upstream's end had not been sent yet


def test_a_stream_cut_before_its_last_event_is_still_partial(fake, sqlite_engine):
    _, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    headers = {"x-fake-chunks": "40", "x-fake-interval-ms": "20", "x-fake-hold-end": "1", "x-fake-tag": "cut"}
    try:
        with (
            httpx.Client(timeout=10) as c,
            c.stream(
                "POST", f"{side.url}/openai/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
            ) as r,
        ):
            for _ in r.iter_raw():
                break
        side.flush(1)
    finally:
        side.server.stop()
    ((partial, error),) = [(r["partial"], r["error"]) for r in events(sqlite_engine)]
    assert (partial, error) == (True, "client_disconnected")


def test_healthz_and_404_name_no_url_or_credentials(sqlite_engine, fake):
    _, upstream = fake
    with_creds = upstream.url.replace("http://", "http://user:PASSW0RD-secret@") + "/v1"
    side = start_sidecar(proxy_settings(upstream.url, proxy_upstreams={"private": with_creds}), sqlite_engine)
    try:
        health = httpx.get(f"{side.url}/healthz").json()
        missing = httpx.get(f"{side.url}/u/nope/v1/models")
    finally:
        side.server.stop()
    assert health["upstreams"] == ["anthropic", "google", "openai", "private", "vertex"]
    assert "PASSW0RD" not in json.dumps(health) and "127.0.0.1" not in json.dumps(health)
    assert missing.status_code == 404 and "private" not in missing.text


def test_half_sent_headers_are_dropped_after_the_header_timeout(fake, sqlite_engine):
    _, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_header_timeout_seconds=0.3), sqlite_engine)
    host, port = side.url.removeprefix("http://").split(":")
    socks = []
    try:
        for _ in range(50):
            s = socket.create_connection((host, int(port)), timeout=15)
            s.sendall(b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
            socks.append(s)
        # recv() returns b"" once the server closed the connection; a socket timeout fails the test.
        assert all(s.recv(1024) == b"" for s in socks)
    finally:
        for s in socks:
            s.close()
        side.server.stop()


def test_a_body_that_stops_arriving_gets_408_and_nothing_is_forwarded(fake, sqlite_engine):
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_body_timeout_seconds=0.3), sqlite_engine)
    try:
        answer = raw(
            side.url,
            b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"model": "gpt-4o',
        )
    finally:
        side.server.stop()
    assert answer.startswith(b"HTTP/1.1 408") and app.requests == []


def test_connections_past_the_cap_get_503(fake, sqlite_engine):
    _, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_max_connections=4), sqlite_engine)
    host, port = side.url.removeprefix("http://").split(":")
    held = []
    try:
        for _ in range(3):  # uvicorn counts the connection asking too: the 4th is refused
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, then kept alive
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(s)
        over = raw(side.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert over.startswith(b"HTTP/1.1 503")
        held.pop().close()
    finally:
        for s in held:
            s.close()
        side.server.stop()


def test_concurrent_large_bodies_are_streamed_not_held_in_memory(fake, sqlite_engine):
    """Twelve 4 MB uploads at once: the sidecar holds chunks, never whole bodies (tracemalloc peak)."""
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    size, clients = 4 * 1024 * 1024, 12
    payload = b"x" * size
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients)

    def upload() -> None:
        try:
            barrier.wait()
            with httpx.Client(timeout=60) as c:
                r = c.post(
                    f"{side.url}/openai/v1/embeddings",
                    content=payload,
                    headers={"content-type": "application/json", "x-fake-discard-body": "1"},
                )
                assert r.status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        threads = [threading.Thread(target=upload) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        side.server.stop()
    assert not errors, errors
    assert app.discarded == [size] * clients
    # The clients' own 4 MB payload is shared; whole bodies held by the sidecar would add 48 MB+.
    assert peak < 24 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


@given(
    st.text(max_size=200)
    | st.sampled_from(["gpt-4o", "gpt 4o mini", " gpt 4o\t", "gpt\u20034o", "m\x1c\x85x", "\u2028", "", "x" * 300])
)
def test_model_labels_are_cleaned_the_same_on_the_fast_path(model):
    """``clean_model`` skips its per-character pass for clean names; any name comes out as the full pass makes it."""
    assert clean_model(model) == "".join(c for c in model if c.isprintable() and not c.isspace())[:128]
