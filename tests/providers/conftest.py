"""Cassette settings for provider tests: playback by default, re-record on request.

``pytest tests/providers --record-mode=once`` with ``OPENAI_ADMIN_KEY`` / ``ANTHROPIC_ADMIN_KEY``
set records the cassettes that do not exist (delete the ones to refresh first). Recording
filters ``authorization`` and ``x-api-key``, so no key reaches a cassette.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import vcr

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
KEY_ENV = {"openai": "OPENAI_ADMIN_KEY", "anthropic": "ANTHROPIC_ADMIN_KEY"}
DUMMY_KEYS = {"openai": "sk-admin-test-cassette0001", "anthropic": "sk-ant-admin01-test-cassette01"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-mode",
        default="none",
        choices=["none", "once", "new_episodes", "all"],
        help="vcrpy record mode for tests/cassettes (default: playback only)",
    )


def _page_param(r1, r2) -> None:  # type: ignore[no-untyped-def]
    """Requests match on path and pagination cursor; time parameters differ per run."""
    p1 = parse_qs(urlparse(r1.uri).query).get("page")
    p2 = parse_qs(urlparse(r2.uri).query).get("page")
    assert p1 == p2, f"page cursor {p1} != {p2}"


@pytest.fixture
def record_mode(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--record-mode"))


@pytest.fixture
def cassette_vcr(record_mode: str) -> vcr.VCR:
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        match_on=["method", "host", "path", "page"],
        filter_headers=["authorization", "x-api-key"],
        # OAuth exchanges (Azure client credentials, Google's signed JWT) carry secrets in the body.
        filter_post_data_parameters=["client_secret", "assertion", "client_assertion"],
        decode_compressed_response=True,
    )
    recorder.register_matcher("page", _page_param)
    return recorder


@pytest.fixture
def admin_key(record_mode: str) -> Iterator[dict[str, str]]:
    """Real keys only when recording; dummy ones for playback."""
    if record_mode == "none":
        yield dict(DUMMY_KEYS)
    else:
        yield {p: os.environ.get(env) or DUMMY_KEYS[p] for p, env in KEY_ENV.items()}
