"""Fixtures: the fake upstream and the sidecar, each a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from collector.core.settings import Settings, get_settings
from collector.proxy.app import ProxyApp
from collector.proxy.server import uvicorn_options
from tests.fakes.upstream import FakeUpstream, ServerThread

KEY = "sk-test-KEYMARKER9x"  # dummy key; the marker must never be stored
PROMPT_MARKER = "PROMPT-MARKER-77ce"


@dataclass
class Sidecar:
    app: ProxyApp
    server: ServerThread
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    def flush(self, expected: int) -> None:
        """Wait until ``expected`` events were recorded and written (or spooled)."""
        assert self.app.recorder is not None
        assert self.app.recorder.flush(expected), f"{self.app.recorder.received} events, expected {expected}"


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    app = FakeUpstream()
    with ServerThread(app) as server:
        yield app, server


def proxy_settings(fake_url: str, **extra: object) -> Settings:
    return get_settings().model_copy(
        update={
            "proxy_openai_url": f"{fake_url}/v1",
            "proxy_anthropic_url": f"{fake_url}/v1",
            "proxy_upstreams": {"groq": f"{fake_url}/v1"},
            "proxy_google_url": fake_url,
            "proxy_vertex_url": fake_url,
            "proxy_batch_interval_seconds": 0.05,
            **extra,
        }
    )


def start_sidecar(settings: Settings, engine: Engine | None, **kwargs: object) -> Sidecar:
    """The sidecar on a real uvicorn with the production server options (limits, header timeout)."""
    app = ProxyApp(settings, engine=engine, retry_seconds=0.2, **kwargs)  # type: ignore[arg-type]
    options = uvicorn_options(settings, loop="asyncio", log_level="warning", timeout_graceful_shutdown=5)
    server = ServerThread(app, options=options).start()
    return Sidecar(app, server, settings)


@pytest.fixture
def sidecar(fake, engine) -> Iterator[Sidecar]:  # type: ignore[no-untyped-def]
    side = start_sidecar(proxy_settings(fake[1].url), engine)
    yield side
    side.server.stop()


def events(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM proxy_events ORDER BY id"))]
