"""Pure usage extraction from provider responses (code-anchors §11.2 and §11.11).

Nothing here touches the network, the clock or the database. The proxy keeps, per response,
either a bounded copy of a JSON body or the head and tail of an SSE stream, and hands those
bytes here after the client has its response.

Token taxonomy (design.md rule 4): ``input_tokens`` is *total* input. OpenAI already reports it
that way (``prompt_tokens`` / ``input_tokens`` include ``cached_tokens``); Anthropic reports
``input_tokens`` *without* cache reads and writes, so they are added here (provider-apis.md §0,
§10 "Token taxonomy").

Where usage sits:

* OpenAI chat completions / completions / embeddings JSON: top-level ``usage`` with
  ``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens``.
* OpenAI responses JSON: ``usage`` with ``input_tokens``, ``input_tokens_details.cached_tokens``,
  ``output_tokens``, ``output_tokens_details.reasoning_tokens``.
* OpenAI streams: the last chunk before ``[DONE]`` when ``stream_options.include_usage`` is set
  (chat, completions); ``response.completed`` carries ``response.usage`` (responses API).
* Anthropic messages JSON: ``usage`` with ``input_tokens`` (uncached),
  ``cache_read_input_tokens``, ``cache_creation_input_tokens`` and its split
  ``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``, ``output_tokens``.
* Anthropic streams: ``message_start`` has ``message.usage`` (input and cache counts, a
  provisional ``output_tokens``); ``message_delta`` has the cumulative ``usage`` at the end.
* Google (Gemini API and Vertex AI) ``GenerateContentResponse``: ``usageMetadata`` with
  ``promptTokenCount`` (cached content included), ``cachedContentTokenCount``,
  ``candidatesTokenCount`` (thoughts *not* included), ``thoughtsTokenCount``,
  ``toolUsePromptTokenCount`` (not in the prompt count) and ``totalTokenCount``; the model is
  ``modelVersion``, the id ``responseId``. Streams (``:streamGenerateContent``), as SSE with
  ``alt=sse`` or as one JSON array, repeat the object per chunk with cumulative counts, so the
  last chunk's ``usageMetadata`` is the call's usage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder()
#: A usage *object*: OpenAI's include_usage adds ``"usage":null`` to every chunk, not worth decoding.
_USAGE_OBJECT = re.compile(r'"usage"\s*:\s*\{')


@dataclass(slots=True)
class Usage:
    """What one response says it used, in the normalised taxonomy (input is total input)."""

    known: bool = False
    model: str = ""
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    response_id: str = ""
    service_tier: str = ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _str(value: Any, limit: int = 128) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def apply_openai_usage(out: Usage, usage: dict[str, Any]) -> None:
    """Fill ``out`` from an OpenAI ``usage`` object of any endpoint (chat, responses, embeddings)."""
    if "prompt_tokens" in usage:  # chat completions, completions, embeddings
        inp = _int(usage.get("prompt_tokens"))
        cached = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
        output = _int(usage.get("completion_tokens"))
        reasoning = _int(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    else:  # responses API
        inp = _int(usage.get("input_tokens"))
        cached = _int(_dict(usage.get("input_tokens_details")).get("cached_tokens"))
        output = _int(usage.get("output_tokens"))
        reasoning = _int(_dict(usage.get("output_tokens_details")).get("reasoning_tokens"))
    out.known = True
    out.input_tokens = inp
    out.cache_read_tokens = min(cached, inp)
    out.output_tokens = output
    out.reasoning_tokens = min(reasoning, output)


def apply_anthropic_usage(out: Usage, usage: dict[str, Any]) -> None:
    """Fill ``out`` from an Anthropic ``usage`` object; keys absent here keep their earlier value.

    ``message_delta`` repeats only some counts (cumulatively), so a missing key means "as in
    ``message_start``", not zero.
    """
    uncached_key = usage.get("input_tokens") is not None
    uncached = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens")) if usage.get("cache_read_input_tokens") is not None else None
    creation = _dict(usage.get("cache_creation"))
    if creation:
        w5 = _int(creation.get("ephemeral_5m_input_tokens"))
        w1 = _int(creation.get("ephemeral_1h_input_tokens"))
    elif usage.get("cache_creation_input_tokens") is not None:
        # Without the TTL split every write is a 5-minute write (the default TTL).
        w5, w1 = _int(usage.get("cache_creation_input_tokens")), 0
    else:
        w5 = w1 = -1
    if read is not None:
        out.cache_read_tokens = read
    if w5 >= 0:
        out.cache_write_5m_tokens, out.cache_write_1h_tokens = w5, w1
    if uncached_key:
        out.input_tokens = uncached + out.cache_read_tokens + out.cache_write_5m_tokens + out.cache_write_1h_tokens
    elif read is not None or w5 >= 0:
        out.input_tokens = max(
            out.input_tokens, out.cache_read_tokens + out.cache_write_5m_tokens + out.cache_write_1h_tokens
        )
    if usage.get("output_tokens") is not None:
        out.output_tokens = _int(usage.get("output_tokens"))
    if usage.get("service_tier"):
        out.service_tier = _str(usage.get("service_tier"), 64)
    out.known = True


def apply_google_usage(out: Usage, usage: dict[str, Any]) -> None:
    """Fill ``out`` from a Gemini/Vertex ``usageMetadata`` object (cumulative: the last one wins).

    Taxonomy (design.md rule 4): input is the prompt (cached content already inside it) plus the
    tool-use prompt; output is the candidates plus the thoughts, which Google bills as output;
    reasoning is the thoughts.
    """
    prompt = _int(usage.get("promptTokenCount"))
    tool = _int(usage.get("toolUsePromptTokenCount"))
    thoughts = _int(usage.get("thoughtsTokenCount"))
    out.known = True
    out.input_tokens = prompt + tool
    out.cache_read_tokens = min(_int(usage.get("cachedContentTokenCount")), out.input_tokens)
    out.output_tokens = _int(usage.get("candidatesTokenCount")) + thoughts
    out.reasoning_tokens = thoughts


def _google_response(out: Usage, payload: dict[str, Any]) -> None:
    """Model, id and usage of one ``GenerateContentResponse`` (or stream chunk) into ``out``."""
    out.model = _str(payload.get("modelVersion")) or out.model
    out.response_id = _str(payload.get("responseId")) or out.response_id
    usage = payload.get("usageMetadata")
    if isinstance(usage, dict):
        apply_google_usage(out, usage)


def _apply(provider: str, out: Usage, usage: dict[str, Any]) -> None:
    if provider == "anthropic":
        apply_anthropic_usage(out, usage)
    elif provider == "google":
        apply_google_usage(out, usage)
    else:
        apply_openai_usage(out, usage)


def extract_json(provider: str, body: bytes) -> Usage:
    """Usage of a complete (non-streaming) JSON response body; ``known`` False if it has none.

    Args:
        provider: ``openai`` (and OpenAI-compatible upstreams) or ``anthropic``.
        body: the decoded response body.
    """
    out = Usage()
    try:
        payload = json.loads(body)
    except ValueError:
        return usage_from_tail(provider, body)
    if provider == "google":
        # A JSON-array stream is a list of responses; a plain call is one response.
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict):
                _google_response(out, item)
        return out
    if not isinstance(payload, dict):
        return out
    out.model = _str(payload.get("model"))
    out.response_id = _str(payload.get("id"))
    out.service_tier = _str(payload.get("service_tier"), 64)
    usage = payload.get("usage")
    if isinstance(usage, dict):
        _apply(provider, out, usage)
    return out


def usage_from_tail(provider: str, tail: bytes) -> Usage:
    """Find the last complete ``"usage": {...}`` object in a body's tail (when it was too big to keep).

    A raw ``"usage":`` can only be a key: inside JSON strings quotes are escaped.
    """
    out = Usage()
    text = tail.decode("utf-8", "replace")
    key = '"usageMetadata"' if provider == "google" else '"usage"'
    pos = len(text)
    while True:
        pos = text.rfind(key, 0, pos)
        if pos < 0:
            return out
        after = pos + len(key)
        brace = text.find("{", after, after + 40)
        if brace < 0 or text[after:brace].strip() not in (":",):
            continue
        try:
            usage, _ = _DECODER.raw_decode(text, brace)
        except ValueError:
            continue
        if isinstance(usage, dict):
            _apply(provider, out, usage)
            return out


def iter_sse_data(buf: bytes) -> list[tuple[str, str]]:
    """``(event, data)`` pairs of the complete SSE events in ``buf`` (partial ones are skipped)."""
    events: list[tuple[str, str]] = []
    text = buf.decode("utf-8", "replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line.startswith("event:"):
                name = line[6:].strip()
        if data:
            events.append((name, "\n".join(data)))
    return events


def _loads(data: str) -> dict[str, Any] | None:
    if not data.startswith("{"):
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def extract_sse(provider: str, head: bytes, tail: bytes) -> Usage:
    """Usage of a streamed (SSE) response from its first and last bytes.

    Args:
        provider: ``openai`` (and compatibles) or ``anthropic``.
        head: the stream's first bytes (Anthropic's ``message_start`` lives there).
        tail: the stream's last bytes (the usage chunk, ``message_delta``, ``response.completed``);
            may start mid-event, which is skipped. ``head`` and ``tail`` may overlap.
    """
    out = Usage()
    if provider == "google":
        return _google_sse(head, tail)
    if provider == "anthropic":
        for chunk in (head, tail):
            for name, data in iter_sse_data(chunk):
                # Only two event types carry usage; skip decoding the content deltas.
                if name not in ("message_start", "message_delta") and '"usage"' not in data:
                    continue
                payload = _loads(data)
                if payload is None:
                    continue
                kind = payload.get("type")
                if kind == "message_start":
                    message = _dict(payload.get("message"))
                    out.model = _str(message.get("model")) or out.model
                    out.response_id = _str(message.get("id")) or out.response_id
                    apply_anthropic_usage(out, _dict(message.get("usage")))
                elif kind == "message_delta" and isinstance(payload.get("usage"), dict):
                    apply_anthropic_usage(out, payload["usage"])
        return out
    found = False
    seen_first = False
    for chunk in (head, tail):
        for _, data in iter_sse_data(chunk):
            # The first event names the model and id; after it only events with usage matter.
            if seen_first and _USAGE_OBJECT.search(data) is None:
                continue
            payload = _loads(data)
            if payload is None:
                continue
            seen_first = True
            response = payload.get("response")
            if isinstance(response, dict):  # responses API events
                payload = response
            out.model = _str(payload.get("model")) or out.model
            out.response_id = _str(payload.get("id")) or out.response_id
            out.service_tier = _str(payload.get("service_tier"), 64) or out.service_tier
            usage = payload.get("usage")
            if isinstance(usage, dict):
                apply_openai_usage(out, usage)
                found = True
    if not found:
        tail_usage = usage_from_tail(provider, tail)
        if tail_usage.known:
            tail_usage.model, tail_usage.response_id = out.model, out.response_id
            tail_usage.service_tier = out.service_tier
            return tail_usage
    return out


def _google_sse(head: bytes, tail: bytes) -> Usage:
    """Usage of a Gemini/Vertex ``alt=sse`` stream: every chunk is a full response, counts cumulative."""
    out = Usage()
    for chunk in (head, tail):
        for _, data in iter_sse_data(chunk):
            payload = _loads(data)
            if payload is not None:
                _google_response(out, payload)
    if not out.known:
        tail_usage = usage_from_tail("google", tail)
        if tail_usage.known:
            tail_usage.model, tail_usage.response_id = out.model, out.response_id
            return tail_usage
    return out
