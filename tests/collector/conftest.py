"""Fixtures for the API-sync tests: the fake admin API on 127.0.0.1 and test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.admin_api import FakeAdminAPI, ServerThread


@pytest.fixture
def fake_api() -> Iterator[ServerThread]:
    """A fresh fake OpenAI + Anthropic admin API (4 groups per bucket) for one test."""
    server = ServerThread(FakeAdminAPI(groups=4)).start()
    yield server
    server.stop()
