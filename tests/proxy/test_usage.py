"""Pure usage extraction and the include_usage stream filter, from documented response shapes.

Payloads follow the providers' documented examples (OpenAI chat completion / chunk / responses /
embeddings objects, Anthropic messages and streaming events), with invented numbers.
"""

import json

from collector.proxy.forward import Tap, UsageChunkFilter, endpoint_name
from collector.proxy.usage import extract_json, extract_sse, usage_from_tail


def sse(*objs, events=None):
    out = b""
    for i, obj in enumerate(objs):
        name = f"event: {events[i]}\n" if events else ""
        data = obj if isinstance(obj, str) else json.dumps(obj)
        out += f"{name}data: {data}\n\n".encode()
    return out


def test_openai_chat_json_counts_cached_inside_input_and_reasoning_inside_output():
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "model": "gpt-4o-2024-08-06",
            "service_tier": "default",
            "choices": [{"message": {"content": 'he said "usage": {"prompt_tokens": 999}'}}],
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 300,
                "prompt_tokens_details": {"cached_tokens": 600},
                "completion_tokens_details": {"reasoning_tokens": 200},
            },
        }
    ).encode()
    u = extract_json("openai", body)
    assert (u.known, u.model, u.response_id, u.service_tier) == (True, "gpt-4o-2024-08-06", "chatcmpl-1", "default")
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (1000, 600, 300, 200)


def test_openai_responses_and_embeddings_json():
    r = extract_json(
        "openai",
        json.dumps(
            {
                "id": "resp_1",
                "model": "o4-mini",
                "usage": {
                    "input_tokens": 50,
                    "input_tokens_details": {"cached_tokens": 10},
                    "output_tokens": 70,
                    "output_tokens_details": {"reasoning_tokens": 64},
                },
            }
        ).encode(),
    )
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens, r.reasoning_tokens) == (50, 10, 70, 64)
    e = extract_json(
        "openai", b'{"object":"list","model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}'
    )
    assert (e.known, e.input_tokens, e.output_tokens) == (True, 8, 0)


def test_anthropic_json_sums_cache_reads_and_writes_into_input():
    body = json.dumps(
        {
            "id": "msg_1",
            "model": "claude-sonnet-4-5",
            "usage": {
                "input_tokens": 5,
                "cache_creation_input_tokens": 300,
                "cache_read_input_tokens": 1000,
                "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
                "output_tokens": 42,
            },
        }
    ).encode()
    u = extract_json("anthropic", body)
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (
        1305,
        1000,
        100,
        200,
    )
    assert u.output_tokens == 42
    # Without the TTL split, writes are 5-minute writes.
    old = extract_json("anthropic", b'{"usage":{"input_tokens":1,"cache_creation_input_tokens":9,"output_tokens":2}}')
    assert (old.input_tokens, old.cache_write_5m_tokens, old.cache_write_1h_tokens) == (10, 9, 0)


def test_error_and_garbage_bodies_have_no_usage():
    assert not extract_json("openai", b'{"error":{"message":"rate limited"}}').known
    assert not extract_json("openai", b"<html>bad gateway</html>").known
    assert not extract_sse("openai", b"data: [DONE]\n\n", b"").known


def test_openai_chat_stream_usage_chunk():
    chunk = {"id": "c1", "model": "gpt-4o-mini-2024-07-18", "choices": [{"delta": {"content": "hi"}}], "usage": None}
    final = {
        "id": "c1",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    stream = sse(chunk, chunk, final, "[DONE]")
    u = extract_sse("openai", stream, stream)
    assert (u.known, u.model, u.input_tokens, u.output_tokens) == (True, "gpt-4o-mini-2024-07-18", 9, 4)


def test_responses_stream_completed_event_even_when_only_its_tail_was_kept():
    big = "x" * 200_000
    completed = {
        "type": "response.completed",
        "response": {
            "id": "resp_9",
            "model": "gpt-4.1",
            "output": [{"content": [{"text": big}]}],
            "usage": {"input_tokens": 11, "output_tokens": 22, "output_tokens_details": {"reasoning_tokens": 0}},
        },
    }
    stream = sse({"type": "response.created", "response": {"id": "resp_9", "model": "gpt-4.1"}}, completed)
    tap = Tap(16 * 1024, 64 * 1024)
    for i in range(0, len(stream), 1000):
        tap.feed(stream[i : i + 1000])
    assert not tap.complete and len(tap.tail) <= 128 * 1024
    u = extract_sse("openai", bytes(tap.head), bytes(tap.tail))
    assert (u.known, u.model, u.input_tokens, u.output_tokens) == (True, "gpt-4.1", 11, 22)


def test_anthropic_stream_takes_input_from_message_start_and_output_from_message_delta():
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_2",
            "model": "claude-haiku-4-5",
            "usage": {
                "input_tokens": 7,
                "cache_read_input_tokens": 3,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    head = sse(start, {"type": "ping"}, events=["message_start", "ping"])
    tail = sse(delta, {"type": "message_stop"}, events=["message_delta", "message_stop"])
    u = extract_sse("anthropic", head, tail)
    assert (u.model, u.response_id, u.input_tokens, u.cache_read_tokens, u.output_tokens) == (
        "claude-haiku-4-5",
        "msg_2",
        10,
        3,
        15,
    )
    # A stream cut before message_delta still knows its input (recorded as partial).
    cut = extract_sse("anthropic", head, b"")
    assert (cut.input_tokens, cut.output_tokens) == (10, 1)


def test_tail_search_ignores_escaped_usage_in_content_and_takes_the_last_object():
    tail = b'...,"content":"say \\"usage\\": {\\"prompt_tokens\\": 5}"}],'
    tail += b'"usage":{"prompt_tokens":77,"completion_tokens":3}}'
    u = usage_from_tail("openai", tail)
    assert (u.known, u.input_tokens, u.output_tokens) == (True, 77, 3)
    assert not usage_from_tail("openai", b'"usage":{"prompt_tok').known


def test_filter_removes_only_what_include_usage_added_across_split_chunks():
    asked = b'data: {"id":"c","choices":[{"delta":{"content":"a,\\"usage\\":null"}}]}\n\ndata: [DONE]\n\n'
    injected = (
        b'data: {"id":"c","choices":[{"delta":{"content":"a,\\"usage\\":null"}}],"usage":null}\n\n'
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'
        b"data: [DONE]\n\n"
    )
    for size in (1, 7, 64, len(injected)):
        f = UsageChunkFilter()
        out = b"".join(f.feed(injected[i : i + size]) for i in range(0, len(injected), size)) + f.flush()
        assert out == asked


def test_tap_decodes_gzip_bodies():
    import gzip

    body = json.dumps({"model": "m", "usage": {"prompt_tokens": 4, "completion_tokens": 2}}).encode()
    tap = Tap(1 << 20, encoding="gzip")
    packed = gzip.compress(body)
    tap.feed(packed[:10])
    tap.feed(packed[10:])
    assert tap.complete and extract_json("openai", bytes(tap.head)).input_tokens == 4


def test_endpoint_names():
    assert endpoint_name("/chat/completions") == "chat.completions"
    assert endpoint_name("/responses/resp_123") == "responses"
    assert endpoint_name("/messages") == "messages"
    assert endpoint_name("") == ""


def test_filter_handles_crlf_framed_streams_and_never_buffers_unframed_bytes():
    injected = (
        b'data: {"id":"c","choices":[{"delta":{"content":"a"}}],"usage":null}\r\n\r\n'
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    f = UsageChunkFilter()
    cut = injected.index(b"\r\n\r\n") + 10  # the first event and a bit of the second
    first = f.feed(injected[:cut])
    assert first == b'data: {"id":"c","choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
    assert first + f.feed(injected[cut:]) + f.flush() == first + b"data: [DONE]\r\n\r\n"
    blob = b"x" * (2 * 1024 * 1024)
    assert UsageChunkFilter().feed(blob) == blob


GEMINI_FINAL = {
    "candidates": [{"content": {"parts": [{"text": 'a "usageMetadata": {"promptTokenCount": 9}'}]}}],
    "usageMetadata": {
        "promptTokenCount": 1000,  # cached content is inside it (Google's documented meaning)
        "cachedContentTokenCount": 600,
        "candidatesTokenCount": 200,
        "thoughtsTokenCount": 50,
        "toolUsePromptTokenCount": 30,
        "totalTokenCount": 1280,
    },
    "modelVersion": "gemini-2.5-pro",
    "responseId": "resp-1",
}
GEMINI_EXPECTED = (1030, 600, 250, 50)  # input (+tool-use prompt), cache read, output (+thoughts), reasoning


def _gemini(u):
    return (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens)


def test_gemini_json_puts_tool_prompt_in_input_and_thoughts_in_output():
    u = extract_json("google", json.dumps(GEMINI_FINAL).encode())
    assert u.known and _gemini(u) == GEMINI_EXPECTED
    assert (u.model, u.response_id) == ("gemini-2.5-pro", "resp-1")


def test_gemini_streams_take_the_last_cumulative_usage_in_both_shapes():
    first = {**GEMINI_FINAL, "usageMetadata": {"promptTokenCount": 1000, "totalTokenCount": 1000}}
    array = b"[" + json.dumps(first).encode() + b",\r\n" + json.dumps(GEMINI_FINAL).encode() + b"]"
    assert _gemini(extract_json("google", array)) == GEMINI_EXPECTED
    stream = sse(first, GEMINI_FINAL).replace(b"\n\n", b"\r\n\r\n")
    u = extract_sse("google", stream, stream)
    assert _gemini(u) == GEMINI_EXPECTED and u.model == "gemini-2.5-pro"
    # A body too big to keep whole: the last usageMetadata object of its tail (escaped text skipped).
    tail = array[len(array) // 3 :]
    assert _gemini(usage_from_tail("google", tail)) == GEMINI_EXPECTED


def test_gemini_endpoints_and_query_keys():
    from collector.proxy.forward import google_endpoint, query_key

    assert google_endpoint("/v1beta/models/gemini-2.5-flash:streamGenerateContent") == "streamGenerateContent"
    assert google_endpoint("/v1/projects/p/locations/l/publishers/google/models/m:countTokens") == "countTokens"
    assert google_endpoint("/v1beta/models/m:inventedMethod") == "other"
    assert google_endpoint("/v1beta/models") == "models"
    assert query_key(b"alt=sse&key=AIza%2Dx") == b"AIza-x" and query_key(b"alt=sse") == b""


def test_filter_finds_the_usage_only_chunk_in_any_json_formatting_without_parsing_content_chunks():
    injected = (
        b'data: {"id":"c","choices":[{"delta":{"content":"x = []"}}],"usage":null}\n\n'
        b'data: {"id":"c","choices":[{"delta":{"content":"b"}}],"usage":null}\n\n'
        b'data: {"id":"c", "choices" : [ \t], "usage": {"prompt_tokens":1,"completion_tokens":1}}\n\n'
        b"data: [DONE]\n\n"
    )
    asked = (
        b'data: {"id":"c","choices":[{"delta":{"content":"x = []"}}]}\n\n'
        b'data: {"id":"c","choices":[{"delta":{"content":"b"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    f = UsageChunkFilter()
    assert f.feed(injected) + f.flush() == asked
