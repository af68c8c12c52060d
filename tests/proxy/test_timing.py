"""No buffering: each streamed chunk reaches the client right after the upstream sent it.

The upstream sends its first chunk after 500 ms and then one every 100 ms; a buffering proxy
would deliver them late or in a lump. Send and receive times come from ``perf_counter()`` in
the same process (the fake upstream and the sidecar run in threads beside the client). The bound
is generous (50 ms) so a loaded 2-core machine does not make the test flaky; typical figures are
printed (``pytest -s``). Speed itself is measured in tests/bench, not asserted here.
"""

import itertools
import time

import httpx
import pytest

from tests.proxy.conftest import KEY, proxy_settings, start_sidecar

CASES = {
    "openai": ("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [], "stream": True}),
    "anthropic": (
        "/anthropic/v1/messages",
        {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [], "stream": True},
    ),
}


@pytest.mark.parametrize("provider", sorted(CASES))
def test_each_chunk_arrives_within_milliseconds_of_being_sent(fake, sqlite_engine, provider):
    app, upstream = fake
    side = start_sidecar(proxy_settings(upstream.url), sqlite_engine)
    path, body = CASES[provider]
    headers = {
        "authorization": f"Bearer {KEY}",
        "x-fake-chunks": "6",
        "x-fake-first-ms": "500",
        "x-fake-interval-ms": "100",
        "x-fake-tag": provider,
    }
    received: list[float] = []
    started = time.perf_counter()
    try:
        with httpx.Client() as client, client.stream("POST", side.url + path, json=body, headers=headers) as r:
            for chunk in r.iter_raw():
                now = time.perf_counter()
                received += [now] * chunk.count(b"\n\n")
        side.flush(1)
    finally:
        side.server.stop()
    sent = app.sent[provider]
    # OpenAI: the injected usage chunk (second to last upstream event) never reaches the client.
    content = len(received) - 1
    delays = [(r - s) * 1000 for r, s in zip(received[:content], sent[:content], strict=True)]
    assert (sent[0] - started) >= 0.5  # the upstream really waited 500 ms before its first chunk
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(received[:content])]
    print(
        f"\n{provider}: {len(delays)} chunks, client-side delay after upstream send: "
        f"max {max(delays):.2f} ms, mean {sum(delays) / len(delays):.2f} ms; gaps between chunks "
        f"{min(gaps):.0f}-{max(gaps):.0f} ms"
    )
    assert max(delays) < 50, delays
    assert min(gaps) > 50  # chunks arrived one by one, not in a lump
