"""The sidecar's asyncio + httptools transport: keep-alive reuse and upstreams that close idle connections."""

import asyncio
import time

import httpx
import pytest

from collector.proxy.transport import FastTransport
from tests.fakes.upstream import FakeUpstream, ServerThread

BODY = {"model": "gpt-4o-mini", "messages": []}


async def calls(url: str, pause: float) -> list[tuple[int, int]]:
    transport = FastTransport(read_timeout=5)
    out = []
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            r = await client.post(url, json=BODY)
            out.append((r.status_code, sum(len(c) for c in transport.idle.values())))
            await asyncio.sleep(pause)
        r = await client.post(url, json={**BODY, "stream": True})
        out.append((r.status_code, len(r.content)))
    return out


def test_connections_are_reused_and_idle_closes_by_the_upstream_are_survived():
    with ServerThread(FakeUpstream(), keep_alive=1) as server:
        url = f"{server.url}/v1/chat/completions"
        quick = asyncio.run(calls(url, 0))
        assert [s for s, _ in quick] == [200] * 4
        assert [n for _, n in quick[:3]] == [1, 1, 1]  # one connection, reused
        started = time.monotonic()
        slow = asyncio.run(calls(url, 1.3))  # the upstream drops each idle connection after 1 s
        assert [s for s, _ in slow] == [200] * 4 and time.monotonic() - started < 10


def test_refused_connection_is_httpx_connect_error():
    async def go() -> None:
        async with httpx.AsyncClient(transport=FastTransport()) as client:
            await client.get("http://127.0.0.1:9/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(go())


def test_close_delimited_and_truncated_bodies():
    async def serve(reader, writer, body: bytes, length: int | None) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        head += b"content-length: %d\r\n" % length if length is not None else b"connection: close\r\n"
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        writer.close()

    async def fetch(length: int | None) -> bytes:
        body = b"data: {}\n\ndata: [DONE]\n\n"
        server = await asyncio.start_server(lambda r, w: serve(r, w, body, length), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(transport=FastTransport(read_timeout=5)) as client:
                r = await client.get(f"http://127.0.0.1:{port}/")
                return r.content
        finally:
            server.close()

    assert asyncio.run(fetch(None)) == b"data: {}\n\ndata: [DONE]\n\n"  # ends at close: complete
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(fetch(500))  # promised 500 bytes, closed early: truncated


async def _captured(send_one) -> bytes:  # type: ignore[no-untyped-def]
    """The bytes of one request as a raw server receives them (answered with an empty 200)."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
        )
        got.set_result(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        await send_one(server.sockets[0].getsockname()[1])
        return await got
    finally:
        server.close()


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/v1/chat/completions", b'{"model":"m"}'),
        ("POST", "/v1/chat/completions", b""),
        ("GET", "/v1/models", b""),
        ("DELETE", "/v1/files/file-1?x=%20y&key=a%2Fb", b""),
        ("PUT", "/v1/caf\u00e9 path", b"\x00\xff binary"),
    ],
)
def test_direct_requests_send_exactly_the_bytes_httpx_would(method, path, content):
    """The hot path writes the request itself; what the upstream receives must not change by a byte."""
    headers = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-x"), (b"x-odd", b"a\tb\x80")]

    async def via_httpx(port: int) -> None:
        async with httpx.AsyncClient(transport=FastTransport(read_timeout=5)) as client:
            request = httpx.Request(method, f"http://127.0.0.1:{port}{path}", headers=headers, content=content)
            (await client.send(request)).raise_for_status()

    async def direct(port: int) -> None:
        transport = FastTransport(read_timeout=5)
        url = httpx.URL(f"http://127.0.0.1:{port}{path}")
        assert transport.direct(method, url)
        response = await transport.request(method, url, headers, content, {"read": 5, "connect": 5})
        assert response.status == 200 and [c async for c in response.aiter_raw()] == []
        await response.aclose()
        await transport.aclose()

    async def both() -> tuple[bytes, bytes]:
        return await _captured(via_httpx), await _captured(direct)

    expected, sent = asyncio.run(both())
    port_free = [line for line in expected.split(b"\r\n") if not line.startswith(b"Host: ")]
    assert [line for line in sent.split(b"\r\n") if not line.startswith(b"Host: ")] == port_free
    assert sent.split(b"\r\n")[1].startswith(b"Host: 127.0.0.1:") and expected.split(b"\r\n")[1].startswith(b"Host: ")


def test_direct_requests_raise_httpx_errors_and_reuse_connections():
    async def go() -> None:
        transport = FastTransport(read_timeout=5)
        with pytest.raises(httpx.ConnectError):
            await transport.request("POST", httpx.URL("http://127.0.0.1:9/"), [], b"{}", {})
        assert not transport.direct("HEAD", httpx.URL("http://127.0.0.1:9/"))  # HEAD goes through httpx
        assert not transport.direct("POST", httpx.URL("http://user:pw@127.0.0.1:9/"))  # httpx adds Basic auth
        assert transport.direct("POST", httpx.URL("http://127.0.0.1:9/"))

        async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(truncated, "127.0.0.1", 0)
        url = httpx.URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x")
        try:
            response = await transport.request("GET", url, [], b"", {"read": 5})
            with pytest.raises(httpx.RemoteProtocolError):
                async for _ in response.aiter_raw():
                    pass
            await response.aclose()
            assert not transport.idle.get(("http", "127.0.0.1", url.port))  # a broken connection is not pooled
        finally:
            server.close()
        await transport.aclose()

    asyncio.run(go())
    with ServerThread(FakeUpstream()) as server:

        async def reuse() -> list[int]:
            transport = FastTransport(read_timeout=5)
            url = httpx.URL(f"{server.url}/v1/chat/completions")
            pooled = []
            for _ in range(3):
                response = await transport.request("POST", url, [], b'{"model":"m"}', {"read": 5})
                body = b"".join([c async for c in response.aiter_raw()])
                assert response.status == 200 and b"usage" in body
                await response.aclose()
                pooled.append(sum(len(c) for c in transport.idle.values()))
            await transport.aclose()
            return pooled

        assert asyncio.run(reuse()) == [1, 1, 1]  # one connection, back in the pool after each call


def test_read_timeout_is_per_wait_for_the_next_bytes_not_per_response():
    """A stream that keeps sending completes however long it lasts; one that stops times out."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: int, stall: bool) -> None:
        for _ in range(2):  # two requests on one keep-alive connection
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)  # the body, b"{}"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(chunks):
                event = b"data: %d\n\n" % i
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                await asyncio.sleep(0.05)
            if stall:
                await asyncio.sleep(3)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def fetch(chunks: int, stall: bool) -> list[bytes]:
        server = await asyncio.start_server(lambda r, w: serve(r, w, chunks, stall), "127.0.0.1", 0)
        transport = FastTransport(read_timeout=0.5)
        url = httpx.URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x")
        got: list[bytes] = []
        try:
            for _ in range(2):  # the second call reuses the connection (and its timer state)
                response = await transport.request("POST", url, [], b"{}", {"read": 0.5})
                try:
                    async for chunk in response.aiter_raw():
                        got.append(chunk)
                finally:
                    await response.aclose()
        finally:
            server.close()
            await transport.aclose()
        return got

    steady = asyncio.run(fetch(20, stall=False))  # 20 chunks 50 ms apart: a second each, twice the timeout
    assert b"".join(steady) == 2 * b"".join(b"data: %d\n\n" % i for i in range(20))
    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(fetch(2, stall=True))
