"""The official SDKs through the sidecar: identical responses, exact recorded usage (SQLite and PostgreSQL).

Every test runs a real uvicorn sidecar and a real uvicorn fake upstream on 127.0.0.1.
"""

import anthropic
import httpx
import openai
import pytest

from tests.fakes.upstream import ANTHROPIC_USAGE, COMPLETION_MARKER, OPENAI_USAGE
from tests.proxy.conftest import KEY, PROMPT_MARKER, events

MESSAGES = [{"role": "user", "content": f"say hi {PROMPT_MARKER}"}]
OPENAI_EXPECTED = {
    "input_tokens": OPENAI_USAGE[0],
    "cache_read_tokens": OPENAI_USAGE[1],
    "cache_write_5m_tokens": 0,
    "cache_write_1h_tokens": 0,
    "output_tokens": OPENAI_USAGE[2],
    "reasoning_tokens": OPENAI_USAGE[3],
}
ANTHROPIC_EXPECTED = {
    "input_tokens": sum(ANTHROPIC_USAGE[:4]),
    "cache_read_tokens": ANTHROPIC_USAGE[1],
    "cache_write_5m_tokens": ANTHROPIC_USAGE[2],
    "cache_write_1h_tokens": ANTHROPIC_USAGE[3],
    "output_tokens": ANTHROPIC_USAGE[4],
    "reasoning_tokens": 0,
}


def oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key=KEY, max_retries=0)


def usage_of(event: dict) -> dict:
    return {k: event[k] for k in OPENAI_EXPECTED}


def openai_calls(client: openai.OpenAI) -> list:
    """One call per OpenAI endpoint and mode; returns plain data to compare."""
    out = [client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()]
    out.append(
        [c.model_dump() for c in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)]
    )
    out.append(client.responses.create(model="gpt-4.1-mini", input=f"hi {PROMPT_MARKER}").model_dump())
    out.append([e.model_dump() for e in client.responses.create(model="gpt-4.1-mini", input="hi", stream=True)])
    out.append(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi").model_dump())
    out.append(
        [c.model_dump() for c in client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", stream=True)]
    )
    out.append(client.embeddings.create(model="text-embedding-3-small", input=["a", "b"]).model_dump())
    return out


def test_openai_sdk_sees_identical_responses_and_usage_is_exact(fake, sidecar, engine):
    _, upstream = fake
    direct = openai_calls(oai(f"{upstream.url}/v1"))
    via = openai_calls(oai(f"{sidecar.url}/openai/v1"))
    assert via == direct
    assert COMPLETION_MARKER in via[0]["choices"][0]["message"]["content"]
    # Streams the client asked for without include_usage got no usage chunk, as without the sidecar.
    assert all(c["usage"] is None for c in via[1]) and len(via[1]) == len(direct[1])
    sidecar.flush(7)
    rows = events(engine)
    assert [(r["endpoint"], bool(r["stream"])) for r in rows] == [
        ("chat.completions", False),
        ("chat.completions", True),
        ("responses", False),
        ("responses", True),
        ("completions", False),
        ("completions", True),
        ("embeddings", False),
    ]
    embeddings = rows.pop()
    assert usage_of(embeddings) == {**dict.fromkeys(OPENAI_EXPECTED, 0), "input_tokens": OPENAI_USAGE[0]}
    chat = rows[:2]
    for r in chat:
        assert usage_of(r) == OPENAI_EXPECTED
        assert (r["model"], r["service_tier"], r["response_id"]) == (
            "gpt-4o-mini-2024-07-18",
            "default",
            "chatcmpl-fake123",
        )
    for r in rows[2:4]:
        assert usage_of(r) == OPENAI_EXPECTED and r["model"] == "gpt-4.1-mini"
    for r in rows[4:]:  # legacy completions report no details
        assert (r["input_tokens"], r["output_tokens"], r["cache_read_tokens"]) == (OPENAI_USAGE[0], OPENAI_USAGE[2], 0)
    for r in [*rows, embeddings]:
        assert r["status"] == 200 and r["usage_known"] and not r["partial"] and r["error"] == ""
        assert r["provider"] == "openai" and r["api_key_fp"].startswith("fp_")
        assert r["latency_ms"] > 0 and 0 < r["ttfb_ms"] <= r["latency_ms"]
    assert chat[0]["basis"] == "estimated" and chat[0]["cost"] > 0


def anthropic_calls(client: anthropic.Anthropic) -> list:
    out = [client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=MESSAGES).model_dump()]
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=MESSAGES) as stream:
        out.append([e.model_dump() for e in stream])
    return out


def test_anthropic_sdk_sees_identical_responses_and_usage_is_exact(fake, sidecar, engine):
    _, upstream = fake
    direct = anthropic_calls(anthropic.Anthropic(base_url=upstream.url, api_key=KEY, max_retries=0))
    via = anthropic_calls(anthropic.Anthropic(base_url=f"{sidecar.url}/anthropic", api_key=KEY, max_retries=0))
    assert via == direct
    sidecar.flush(2)
    rows = events(engine)
    assert len(rows) == 2
    for r, stream in zip(rows, (False, True), strict=True):
        assert usage_of(r) == ANTHROPIC_EXPECTED
        assert (r["provider"], r["endpoint"], bool(r["stream"]), r["model"]) == (
            "anthropic",
            "messages",
            stream,
            "claude-sonnet-4-6",
        )
        assert r["response_id"] == "msg_fake01" and r["service_tier"] == "standard"
        assert r["basis"] == "estimated" and r["cost"] > 0


def raw_stream(url: str, body: dict) -> bytes:
    with httpx.Client() as c, c.stream("POST", url, json=body, headers={"authorization": f"Bearer {KEY}"}) as r:
        return r.read()


@pytest.mark.parametrize("inject", [True, False])
def test_include_usage_injection_is_invisible_to_the_client(fake, engine, inject):
    from tests.proxy.conftest import proxy_settings, start_sidecar

    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url, proxy_include_usage=inject), engine)
    try:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        direct = raw_stream(f"{upstream.url}/v1/chat/completions", body)
        via = raw_stream(f"{side.url}/openai/v1/chat/completions", body)
        assert via == direct  # byte for byte
        assert b'"usage"' not in via
        forwarded = app.requests[-1]["body"]
        assert (b'"include_usage":true' in forwarded) is inject
        # A client that asks for usage itself gets it, untouched, either way.
        asked = {**body, "stream_options": {"include_usage": True}}
        assert raw_stream(f"{side.url}/openai/v1/chat/completions", asked) == raw_stream(
            f"{upstream.url}/v1/chat/completions", asked
        )
        side.flush(2)
    finally:
        side.server.stop()
    first, second = events(engine)
    assert first["usage_known"] is inject or bool(first["usage_known"]) is inject
    assert usage_of(first) == (OPENAI_EXPECTED if inject else dict.fromkeys(OPENAI_EXPECTED, 0))
    assert usage_of(second) == OPENAI_EXPECTED
    assert first["basis"] == ("estimated" if inject else "unpriced")


def test_named_upstream_and_unknown_name(fake, sidecar, engine):
    client = oai(f"{sidecar.url}/u/groq/v1")
    reply = client.chat.completions.create(model="llama-3.1-8b-instant", messages=MESSAGES)
    assert reply.usage.prompt_tokens == OPENAI_USAGE[0]
    missing = httpx.post(f"{sidecar.url}/u/nope/v1/chat/completions", json={})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "unknown_upstream"
    assert "groq" not in missing.text  # configured names are not listed to whoever asks
    sidecar.flush(1)
    (row,) = events(engine)
    assert (row["provider"], row["upstream"], row["model"]) == ("groq", "groq", "llama-3.1-8b-instant")
    assert row["basis"] == "estimated"  # genai-prices knows Groq's models


def test_unknown_model_is_unpriced_not_zero(fake, sidecar, engine):
    oai(f"{sidecar.url}/openai/v1").chat.completions.create(model="my-finetune-xyz", messages=MESSAGES)
    sidecar.flush(1)
    (row,) = events(engine)
    assert row["usage_known"] and row["input_tokens"] == OPENAI_USAGE[0]
    assert (row["basis"], row["cost"]) == ("unpriced", None)
