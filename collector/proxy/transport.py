"""A lean HTTP/1.1 transport for the sidecar's ``httpx.AsyncClient``.

Why: httpx's default transport (httpcore over anyio, with the pure-Python ``h11`` parser) costs
about 0.7 ms of CPU per request on this project's 2-core reference machine, which is more than the
sidecar's whole latency budget (about 1 ms added at p50). This transport keeps the
``httpx`` client API (requests, responses, streaming, exceptions) and replaces only the wire:
``asyncio`` protocols (uvloop's when uvicorn runs on it) and ``httptools``, the C HTTP parser
uvicorn itself uses. One request is one ``write()`` of head and body; response bytes are handed
to the reader the moment they arrive. The sidecar's forwarder calls :meth:`FastTransport.request`
directly for bodies in memory, skipping httpx's request and response objects as well.

Scope: ``http``/``https`` requests whose body is already in memory (the proxy's JSON bodies).
Streamed request bodies (large uploads) and ``HEAD`` go through httpx's own transport. Errors are
the ones httpx raises (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``RemoteProtocolError``), so callers cannot tell the difference. ``LLM_USAGE_PROXY_FAST_TRANSPORT
=false`` switches back to httpx's transport entirely.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

#: Stop reading from the upstream while this much response data waits for a slow client.
_HIGH_WATER = 1024 * 1024
_LOW_WATER = 256 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an upstream, parsing responses with httptools."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.headers_done = False
        self.done = False
        self.closed = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        #: When the current wait times out (loop time), and the one timer that checks it.
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.keep_alive = False

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response from upstream: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()  # whoever waits is woken below, and nothing waits on this connection again
        if self.headers_done and not self.done and exc is None and not self._framed():
            # A body without Content-Length or chunking ends when the server closes (RFC 9112 §6.3).
            self.done = True
            self.keep_alive = False
            self._wake()
        if not self.done:
            self._fail(httpx.RemoteProtocolError("upstream closed the connection before the response was complete"))

    def _framed(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" in names or b"transfer-encoding" in names

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim response: its headers are not the response's
            self.headers = []
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status:
            self.done = True
            self._wake()

    # -- reader side ----------------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Wait for the next parser event (or an error); raise ``ReadTimeout`` after ``timeout``.

        A stream waits once per chunk; scheduling and cancelling a timer each time cost more than
        the chunk's own work. So a wait only moves :attr:`deadline`, and one timer per connection
        checks it when it fires (and re-arms itself for a deadline that moved on).
        """
        waiter = self.waiter = self.loop.create_future()
        if timeout:
            self.deadline = self.loop.time() + timeout
            if self.timer is None:
                self.timer = self.loop.call_at(self.deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self.waiter = None

    def _check_deadline(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms a timer again
        if self.loop.time() >= self.deadline:
            waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream"))
        else:
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def take(self) -> bytes:
        """All response bytes received so far."""
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reset(self) -> None:
        """Ready for the next request on this connection."""
        self.headers, self.status, self.headers_done, self.done, self.error = [], 0, False, False, None
        self.chunks.clear()
        self.buffered = 0
        self._stop_timer()  # an idle connection in the pool needs none

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """The response body, streamed from the connection; returns it to the pool when finished."""

    def __init__(self, pool: FastTransport, key: tuple[str, str, int], conn: _Connection, timeout: float | None):
        self.pool, self.key, self.conn, self.timeout = pool, key, conn, timeout
        self.complete = False
        self.released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        while True:
            if conn.chunks:
                yield conn.take()
                continue
            if conn.done:
                break
            if conn.error is not None:
                raise conn.error
            await conn.wait(self.timeout)
        self.complete = True

    async def aclose(self) -> None:
        if self.released:
            return
        self.released = True
        conn = self.conn
        if self.complete and conn.keep_alive and not conn.closed and conn.error is None:
            conn.reset()
            self.pool.release(self.key, conn)
        else:
            conn.close()  # unread body or broken: this connection cannot carry another request


class RawResponse:
    """A response as :meth:`FastTransport.request` returns it: status, raw headers, raw body.

    ``headers`` are as the upstream sent them (original case, repeats kept); ``body`` yields the
    still-encoded bytes as they arrive and must be closed (:meth:`aclose`) to return the connection.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: _Body) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return self.body.__aiter__()

    async def aclose(self) -> None:
        await self.body.aclose()


class FastTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over asyncio + httptools, falling back to httpx's transport when needed.

    Args:
        connect_timeout: seconds to open a connection (TLS included).
        read_timeout: seconds to wait for the next bytes of a response.
        max_idle: idle connections kept per upstream host.
        fallback: the transport for streamed request bodies and HEAD.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = 600.0,
        max_idle: int = 512,
        fallback: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self.fallback = fallback or httpx.AsyncHTTPTransport()
        self.idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    def release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        idle = self.idle.setdefault(key, [])
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls: Any = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=tls, server_hostname=host if tls else None
                ),
                timeout,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if (
            url.scheme not in ("http", "https")
            or request.method == "HEAD"
            or not isinstance(request.stream, httpx.ByteStream)
        ):
            return await self.fallback.handle_async_request(request)
        timeouts = request.extensions.get("timeout", {})
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        conn, body = await self._send(key, b"".join(head) + request.content, timeouts)
        return httpx.Response(conn.status, headers=conn.headers, stream=body, extensions={"http_version": b"HTTP/1.1"})

    async def request(
        self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]], content: bytes, timeouts: dict[str, Any]
    ) -> RawResponse:
        """Send one request whose body is in memory, without building httpx's request and response.

        The sidecar's hot path: httpx's ``Request``, ``Headers``, ``Response`` and ``send``
        machinery cost more CPU per call than the wire itself. The bytes on the wire are exactly
        what ``httpx.Request(method, url, headers=headers, content=content)`` would send: ``Host``
        first, the headers as given, then ``Content-Length`` (an empty POST, PUT or PATCH gets
        ``Content-Length: 0`` before the headers, as httpx places it). ``url`` must be
        ``http``/``https`` and ``method`` not ``HEAD`` (see :meth:`direct`). Raises the same httpx
        exceptions as :meth:`handle_async_request`.
        """
        scheme = url.scheme
        head = [method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\nHost: ", url.netloc, b"\r\n"]
        if not content and method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: 0\r\n")  # httpx puts this one before the caller's headers
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        if content:
            head += [b"Content-Length: ", str(len(content)).encode(), b"\r\n"]
        head.append(b"\r\n")
        key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        conn, body = await self._send(key, b"".join(head) + content, timeouts)
        return RawResponse(conn.status, conn.headers, body)

    @staticmethod
    def direct(method: str, url: httpx.URL) -> bool:
        """True when :meth:`request` serves this call (else it goes through httpx and the fallback).

        An upstream URL with credentials in it (``https://user:pass@host``) stays with httpx, whose
        client turns them into a ``Basic`` authorization header.
        """
        return method != "HEAD" and url.scheme in ("http", "https") and not url.userinfo

    async def _send(
        self, key: tuple[str, str, int], payload: bytes, timeouts: dict[str, Any]
    ) -> tuple[_Connection, _Body]:
        """Write ``payload`` on an idle connection (or a new one) and wait for the response head."""
        read_timeout = timeouts.get("read", self.read_timeout)
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(key, conn, payload, read_timeout)
            except httpx.RemoteProtocolError:
                if conn.headers_done:
                    raise
                # The upstream closed this idle connection as we reused it: retry on a new one.
        conn = await self._connect(key, timeouts.get("connect", self.connect_timeout))
        return await self._exchange(key, conn, payload, read_timeout)

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Connection, payload: bytes, read_timeout: float | None
    ) -> tuple[_Connection, _Body]:
        assert conn.transport is not None
        conn.transport.write(payload)
        try:
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            conn.close()
            raise
        return conn, _Body(self, key, conn, read_timeout)

    async def aclose(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()
        await self.fallback.aclose()
