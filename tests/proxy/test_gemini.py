"""Gemini API and Vertex AI through the sidecar with the official ``google-genai`` SDK.

A real uvicorn sidecar and a real uvicorn fake upstream on 127.0.0.1 (shapes from Google's
documented examples, :mod:`tests.fakes.gemini`): responses identical to a direct call, usage
exact in the schema's taxonomy, the ``?key=`` query key forwarded but never logged or stored.
"""

import logging

import httpx
import pytest
from google import genai
from google.genai import types
from sqlalchemy import text

from tests.fakes.gemini import GEMINI_USAGE, MODEL_VERSION, RESPONSE_ID
from tests.proxy.conftest import KEY, Sidecar, events, proxy_settings, start_sidecar

PROMPT, CACHED, CANDIDATES, THOUGHTS, TOOL = GEMINI_USAGE
EXPECTED = {
    "input_tokens": PROMPT + TOOL,  # cached content is inside the prompt count; tool-use prompt is input too
    "cache_read_tokens": CACHED,
    "cache_write_5m_tokens": 0,
    "cache_write_1h_tokens": 0,
    "output_tokens": CANDIDATES + THOUGHTS,  # thoughts are billed as output
    "reasoning_tokens": THOUGHTS,
}
GEMINI_KEY = "AIzaFAKE-QUERYKEY-MARKER-5e1f"  # dummy key; the marker must never be stored or logged


@pytest.fixture
def side(fake, sqlite_engine):  # type: ignore[no-untyped-def]
    """A sidecar on SQLite only: the SDK test above covers PostgreSQL."""
    sidecar = start_sidecar(proxy_settings(fake[1].url), sqlite_engine)
    yield sidecar
    sidecar.server.stop()


def client(base: str) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=base))


def sdk_calls(c: genai.Client) -> list:
    """Plain data to compare: the SDK's parsed responses, without the raw HTTP headers."""
    drop = {"sdk_http_response"}
    out = [c.models.generate_content(model="gemini-2.5-flash", contents="say hi").model_dump(exclude=drop)]
    stream = c.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
    out.append([ch.model_dump(exclude=drop) for ch in stream])
    return out


def usage_of(row: dict) -> dict:
    return {k: row[k] for k in EXPECTED}


def test_google_genai_sdk_sees_identical_responses_and_usage_is_exact(fake, sidecar, engine):
    app, upstream = fake
    direct = sdk_calls(client(upstream.url))
    via = sdk_calls(client(f"{sidecar.url}/google"))
    assert via == direct
    assert via[0]["usage_metadata"]["thoughts_token_count"] == THOUGHTS and len(via[1]) == 3
    sent = app.requests[-2:]
    assert [r["path"] for r in sent] == [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    ]
    assert sent[1]["query"] == b"alt=sse" and sent[0]["headers"]["x-goog-api-key"] == KEY
    sidecar.flush(2)
    rows = events(engine)
    assert [(r["endpoint"], bool(r["stream"])) for r in rows] == [
        ("generateContent", False),
        ("streamGenerateContent", True),
    ]
    for r in rows:
        assert usage_of(r) == EXPECTED
        assert (r["provider"], r["upstream"], r["model"], r["response_id"]) == (
            "google",
            "google",
            MODEL_VERSION,
            RESPONSE_ID,
        )
        assert r["status"] == 200 and r["usage_known"] and not r["partial"] and r["error"] == ""
        assert r["api_key_fp"].startswith("fp_")
        assert r["basis"] == "estimated" and r["cost"] > 0  # priced from genai-prices like the others


def raw(url: str, **kwargs: object) -> bytes:
    with httpx.Client(timeout=10) as c, c.stream("POST", url, **kwargs) as r:  # type: ignore[arg-type]
        assert r.status_code == 200
        return r.read()


@pytest.mark.parametrize(
    ("method", "query", "stream"),
    [
        ("generateContent", {}, False),
        ("streamGenerateContent", {"alt": "sse"}, True),
        ("streamGenerateContent", {}, True),  # the JSON-array stream
    ],
)
def test_each_shape_is_byte_identical_and_the_query_key_is_never_kept(
    fake, side: Sidecar, sqlite_engine, caplog, method, query, stream
):
    sidecar, engine = side, sqlite_engine
    caplog.set_level(logging.DEBUG)
    app, upstream = fake
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    path = f"/v1beta/models/gemini-2.5-flash:{method}"
    params = {**query, "key": GEMINI_KEY}
    direct = raw(f"{upstream.url}{path}", params=params, json=body)
    via = raw(f"{sidecar.url}/google{path}", params=params, json=body)
    assert via == direct  # byte for byte
    assert f"key={GEMINI_KEY}".encode() in app.requests[-1]["query"]  # forwarded to the upstream
    # The same key as a header fingerprints the same: spend groups by key whichever way it came.
    raw(f"{sidecar.url}/google{path}", params=query, json=body, headers={"x-goog-api-key": GEMINI_KEY})
    sidecar.flush(2)
    with engine.connect() as conn:
        stored = repr(conn.execute(text("SELECT * FROM proxy_events")).all())
    assert GEMINI_KEY not in stored and GEMINI_KEY not in caplog.text
    by_query, by_header = events(engine)
    assert by_query["api_key_fp"] == by_header["api_key_fp"] != ""
    assert usage_of(by_query) == EXPECTED and bool(by_query["stream"]) is stream
    assert by_query["endpoint"] == method and by_query["model"] == MODEL_VERSION


def test_vertex_route_passes_the_bearer_token_and_records_usage(fake, side: Sidecar, sqlite_engine):
    sidecar, engine = side, sqlite_engine
    app, upstream = fake
    path = "/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    bearer = {"authorization": "Bearer ya29.fake-oauth-token"}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    direct = raw(f"{upstream.url}{path}", json=body, headers=bearer)
    assert raw(f"{sidecar.url}/vertex{path}", json=body, headers=bearer) == direct
    assert app.requests[-1]["path"] == path and app.requests[-1]["headers"]["authorization"] == bearer["authorization"]
    sidecar.flush(1)
    (row,) = events(engine)
    assert (row["provider"], row["upstream"], row["endpoint"]) == ("google", "vertex", "generateContent")
    assert usage_of(row) == EXPECTED and row["api_key_fp"].startswith("fp_")


def test_unknown_google_versions_are_not_routes(side: Sidecar):
    assert httpx.post(f"{side.url}/google/v9/models/x:generateContent").status_code == 404
    assert httpx.post(f"{side.url}/vertex/v1beta/models/x:generateContent").status_code == 404
