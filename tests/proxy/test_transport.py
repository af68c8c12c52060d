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
