"""The hot path: forward one request upstream and stream the response back, unchanged.

Lean by design (the latency budget is about a millisecond): a body already in memory goes straight
to :class:`~collector.proxy.transport.FastTransport`'s keep-alive pool (:meth:`FastTransport.request
<collector.proxy.transport.FastTransport.request>`: no httpx request or response objects); anything
else through one shared ``httpx.AsyncClient`` (from :func:`collector.core.http.make_async_client`); raw
ASGI instead of framework request/response objects, the request body forwarded as the bytes that
came in, the response forwarded chunk by chunk as raw (still encoded) bytes the moment they
arrive. To learn the stream flag the request body is scanned with a regular expression, and parsed
only when it may be a stream request (never re-encoded). Usage is parsed after the client has its last byte,
from a bounded copy of a JSON body or from the head and tail of an SSE stream
(:class:`Tap`), and the event goes to the recorder's queue: nothing on this path waits on the
database.

Hostile callers get nowhere (anyone who can reach the sidecar can send it anything): a path
with ``.``/``..`` segments, an encoded ``/``, ``?``, ``#`` or control characters is refused with
a 400 before anything is forwarded (:func:`check_path`); usage comes only from what the upstream
answered (the model its response names; a failed call is an error count without a model), never
from the request body; endpoint labels come from a fixed list (:func:`endpoint_name`); the
caller's headers are forwarded exactly, with none of the HTTP client's defaults added; a body that
stops arriving times out; bodies over :data:`MAX_READ_BODY`, or beyond the shared buffering
budget, are streamed through in chunks instead of being held in memory. Nothing a caller sent
(query string, header values, body) is logged.

The one rewrite: an OpenAI chat/completions stream requested without ``stream_options`` gets
``"stream_options":{"include_usage":true}`` spliced into its JSON (when
``proxy_include_usage`` is on) so the upstream reports usage (market-anchors §12.5, §12.10).
:class:`UsageChunkFilter` then removes what that option adds to the stream, the
``"usage":null`` field of every chunk and the final usage-only chunk, so the client receives
exactly the bytes it would have without the sidecar.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx

from collector.proxy.limits import BudgetGate, Limiter, Refusal, RefusalLog
from collector.proxy.limits import error_body as refusal_body
from collector.proxy.metrics import ProxyMetrics
from collector.proxy.recorder import Recorder, new_event_id
from collector.proxy.tokens import Fingerprinter, TokenInfo, hash_token
from collector.proxy.transport import FastTransport, RawResponse
from collector.proxy.usage import Usage, extract_json, extract_sse, usage_from_tail

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

#: Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1), the host, and our own token.
_DROP_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-monitor-token",
    }
)
_DROP_RESPONSE = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"trailer"})
#: A filtered stream changes length: its ``content-length`` goes too (the body is sent chunked).
_DROP_FILTERED = _DROP_RESPONSE | {b"content-length"}
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_INJECT = b',"stream_options":{"include_usage":true}'
_EVENT_END = re.compile(rb"(\r?\n\r?\n)")
#: An empty JSON array in any formatting: a usage-only chunk has ``"choices": []``, so an event
#: without one is passed on without being parsed (every chunk of an injected stream names usage).
_EMPTY_ARRAY = re.compile(rb"\[\s*\]")
#: An SSE event longer than this without a blank line means the filter does not understand the stream.
_MAX_EVENT = 1024 * 1024
#: Endpoints whose streams report usage only with ``stream_options.include_usage``.
_INCLUDE_USAGE_ENDPOINTS = frozenset({"chat.completions", "completions"})
#: A call still waiting for its upstream after this many seconds starts watching for its client leaving.
WATCH_AFTER = 0.05
#: Bodies up to this size are read whole before forwarding (to learn the stream flag); bigger
#: ones (uploads, huge prompts) are streamed through untouched, so memory per request stays small.
MAX_READ_BODY = 1024 * 1024
#: Endpoint labels the sidecar records: the first path segment after ``/v1`` when it is a known
#: API resource, else ``other`` (so a caller cannot mint new usage rows with invented paths).
KNOWN_ENDPOINTS = frozenset(
    {
        "assistants", "audio", "batches", "chat", "completions", "containers", "conversations", "embeddings",
        "evals", "files", "fine_tuning", "images", "messages", "models", "moderations", "realtime", "responses",
        "threads", "uploads", "vector_stores", "complete",
    }
)  # fmt: skip
#: Known two-segment endpoints (``chat.completions`` ...); other second segments are ids and dropped.
KNOWN_SUBENDPOINTS = frozenset(
    {
        "chat.completions", "images.generations", "images.edits", "images.variations", "audio.speech",
        "audio.transcriptions", "audio.translations", "messages.count_tokens", "messages.batches",
    }
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
#: Percent-escapes that would change how the upstream splits the path: ``/``, ``\``, ``?``, ``#``, ``.``, NUL, CR, LF.
_BAD_ESCAPE = re.compile(rb"%(2f|5c|3f|23|2e|00|0d|0a)", re.IGNORECASE)
#: Parsed upstream URLs kept at most (the cache is emptied past it).
URL_CACHE_SIZE = 1024
#: What a finished response's stream is replaced with (see :meth:`Forwarder._forward`).
_SPENT = httpx.ByteStream(b"")
#: A JSON response up to this size is copied whole and parsed; a bigger one by its tail.
MAX_JSON_COPY = 1024 * 1024
SSE_HEAD = 16 * 1024
TAIL = 64 * 1024


@dataclass(frozen=True, slots=True)
class Upstream:
    """One configured upstream: its route name, the provider it bills as, its API flavour and URL."""

    name: str
    provider: str
    flavor: str  # "openai", "anthropic" or "google": which usage shape its responses have
    base_url: str


class UpstreamCut(Exception):
    """The upstream dropped the connection mid-response; the client's connection is dropped too."""


class BodyTimeout(Exception):
    """The client stopped sending its request body for longer than ``proxy_body_timeout_seconds``."""


class Tap:
    """Keeps what usage parsing needs from a response: its head (or all of it) and its tail."""

    __slots__ = ("decoder", "head", "head_limit", "tail", "tail_limit", "total")

    def __init__(self, head_limit: int, tail_limit: int = TAIL, encoding: str = "") -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.head_limit = head_limit
        self.tail_limit = tail_limit
        self.total = 0
        self.decoder: Any = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self.decoder = zlib.decompressobj(wbits=47)
        elif encoding == "br":
            try:
                import brotli  # type: ignore[import-not-found]

                self.decoder = brotli.Decompressor()
                self.decoder.decompress = self.decoder.process
            except ImportError:  # pragma: no cover - depends on brotli being installed
                self.head_limit = self.tail_limit = 0
        elif encoding not in ("", "identity"):
            self.head_limit = self.tail_limit = 0  # unknown coding: usage stays unknown

    def feed(self, chunk: bytes) -> None:
        """Add a chunk of the response as it went to the client."""
        if self.decoder is not None:
            try:
                chunk = self.decoder.decompress(chunk)
            except Exception:  # noqa: BLE001  (a bad stream must not break forwarding)
                self.decoder, self.head_limit, self.tail_limit = None, 0, 0
                return
        self.total += len(chunk)
        head = self.head
        if len(head) < self.head_limit:
            head += chunk
            if len(head) <= self.head_limit:
                return
            # Head full: seed the tail with its end so an event on the boundary is kept whole.
            self.tail += head[-self.tail_limit :]
            del head[self.head_limit :]
            return
        if self.tail_limit:
            tail = self.tail
            tail += chunk
            if len(tail) > 2 * self.tail_limit:
                del tail[: -self.tail_limit]

    @property
    def complete(self) -> bool:
        """True when the head holds the whole body."""
        return self.total == len(self.head)


class UsageChunkFilter:
    """Removes what an injected ``include_usage`` adds to an OpenAI stream, event by event.

    OpenAI: "an additional chunk will be streamed before the data: [DONE] message ... the
    choices field will always be an empty array. All other chunks will also include a usage
    field, but with a null value." Both are removed; everything else passes byte for byte.
    """

    __slots__ = ("buf",)

    _NULLS = (b',"usage":null', b', "usage": null', b'"usage":null,', b'"usage": null, ')

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """Complete events of the stream so far, filtered; a partial event waits for its end."""
        buf = self.buf
        buf += chunk
        lf, crlf = buf.rfind(b"\n\n"), buf.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf >= 0 else -1, crlf + 4 if crlf >= 0 else -1)
        if end < 0:
            if len(buf) > _MAX_EVENT:  # not an event stream we understand: stop filtering, never buffer
                return self.flush()
            return b""
        complete = bytes(buf[:end])
        del buf[:end]
        if b'"usage"' not in complete:
            return complete
        parts = _EVENT_END.split(complete)  # [event, separator, event, separator, ..., ""]
        out = []
        for event, sep in zip(parts[0::2], parts[1::2], strict=False):
            if b'"usage"' in event:
                if self._usage_only(event):
                    continue
                for null in self._NULLS:
                    if null in event:
                        event = event.replace(null, b"")
                        break
            out.append(event + sep)
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever is left when the upstream ends (normally nothing)."""
        rest = bytes(self.buf)
        self.buf.clear()
        return rest

    @staticmethod
    def _usage_only(event: bytes) -> bool:
        if _EMPTY_ARRAY.search(event) is None:
            return False  # no "choices": [] anywhere: a content chunk, known without parsing its JSON
        data = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
        if not data.startswith(b"{"):
            return False
        try:
            payload = json.loads(data)
        except ValueError:
            return False
        return isinstance(payload, dict) and payload.get("choices") == [] and isinstance(payload.get("usage"), dict)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    """A header's value (lower-case ``name``), repeats joined with ``, `` as httpx's ``Headers.get`` does."""
    values = [v for n, v in headers if n == name]
    return values[0] if len(values) == 1 else b", ".join(values)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body length the client is promised, if the response declares one."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


#: Gemini / Vertex AI model methods (``models/{model}:{method}``) recorded as endpoints.
GOOGLE_METHODS = frozenset(
    {
        "generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents",
        "predict", "rawPredict", "streamRawPredict", "computeTokens",
    }
)  # fmt: skip


def google_endpoint(rest: str) -> str:
    """The method of a Gemini/Vertex path (``generateContent`` ...), ``models`` or ``other``.

    Model names sit inside the path (``/v1beta/models/gemini-2.5-flash:generateContent``), so
    only the method after the last ``:`` is a label; unknown methods are ``other``.
    """
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        method = last.rsplit(":", 1)[1]
        return method if method in GOOGLE_METHODS else "other"
    return "models" if "/models" in rest else "other"


def query_key(query: bytes) -> bytes:
    """The value of a ``key=`` query parameter (Gemini's other way to send the API key), or b''."""
    for pair in query.split(b"&"):
        if pair[:4] == b"key=":
            return unquote_to_bytes(pair[4:])
    return b""


def endpoint_name(rest: str) -> str:
    """A short endpoint label from the path after ``/v1``: ``chat.completions``, ``responses`` ...

    Only labels from :data:`KNOWN_ENDPOINTS` / :data:`KNOWN_SUBENDPOINTS` are kept; anything else
    is ``other``, so the labels (and the usage rows keyed by them) stay a small, fixed set.
    """
    parts = [p for p in rest.split("/") if p][:2]
    if not parts:
        return ""
    if parts[0] not in KNOWN_ENDPOINTS:
        return "other"
    pair = ".".join(parts)
    return pair if pair in KNOWN_SUBENDPOINTS else parts[0]


#: How the last event of a complete stream starts: OpenAI chat and completions, the responses
#: API, Anthropic messages (provider-apis.md on each provider's streaming format).
_STREAM_ENDS = (b"data: [DONE]", b"data:[DONE]", b"event: response.completed", b"event: message_stop")


def stream_finished(tap: Tap) -> bool:
    """True when the stream seen so far ends with its provider's final event."""
    data = bytes(tap.tail or tap.head).rstrip()
    cut = max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n"))
    last = data[cut:].lstrip() if cut >= 0 else data
    return last.startswith(_STREAM_ENDS)


def check_path(path: str, raw_path: bytes | None) -> str:
    """Why a request path must not be forwarded, or ``''`` when it may be.

    ``..`` segments would be resolved by the HTTP client and reach another upstream path (or,
    through ``/u/<name>/v1/../../<other>/v1``, another tenant's route with the caller's key);
    encoded ``/``, ``?``, ``#`` or dots split differently upstream than here; control
    characters cannot be sent at all.
    """
    if raw_path is not None and _BAD_ESCAPE.search(raw_path):
        return "encoded '/', '\\', '?', '#', '.' or control characters are not allowed in the path"
    if _CONTROL.search(path):
        return "control characters or '\\' are not allowed in the path"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "'.' and '..' path segments are not allowed"
    return ""


def clean_model(model: str) -> str:
    """The model an upstream named, as a label: printable, without spaces, at most 128 characters.

    Every call passes here, and nearly every name is clean already: two whole-string checks in C
    say so without a Python step per character (``str.split()`` splits on exactly the characters
    ``str.isspace`` names).
    """
    if model.isprintable() and model.split() == [model]:
        return model[:128]
    return "".join(c for c in model if c.isprintable() and not c.isspace())[:128]


def error_body(upstream: Upstream, kind: str, message: str) -> bytes:
    """The 502 JSON the client gets when the upstream cannot answer (OpenAI's error shape)."""
    return json.dumps(
        {"error": {"message": f"proxy: upstream '{upstream.name}' {message}", "type": kind, "upstream": upstream.name}}
    ).encode()


class _Disconnect:
    """Notices a client that goes away before its response is complete.

    Waiting for the disconnect costs a task per request, so a call only gets one once it has
    waited ``WATCH_AFTER`` seconds for its upstream, or when its response is a stream; quick calls,
    most of the sidecar's traffic by count, never pay for it. Before a stream starts, a disconnect
    only sets :attr:`gone`: the upstream still answers and bills, and its usage is recorded. During a
    stream it also cancels the relay, which closes the upstream connection as the client did.
    """

    __slots__ = ("cancel", "cancelled", "done", "gone", "receive", "task", "timer", "watcher")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.task = asyncio.current_task()
        self.gone = False
        self.done = False
        self.cancel = False
        self.cancelled = False
        self.timer: asyncio.TimerHandle | None = None
        self.watcher: asyncio.Task[None] | None = None

    def arm(self) -> None:
        """Start watching if the call is still running ``WATCH_AFTER`` seconds from now."""
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER, self.start)

    def start(self) -> None:
        """Start watching now."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.watcher is None and not self.done:
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    def stream(self) -> None:
        """The response is a stream: from now on a disconnect cancels the relay."""
        self.cancel = True
        if self.gone:
            self._cancel()
        else:
            self.start()

    def close(self) -> None:
        """The response is complete (or abandoned): stop watching."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.watcher is not None:
            self.watcher.cancel()
            # The cancelled watcher keeps its CancelledError, whose traceback holds the watcher's
            # frame and so this object: without letting go of both tasks here, every streamed call
            # would leave a reference cycle for the cycle collector.
            self.watcher = None
        self.task = None

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                # uvicorn also answers "disconnect" once the response is complete: not a departure.
                if not self.done:
                    self.gone = True
                    if self.cancel:
                        self._cancel()
                return

    def _cancel(self) -> None:
        if self.task is not None and not self.done:
            self.cancelled = True
            self.task.cancel()


class Forwarder:
    """Forwards requests for the configured upstreams and records one event per call."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        recorder: Recorder,
        metrics: ProxyMetrics,
        tokens: Callable[[], dict[str, TokenInfo]],
        fingerprint: Fingerprinter,
        *,
        include_usage: bool = True,
        require_token: bool = False,
        body_timeout: float | None = 30.0,
        buffer_budget: int = 64 * 1024 * 1024,
        limiter: Limiter | None = None,
        gate: BudgetGate | None = None,
        refusals: RefusalLog | None = None,
        fast: FastTransport | None = None,
    ) -> None:
        self.client = client
        #: The client's transport when it is the sidecar's own: calls whose body is in memory
        #: skip httpx's request/response objects and go to its connection pool directly.
        self.fast = fast
        #: Per-request timeouts, computed once (the client's own, as ``client.send`` would use).
        self.timeouts = client.timeout.as_dict()
        self.extensions = {"timeout": self.timeouts}
        self.limiter = limiter
        self.gate = gate
        self.refusals = refusals or RefusalLog()
        self.recorder = recorder
        self.metrics = metrics
        self.tokens = tokens
        self.fingerprint = fingerprint
        self.include_usage = include_usage
        self.require_token = require_token
        self.body_timeout = body_timeout
        #: Bytes of request bodies all requests together may hold in memory; past it, stream.
        self.buffer_budget = buffer_budget
        self.buffered = 0
        #: Parsed upstream URLs by their text (see :meth:`_url`).
        self._urls: dict[str, httpx.URL] = {}

    async def _receive(self, receive: Receive) -> dict[str, Any]:
        """The next ASGI message, or :class:`BodyTimeout` when the client stops sending its body."""
        try:
            async with asyncio.timeout(self.body_timeout):  # no extra task, unlike wait_for
                return await receive()  # type: ignore[no-any-return]
        except TimeoutError:
            raise BodyTimeout from None

    async def handle(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream, rest: str) -> None:
        """Serve one proxied request (ASGI ``http`` scope)."""
        started = time.perf_counter()
        event: dict[str, Any] = {
            "id": new_event_id(),
            "ts": time.time(),
            "provider": upstream.provider,
            "upstream": upstream.name,
            "endpoint": google_endpoint(rest) if upstream.flavor == "google" else endpoint_name(rest),
            "method": scope["method"],
            "model": "",
            "status": 0,
            "stream": False,
            "partial": False,
            "usage_known": False,
            "error": "",
            "input_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_5m_tokens": 0,
            "cache_write_1h_tokens": 0,
            "output_tokens": 0,
            "reasoning_tokens": 0,
            "latency_ms": 0.0,
            "ttfb_ms": 0.0,
            "team": "",
            "project": "",
            "token_id": 0,
            "api_key_fp": "",
            "service_tier": "",
            "response_id": "",
            "client_gone": False,
        }
        headers, length, key, info = self._request_headers(scope, event)
        if self.require_token and info is None:
            await self.refuse(send, 403, "monitor_token_required", "a valid X-Monitor-Token header is required")
            self.metrics.observe(upstream.name, 403, time.perf_counter() - started, 0.0, "monitor_token_required")
            return  # nothing forwarded, nothing recorded: only the metric counts it
        if upstream.flavor == "google":
            # Gemini: the method says whether it streams; the key may be ?key= instead of a header.
            event["stream"] = event["endpoint"] == "streamGenerateContent"
            if not key and scope.get("query_string"):
                key = query_key(scope["query_string"])
        if key:
            event["api_key_fp"] = self.fingerprint(key)
        if info is not None and (refusal := await self._enforce(info, upstream, event["api_key_fp"])):
            await self._refuse_call(receive, send, upstream, info, refusal, started)
            return  # nothing forwarded, nothing recorded as usage: a refusal event and metrics only
        try:
            await self._handle(scope, receive, send, upstream, rest, event, headers, length, started)
        finally:
            if info is not None and info.tpm_limit and event["usage_known"] and self.limiter is not None:
                self.limiter.used(info, event["input_tokens"] + event["output_tokens"])

    async def _enforce(self, info: TokenInfo, upstream: Upstream, key_fp: str) -> Refusal | None:
        """A refusal when the token's budget cap or rate limit says no (both opt-in), else None."""
        gate = self.gate
        if gate is not None and gate.over and (refusal := gate.check(info, upstream.provider, key_fp)):
            return refusal
        if self.limiter is not None and (info.rpm_limit or info.tpm_limit):
            return await self.limiter.check(info)
        return None

    async def _refuse_call(
        self, receive: Receive, send: Send, upstream: Upstream, info: TokenInfo, refusal: Refusal, started: float
    ) -> None:
        """Answer a refused call in its upstream's error format, after reading (and dropping) its body."""
        close = False
        try:
            while True:
                message = await self._receive(receive)
                if message["type"] != "http.request":
                    return  # the client left
                if not message.get("more_body"):
                    break
        except BodyTimeout:
            close = True
        body = refusal_body(upstream.flavor, refusal)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(refusal.retry_after).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self.refusals.add(refusal, upstream.name, info)
        self.metrics.refusals.labels(upstream.name, refusal.kind).inc()
        self.metrics.observe(upstream.name, refusal.status, time.perf_counter() - started, 0.0, refusal.kind)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        upstream: Upstream,
        rest: str,
        event: dict[str, Any],
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        started: float,
    ) -> None:
        reserved = 0
        try:
            first = await self._receive(receive)
            if first["type"] != "http.request":
                return  # the client left before sending its request
            body = first.get("body", b"")
            more = first.get("more_body", False)
            small = (length is not None and length <= MAX_READ_BODY) or (length is None and not more)
            if small and length and self.buffered + length > self.buffer_budget:
                small = False  # too many bodies in memory right now: stream this one through
            content: bytes | AsyncIterator[bytes]
            filt: UsageChunkFilter | None = None
            if more and not small:
                content = self._stream_body(body, receive)
                if length is not None:
                    headers.append((b"content-length", str(length).encode()))
            else:
                reserved = length or 0
                self.buffered += reserved
                if more:
                    body = await self._read_body(body, receive)
                    if body is None:
                        return  # client gone before its body arrived: nothing was forwarded
                if body:
                    body, filt = self._inspect(body, upstream, event)
                content = body
            await self._forward(scope, receive, send, upstream, rest, event, headers, content, filt, started)
        except BodyTimeout:
            await self.refuse(send, 408, "body_timeout", "the request body stopped arriving")
            self.metrics.observe(upstream.name, 408, time.perf_counter() - started, 0.0, "body_timeout")
        finally:
            self.buffered -= reserved

    async def _read_body(self, first: bytes, receive: Receive) -> bytes | None:
        """The whole (small, Content-Length-framed) body, gathered in one growing buffer."""
        buf = bytearray(first)
        while True:
            message = await self._receive(receive)
            if message["type"] != "http.request":
                return None
            buf += message.get("body", b"")  # the server holds the body to its Content-Length
            if not message.get("more_body"):
                return bytes(buf)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        upstream: Upstream,
        rest: str,
        event: dict[str, Any],
        headers: list[tuple[bytes, bytes]],
        content: bytes | AsyncIterator[bytes],
        filt: UsageChunkFilter | None,
        started: float,
    ) -> None:
        guard = _Disconnect(receive)
        if isinstance(content, bytes):  # a streamed body is still being received: armed once it is sent
            guard.arm()
        try:
            response: RawResponse | httpx.Response
            try:
                url = self._url(upstream.base_url + rest, scope.get("query_string"))
                method = scope["method"]
                if self.fast is not None and isinstance(content, bytes) and self.fast.direct(method, url):
                    response = await self.fast.request(method, url, headers, content, self.timeouts)
                else:
                    # httpx.Request, not client.build_request: the client would add its own Accept,
                    # Accept-Encoding and User-Agent (a client that never asked for gzip would get gzip).
                    request = httpx.Request(method, url, headers=headers, content=content, extensions=self.extensions)
                    response = await self.client.send(request, stream=True)
            except httpx.InvalidURL:
                await self.refuse(send, 400, "invalid_request", "the request URL cannot be forwarded")
                return
            except httpx.TimeoutException:
                await self._fail(send, upstream, event, started, guard, "upstream_timeout", "timed out")
                return
            except httpx.TransportError as exc:
                if isinstance(exc.__context__, BodyTimeout) or isinstance(exc.__cause__, BodyTimeout):
                    raise BodyTimeout from None
                kind, message = "upstream_unreachable", f"unreachable ({type(exc).__name__})"
                await self._fail(send, upstream, event, started, guard, kind, message)
                return
            try:
                if not isinstance(content, bytes):
                    guard.arm()
                if isinstance(response, RawResponse):
                    status, raw = response.status, response.headers
                else:
                    status, raw = response.status_code, response.headers.raw
                await self._relay(send, upstream, event, status, raw, response.aiter_raw(), filt, started, guard)
            finally:
                await response.aclose()
                if isinstance(response, httpx.Response):
                    # httpx binds a response and its stream to each other: a reference cycle per
                    # call, with the request, headers and URL hanging off it, which only the cycle
                    # collector would free (its pauses land in the latency tail). Unbound, it is
                    # freed right here.
                    response.stream = _SPENT
        finally:
            guard.close()

    def _url(self, url: str, query: bytes | None) -> httpx.URL:
        """The upstream URL, parsed once per path: httpx's parsing costs about a tenth of a call's CPU.

        A URL with a query string is never kept (it may carry a key, ``?key=``); the cache is
        emptied when full, so paths with ids in them cannot grow it.

        Raises:
            httpx.InvalidURL: the URL cannot be forwarded.
        """
        if query:
            return httpx.URL(url + "?" + query.decode("latin-1"))
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    @staticmethod
    async def refuse(send: Send, status: int, kind: str, message: str) -> None:
        """A JSON error from the sidecar itself (OpenAI's error shape); nothing was forwarded."""
        body = json.dumps({"error": {"message": f"proxy: {message}", "type": kind}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status in (400, 408):
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _request_headers(
        self, scope: Scope, event: dict[str, Any]
    ) -> tuple[list[tuple[bytes, bytes]], int | None, bytes, TokenInfo | None]:
        out: list[tuple[bytes, bytes]] = []
        length: int | None = None
        key = b""
        info: TokenInfo | None = None
        for name, value in scope["headers"]:
            if name in _DROP_REQUEST:
                if name == b"x-monitor-token":
                    info = self.tokens().get(hash_token(value.decode("latin-1")))
                    if info is not None:
                        event["team"], event["project"], event["token_id"] = info.team, info.project, info.id
                continue
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                continue
            if name == b"authorization":
                key = value[7:] if value[:7].lower() == b"bearer " else value
            elif name in (b"x-api-key", b"api-key", b"x-goog-api-key"):
                key = value
            out.append((name, value))
        return out, length, key, info

    async def _stream_body(self, first: bytes, receive: Receive) -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            message = await self._receive(receive)
            if message["type"] != "http.request":
                return
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body"):
                return

    def _inspect(self, body: bytes, upstream: Upstream, event: dict[str, Any]) -> tuple[bytes, UsageChunkFilter | None]:
        """Learn the stream flag from the body's top level; splice in ``include_usage`` when asked.

        The cheap regular expression only says whether ``"stream": true`` appears anywhere (a
        tool's JSON schema may hold one); the body is parsed only then, and only its top-level
        ``stream`` and ``stream_options`` keys count.
        """
        if _STREAM_TRUE.search(body) is None:
            return body, None
        try:
            payload = json.loads(body)
        except ValueError:
            return body, None
        if not isinstance(payload, dict) or payload.get("stream") is not True:
            return body, None
        event["stream"] = True
        if (
            self.include_usage
            and upstream.flavor == "openai"
            and event["endpoint"] in _INCLUDE_USAGE_ENDPOINTS
            and "stream_options" not in payload
        ):
            end = body.rstrip().rfind(b"}")  # the top-level object's closing brace
            if end > 0 and body[:end].rstrip()[-1:] not in (b"{", b","):
                return body[:end] + _INJECT + body[end:], UsageChunkFilter()
        return body, None

    async def _fail(
        self,
        send: Send,
        upstream: Upstream,
        event: dict[str, Any],
        started: float,
        guard: _Disconnect,
        kind: str,
        message: str,
    ) -> None:
        event["status"], event["error"] = 502, kind
        guard.close()
        self._gone(event, guard)
        self._finish(event, started, None, None)  # journaled before the client can have the answer
        body = error_body(upstream, kind, message)
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _relay(
        self,
        send: Send,
        upstream: Upstream,
        event: dict[str, Any],
        status: int,
        raw: list[tuple[bytes, bytes]],
        chunks: AsyncIterator[bytes],
        filt: UsageChunkFilter | None,
        started: float,
        guard: _Disconnect,
    ) -> None:
        """Stream the response to the client; the event is journaled before its last byte leaves.

        The last byte is the one that completes what the client was promised: the body's
        ``content-length``, or else the end of the chunked body. So a call the client received
        completely has its event on disk even if the process dies right after.
        """
        event["status"] = status
        if status >= 400:
            event["error"] = f"http_{status}"
        headers = [(n.lower(), v) for n, v in raw]
        sse = _header(headers, b"content-type").startswith(b"text/event-stream")
        event["stream"] = event["stream"] or sse
        if not sse:
            filt = None  # the upstream answered without a stream (e.g. an error): nothing to filter
        drop = _DROP_RESPONSE if filt is None else _DROP_FILTERED
        headers = [(n, v) for n, v in headers if n not in drop]
        left = _content_length(headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        coding = _header(headers, b"content-encoding").decode("latin-1").lower()
        tap = Tap(SSE_HEAD if sse else MAX_JSON_COPY, TAIL, coding)
        ttfb = None
        ended = False  # the client has its response's last message
        if sse:
            guard.stream()
        try:
            async for chunk in chunks:
                if ttfb is None:
                    ttfb = time.perf_counter()
                tap.feed(chunk)
                if filt is not None:
                    chunk = filt.feed(chunk)
                    if not chunk:
                        continue
                if left is not None:
                    left -= len(chunk)
                    if left <= 0 and not guard.done:  # this chunk completes the body
                        self._complete(event, started, ttfb, upstream, tap, sse, guard)
                        # ... and ends the response: one message (and one write) fewer per call.
                        await send({"type": "http.response.body", "body": chunk, "more_body": False})
                        ended = True
                        continue
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if filt is not None and (rest := filt.flush()):
                await send({"type": "http.response.body", "body": rest, "more_body": True})
            if not guard.done:
                self._complete(event, started, ttfb, upstream, tap, sse, guard)
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not guard.cancelled:  # not ours (e.g. the server's forced shutdown)
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if not guard.done:
                # A client may hang up as soon as it has the stream's last event (the OpenAI SDK
                # closes the response at "data: [DONE]"), before the upstream's end-of-body marker
                # reached us: that call is complete (its client left early, but not mid-answer).
                finished = stream_finished(tap)
                event["partial"] = not finished
                self._complete(event, started, ttfb, upstream, tap, sse, guard, error=not finished)
        except (httpx.TransportError, httpx.StreamError) as exc:
            if guard.done:  # the body was complete and recorded; only the connection's end failed
                return
            timeout = isinstance(exc, httpx.TimeoutException)
            event["partial"], event["error"] = True, "upstream_timeout" if timeout else "upstream_cut"
            self._complete(event, started, ttfb, upstream, tap, sse, guard)
            raise UpstreamCut(f"upstream '{upstream.name}' {event['error']}") from None

    def _complete(
        self,
        event: dict[str, Any],
        started: float,
        ttfb: float | None,
        upstream: Upstream,
        tap: Tap,
        sse: bool,
        guard: _Disconnect,
        *,
        error: bool = True,
    ) -> None:
        guard.close()
        self._gone(event, guard, error=error)
        self._finish(event, started, ttfb, self._usage(upstream, tap, sse))

    @staticmethod
    def _gone(event: dict[str, Any], guard: _Disconnect, *, error: bool = True) -> None:
        """Flag a call whose client left; it is still recorded with whatever the upstream returned."""
        if guard.gone:
            event["client_gone"] = True
            if error and not event["error"]:
                event["error"] = "client_disconnected"

    @staticmethod
    def _usage(upstream: Upstream, tap: Tap, sse: bool) -> Usage | None:
        if not tap.total:
            return None
        try:
            if sse:
                return extract_sse(upstream.flavor, bytes(tap.head), bytes(tap.tail))
            if tap.complete:
                return extract_json(upstream.flavor, bytes(tap.head))
            return usage_from_tail(upstream.flavor, bytes(tap.tail))
        except Exception:  # noqa: BLE001  (a parser bug must not lose the event)
            log.warning("usage parsing failed for a %s response", upstream.name)
            return None

    def _finish(self, event: dict[str, Any], started: float, ttfb: float | None, usage: Usage | None) -> None:
        now = time.perf_counter()
        event["latency_ms"] = round((now - started) * 1000, 3)
        event["ttfb_ms"] = round((ttfb - started) * 1000, 3) if ttfb is not None else 0.0
        if usage is not None:
            if usage.model and 200 <= event["status"] < 400:
                event["model"] = clean_model(usage.model)  # what the upstream answered, never the request
            event["service_tier"] = usage.service_tier
            event["response_id"] = usage.response_id
            if usage.known:
                event["usage_known"] = True
                event["input_tokens"] = usage.input_tokens
                event["cache_read_tokens"] = usage.cache_read_tokens
                event["cache_write_5m_tokens"] = usage.cache_write_5m_tokens
                event["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
                event["output_tokens"] = usage.output_tokens
                event["reasoning_tokens"] = usage.reasoning_tokens
        self.recorder.record(event)
        # Metrics need no durability: observed once the task yields, after the response's last byte.
        asyncio.get_running_loop().call_soon(
            self.metrics.observe,
            event["upstream"],
            event["status"],
            now - started,
            (ttfb - started) if ttfb else 0.0,
            event["error"],
        )
