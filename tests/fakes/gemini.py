"""The fake upstream's Gemini API / Vertex AI side: ``models/{model}:generateContent`` and streams.

Shapes are built from Google's documented examples (ai.google.dev API reference, "Generating
content": the ``GenerateContentResponse`` JSON with ``candidates``, ``usageMetadata``,
``modelVersion`` and ``responseId``; the ``streamGenerateContent`` output as SSE with
``alt=sse``, ``data: {...}`` events separated by CRLF blank lines, and without it as one JSON
array whose elements are the same chunk objects). Stream chunks carry cumulative
``usageMetadata``; the last one has the final counts and ``finishReason: STOP``. Vertex AI
(``/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:...``) answers the same shapes.

``x-fake-usage: prompt,cached,candidates,thoughts,tool_use`` sets the usage reported (the prompt
count includes the cached tokens, as Google documents).
"""

from __future__ import annotations

import json
from typing import Any

COMPLETION_MARKER = "COMPLETION-MARKER-4b1d"
GEMINI_USAGE = (120, 20, 35, 4, 6)  # prompt (cached inside), cached, candidates, thoughts, tool-use prompt
MODEL_VERSION = "gemini-2.5-flash"
RESPONSE_ID = "gemini-resp-fake01"


def is_gemini(path: str) -> bool:
    """True for a Gemini / Vertex model method path (``...models/<m>:<method>``)."""
    return ":" in path.rsplit("/", 1)[-1]


def _usage(numbers: tuple[int, ...], final: bool) -> dict[str, Any]:
    prompt, cached, candidates, thoughts, tool = numbers
    if not final:  # Google's intermediate chunks report the prompt only
        return {"promptTokenCount": prompt, "totalTokenCount": prompt}
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts + tool,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if cached:
        usage["cachedContentTokenCount"] = cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if tool:
        usage["toolUsePromptTokenCount"] = tool
    return usage


def _chunk(text: str, numbers: tuple[int, ...], final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if final:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": _usage(numbers, final),
        "modelVersion": MODEL_VERSION,
        "responseId": RESPONSE_ID,
    }


def words(n: int) -> list[str]:
    return [f"{COMPLETION_MARKER} " if i == 0 else f"word{i} " for i in range(n)]


def response(numbers: tuple[int, ...], n: int) -> bytes:
    """A non-streaming ``GenerateContentResponse``."""
    body = _chunk("".join(words(n)), numbers, True)
    return json.dumps(body, indent=2).encode()


def sse_events(numbers: tuple[int, ...], n: int) -> list[bytes]:
    """``alt=sse``: one ``data:`` event per chunk, CRLF-separated."""
    texts = words(n)
    return [
        b"data: " + json.dumps(_chunk(t, numbers, i == len(texts) - 1), separators=(",", ":")).encode() + b"\r\n\r\n"
        for i, t in enumerate(texts)
    ]


def array_parts(numbers: tuple[int, ...], n: int) -> list[bytes]:
    """The JSON-array stream: ``[`` chunk ``,\\r\\n`` chunk ... ``]``, one chunk per body part."""
    texts = words(n)
    parts = []
    for i, t in enumerate(texts):
        obj = json.dumps(_chunk(t, numbers, i == len(texts) - 1), indent=2).encode()
        parts.append((b"[" if i == 0 else b",\r\n") + obj)
    parts[-1] += b"]"
    return parts


def error(status: int) -> bytes:
    """Google's error shape (``google.rpc.Status``)."""
    return json.dumps(
        {"error": {"code": status, "message": f"fake error {status}", "status": "RESOURCE_EXHAUSTED"}}
    ).encode()
