"""The event is on disk before the byte that completes the client's response leaves the sidecar.

The forwarder runs for real (real upstream over loopback, real journal); the ASGI ``send`` is the
seam: at every message it notes how many events the journal holds. A process killed right after
any message the client needs to complete its response therefore finds the event in the journal.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from collector.proxy.forward import Forwarder, Upstream
from collector.proxy.metrics import ProxyMetrics
from collector.proxy.recorder import Recorder
from collector.proxy.spool import Spool
from collector.proxy.tokens import Fingerprinter

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'


def journaled(spool: Spool) -> int:
    return sum(p.read_bytes().count(b"\n") for p in spool.folder.glob("*.jsonl"))


async def relay(fake_url: str, spool: Spool, body: bytes) -> list[tuple[dict, int]]:
    recorder = Recorder(None, spool)  # the writer is not started: only the request path writes
    seen: list[tuple[dict, int]] = []

    async def receive() -> dict:
        if not seen:
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        seen.append((message, journaled(spool)))

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/openai/v1/chat/completions",
        "query_string": b"",
        "headers": headers,
    }
    # A generous timeout: under load the loopback upstream can take longer than httpx's default
    # 5 s, and a timed-out call is journaled (as failed) before its 502, which is not this test.
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
        forwarder = Forwarder(client, recorder, ProxyMetrics(lambda: 0.0, lambda: 0.0), dict, Fingerprinter(b"s"))
        upstream = Upstream("openai", "openai", "openai", f"{fake_url}/v1")
        await forwarder.handle(scope, receive, send, upstream, "/chat/completions")
    return seen


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_event_is_journaled_before_the_response_completes(fake, tmp_path, stream):
    spool = Spool(tmp_path / "spool")
    spool.open()
    body = BODY[:-1] + b',"stream":true}' if stream else BODY
    try:
        seen = asyncio.run(relay(fake[1].url, spool, body))
    finally:
        spool.close()
    start, *bodies = seen
    assert start[0]["type"] == "http.response.start" and start[0]["status"] == 200, start[0]
    assert start[1] == 0  # nothing recorded up front
    headers = dict(start[0]["headers"])
    if b"content-length" in headers:  # the client is done once it has this many bytes
        total, done_at = int(headers[b"content-length"]), None
        for i, (message, _) in enumerate(bodies):
            total -= len(message["body"])
            if total <= 0 and done_at is None:
                done_at = i
        assert not stream and done_at is not None
    else:  # chunked: done with the message that ends the body
        assert stream
        done_at = next(i for i, (m, _) in enumerate(bodies) if not m.get("more_body"))
    assert [count for _, count in bodies[: done_at + 1]] == [0] * done_at + [1]  # written just before it
    assert journaled(spool) == 1
