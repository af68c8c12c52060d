"""A fake OpenAI + Anthropic upstream (raw ASGI) with known usage, for the proxy's tests and bench.

Response shapes follow the providers' documented examples (OpenAI chat completions, completions,
responses, embeddings objects and their streaming chunks, including what
``stream_options.include_usage`` adds; Anthropic messages and its SSE events ``message_start`` ...
``message_delta`` ``message_stop``). No real key is involved anywhere.

Per-request behaviour is set by request headers, which pass through the sidecar untouched:

* ``x-fake-usage: prompt,cached,completion,reasoning`` (OpenAI) or
  ``uncached,cache_read,write_5m,write_1h,output`` (Anthropic): the usage reported;
* ``x-fake-chunks: N`` content chunks in a stream (default 3);
* ``x-fake-first-ms`` / ``x-fake-interval-ms``: delay before the first chunk / between chunks;
* ``x-fake-status: 429`` (any code): answer with the provider's error JSON;
* ``x-fake-cut-after: N``: drop the connection after N chunks (or mid-body for JSON);
* ``x-fake-tag``: label under which chunk send times are kept in :attr:`FakeUpstream.sent` (for a
  JSON answer: the time it was sent);
* ``x-fake-id``: the chat completion's ``id`` (JSON and stream), so a test can find a call's event;
* ``x-fake-hold-end``: after a stream's last event, end the body only once the caller left;
* ``x-fake-discard-body``: read the request body and drop it (its size goes to ``discarded``).

Gemini / Vertex AI paths (``.../models/<model>:<method>``) are answered by :mod:`tests.fakes.gemini`.

Every completion contains :data:`COMPLETION_MARKER`, so tests can scan storage for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import defaultdict
from typing import Any

import uvicorn

from tests.fakes import gemini

COMPLETION_MARKER = "COMPLETION-MARKER-4b1d"
OPENAI_USAGE = (120, 20, 35, 4)  # prompt (total), cached, completion (total), reasoning
ANTHROPIC_USAGE = (50, 30, 12, 8, 40)  # uncached input, cache read, 5m write, 1h write, output
CREATED = 1_764_000_000


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class CutConnection(Exception):
    """Raised inside the fake to make uvicorn drop the connection mid-response."""


class _Send:
    """The ASGI ``send`` callable, carrying the request's ``receive`` for disconnect detection."""

    def __init__(self, send: Any, receive: Any) -> None:
        self.send = send
        self.receive = receive

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.send(message)


class FakeUpstream:
    """The ASGI app. ``sent[tag]`` lists ``perf_counter()`` times at which stream chunks were sent."""

    def __init__(self) -> None:
        self.sent: dict[str, list[float]] = defaultdict(list)
        self.disconnected: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.keep_requests = True
        #: Body sizes of requests sent with ``x-fake-discard-body`` (read and dropped, never kept).
        self.discarded: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        discard = "x-fake-discard-body" in headers
        parts: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            received += len(chunk)
            if not discard:
                parts.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(parts)
        if discard:
            self.discarded.append(received)
            body = b'{"model": "text-embedding-3-small", "input": ["x"]}'
            headers["x-fake-received"] = str(received)
        if self.keep_requests:
            self.requests.append(
                {"path": scope["path"], "headers": headers, "body": body, "query": scope.get("query_string", b"")}
            )
        path = scope["path"]
        status = int(headers.get("x-fake-status", "200"))
        if gemini.is_gemini(path):
            await self._gemini(_Send(send, receive), path, scope.get("query_string", b""), headers, status)
            return
        payload = json.loads(body) if body else {}
        anthropic = path == "/v1/messages"
        if status != 200:
            await self._error(send, status, anthropic)
            return
        if path == "/v1/models":
            await self._json(send, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}, headers)
            return
        handler = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completions,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
        }.get(path)
        if handler is None:
            await self._error(send, 404, anthropic)
            return
        await handler(_Send(send, receive), payload, headers)

    async def _gemini(self, send: Any, path: str, query: bytes, headers: dict[str, str], status: int) -> None:
        if status != 200:
            raw = gemini.error(status)
            start = [(b"content-type", b"application/json; charset=UTF-8"), (b"content-length", str(len(raw)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": start})
            await send({"type": "http.response.body", "body": raw})
            return
        numbers = self._numbers(headers, gemini.GEMINI_USAGE)
        n = int(headers.get("x-fake-chunks", "3"))
        if path.endswith(":streamGenerateContent"):
            if b"alt=sse" in query:
                await self._stream(send, gemini.sse_events(numbers, n), headers)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json; charset=UTF-8")],
                }
            )
            for part in gemini.array_parts(numbers, n):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await self._json(send, json.loads(gemini.response(numbers, n)), headers)

    # -- plumbing ---------------------------------------------------------------------------

    async def _error(self, send: Any, status: int, anthropic: bool) -> None:
        if anthropic:
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": f"fake error {status}"}}
        else:
            body = {"error": {"message": f"fake error {status}", "type": "requests", "param": None, "code": None}}
        raw = _dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    async def _json(self, send: Any, obj: Any, headers: dict[str, str]) -> None:
        raw = _dumps(obj)
        first = float(headers.get("x-fake-first-ms", "0")) / 1000
        if first:
            await asyncio.sleep(first)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"x-request-id", b"req_fake"),
                    *(
                        [(b"set-cookie", b"session=secret-of-caller-a; Path=/")]
                        if "x-fake-set-cookie" in headers
                        else []
                    ),
                ],
            }
        )
        if "x-fake-cut-after" in headers:
            await send({"type": "http.response.body", "body": raw[: len(raw) // 2], "more_body": True})
            raise CutConnection("fake upstream cut the connection")
        await send({"type": "http.response.body", "body": raw})
        if tag := headers.get("x-fake-tag"):
            self.sent[tag].append(time.perf_counter())

    async def _stream(self, send: Any, events: list[bytes], headers: dict[str, str]) -> None:
        first = float(headers.get("x-fake-first-ms", "0")) / 1000
        interval = float(headers.get("x-fake-interval-ms", "0")) / 1000
        cut = int(headers.get("x-fake-cut-after", "-1"))
        tag = headers.get("x-fake-tag", "")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")],
            }
        )
        receive = send.receive
        gone = asyncio.Event()

        async def watch() -> None:
            if (await receive())["type"] == "http.disconnect":
                gone.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            for i, event in enumerate(events):
                delay = first if i == 0 else interval
                if delay:
                    await asyncio.sleep(delay)
                if gone.is_set():  # the sidecar cancelled the request: stop generating
                    self.disconnected.add(tag)
                    return
                if i == cut:
                    raise CutConnection("fake upstream cut the stream")
                if tag:
                    self.sent[tag].append(time.perf_counter())
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if "x-fake-hold-end" in headers:
                # Every event is out; end the body only after the caller went away (at most 30 s),
                # as a slow upstream whose final chunk lags its last event would.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), 30)
                if gone.is_set():
                    self.disconnected.add(tag)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    @staticmethod
    def _numbers(headers: dict[str, str], default: tuple[int, ...]) -> tuple[int, ...]:
        raw = headers.get("x-fake-usage")
        return tuple(int(x) for x in raw.split(",")) if raw else default

    # -- OpenAI -----------------------------------------------------------------------------

    def _openai_usage(self, headers: dict[str, str], kind: str) -> dict[str, Any]:
        prompt, cached, completion, reasoning = self._numbers(headers, OPENAI_USAGE)
        if kind == "responses":
            return {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": prompt + completion,
            }
        if kind == "embeddings":
            return {"prompt_tokens": prompt, "total_tokens": prompt}
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    def _words(headers: dict[str, str]) -> list[str]:
        n = int(headers.get("x-fake-chunks", "3"))
        return [f"{COMPLETION_MARKER} " if i == 0 else f"word{i} " for i in range(n)]

    @staticmethod
    def _model(payload: dict[str, Any]) -> str:
        model = payload.get("model", "")
        return f"{model}-2024-07-18" if model == "gpt-4o-mini" else model

    async def _chat(self, send: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        model = self._model(payload)
        rid = headers.get("x-fake-id", "chatcmpl-fake123")
        usage = self._openai_usage(headers, "chat")
        words = self._words(headers)
        if not payload.get("stream"):
            await self._json(
                send,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": "fp_fake",
                },
                headers,
            )
            return
        include = bool((payload.get("stream_options") or {}).get("include_usage"))
        events = []
        deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
        for i, delta in enumerate([*deltas, {}]):
            chunk: dict[str, Any] = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": "stop" if i == len(deltas) else None,
                    }
                ],
            }
            if include:
                chunk["usage"] = None
            events.append(b"data: " + _dumps(chunk) + b"\n\n")
        if include:
            final = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": usage,
            }
            events.append(b"data: " + _dumps(final) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        await self._stream(send, events, headers)

    async def _completions(self, send: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        model = payload.get("model", "")
        usage = self._openai_usage(headers, "completions")
        usage = {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        words = self._words(headers)
        if not payload.get("stream"):
            await self._json(
                send,
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": CREATED,
                    "model": model,
                    "choices": [{"text": "".join(words), "index": 0, "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage,
                },
                headers,
            )
            return
        include = bool((payload.get("stream_options") or {}).get("include_usage"))
        events = []
        for i, w in enumerate(words):
            chunk: dict[str, Any] = {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": CREATED,
                "choices": [
                    {"text": w, "index": 0, "logprobs": None, "finish_reason": "stop" if i == len(words) - 1 else None}
                ],
                "model": model,
            }
            if include:
                chunk["usage"] = None
            events.append(b"data: " + _dumps(chunk) + b"\n\n")
        if include:
            final = {"id": "cmpl-fake", "object": "text_completion", "created": CREATED, "choices": [], "model": model}
            final["usage"] = usage
            events.append(b"data: " + _dumps(final) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        await self._stream(send, events, headers)

    async def _responses(self, send: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        model = payload.get("model", "")
        text = "".join(self._words(headers))
        response = {
            "id": "resp_fake",
            "object": "response",
            "created_at": CREATED,
            "status": "completed",
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": self._openai_usage(headers, "responses"),
        }
        if not payload.get("stream"):
            await self._json(send, response, headers)
            return
        created = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [
            b"event: response.created\ndata: " + _dumps({"type": "response.created", "response": created}) + b"\n\n"
        ]
        for i, w in enumerate(self._words(headers)):
            delta = {"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
                     "content_index": 0, "delta": w, "sequence_number": i + 1}  # fmt: skip
            events.append(b"event: response.output_text.delta\ndata: " + _dumps(delta) + b"\n\n")
        done = {"type": "response.completed", "response": response}
        events.append(b"event: response.completed\ndata: " + _dumps(done) + b"\n\n")
        await self._stream(send, events, headers)

    async def _embeddings(self, send: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        inputs = payload.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.1, -0.2, 0.3]} for i in range(count)]
        await self._json(
            send,
            {
                "object": "list",
                "data": data,
                "model": payload.get("model", ""),
                "usage": self._openai_usage(headers, "embeddings"),
            },
            headers,
        )

    # -- Anthropic --------------------------------------------------------------------------

    async def _messages(self, send: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        uncached, read, w5, w1, output = self._numbers(headers, ANTHROPIC_USAGE)
        model = payload.get("model", "")
        words = self._words(headers)
        usage = {
            "input_tokens": uncached,
            "cache_creation_input_tokens": w5 + w1,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
            "output_tokens": output,
            "service_tier": "standard",
        }
        message = {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "".join(words)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not payload.get("stream"):
            await self._json(send, message, headers)
            return

        def ev(name: str, obj: Any) -> bytes:
            return f"event: {name}\ndata: ".encode() + _dumps(obj) + b"\n\n"

        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events = [ev("message_start", {"type": "message_start", "message": start})]
        events.append(
            ev(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        events.append(ev("ping", {"type": "ping"}))
        for w in words:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}
            events.append(ev("content_block_delta", delta))
        events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output},
                },
            )
        )
        events.append(ev("message_stop", {"type": "message_stop"}))
        await self._stream(send, events, headers)


class ServerThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(
        self,
        app: Any,
        *,
        lifespan: str = "on",
        log_level: str = "warning",
        keep_alive: int = 5,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        kwargs: dict[str, Any] = {
            "lifespan": lifespan,
            "log_level": log_level,
            "access_log": False,
            "server_header": False,
            "date_header": False,
            "http": "httptools",
            "loop": "asyncio",
            "timeout_graceful_shutdown": 5,
            "timeout_keep_alive": keep_alive,
        }
        # ``options``: a server's own settings (the sidecar's limits); the socket stays ours.
        kwargs.update({k: v for k, v in (options or {}).items() if k not in ("host", "port")})
        config = uvicorn.Config(app, **kwargs)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Run the fake upstream standalone: ``python -m tests.fakes.upstream PORT`` (bench).

    With port 0 (or none) it binds a free port and prints it as its first line of output.
    """
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    app = FakeUpstream()
    app.keep_requests = False
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools"
    )
    if port:
        uvicorn.Server(config).run()
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections wait in the backlog until uvicorn serves them
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    # The benchmarks stop the fake with SIGINT; uvicorn shuts down cleanly, then re-raises it.
    with contextlib.suppress(KeyboardInterrupt):
        main()
