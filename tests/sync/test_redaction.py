"""Known keys are masked in every spelling a provider may echo; error pages are trimmed; base URLs checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from collector.core.http import InsecureURLError, check_base_url, redact, trim_error
from collector.query.health import status
from collector.sync.connections import ConnectionsError, add_connection, retest_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from tests.sync.sync_helpers import OPENAI_KEY, make_settings

BODY = OPENAI_KEY.removeprefix("sk-admin-")


def spellings(key: str) -> list[str]:
    return [key, key.upper(), key.lower(), key.removeprefix("sk-admin-"), key.removeprefix("sk-admin-").upper()]


@pytest.mark.parametrize("echoed", spellings(OPENAI_KEY))
def test_redact_masks_a_known_key_in_any_case_with_or_without_its_prefix(echoed):
    message = f"Incorrect API key provided: {echoed}. See the docs."
    masked = redact(message, OPENAI_KEY)
    assert all(s.lower() not in masked.lower() for s in (BODY, BODY[:16], BODY[-16:]))
    assert masked.startswith("Incorrect API key provided:") and masked.endswith("See the docs.")


def test_redact_leaves_short_words_alone():
    assert redact("admin test ok", "sk-admin-test-Zq7Qx9WmK2rT5vB8nL3p") == "admin test ok"


@pytest.mark.parametrize("echo", ["upper", "bare"])
def test_a_key_echoed_upper_cased_or_without_prefix_reaches_no_stored_error(engine, fake_api, tmp_path, echo):
    settings = make_settings(tmp_path)
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="openai", label="p", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    fake_api.api.faults.auth_fail = True
    fake_api.api.faults.echo = echo
    probe = retest_connection(engine, settings, vault, conn.id)
    since = datetime.now(UTC) - timedelta(days=1)
    summary = sync_connection(engine, settings, conn.id, vault=vault, since=since, endpoints={"completions"})
    assert not probe.ok and summary.auth_failed and "Incorrect API key provided" in summary.error
    with engine.connect() as db:
        stored = repr(db.execute(text("SELECT last_error FROM connections")).all())
        stored += repr(db.execute(text("SELECT error FROM sync_runs")).all())
    shown = stored + probe.message + summary.error + repr(status(engine, settings))
    assert "Incorrect API key provided" in stored
    assert BODY.lower() not in shown.lower()


def test_an_html_error_page_is_trimmed_to_one_line(engine, fake_api, tmp_path):
    settings = make_settings(tmp_path, http_max_attempts=1)
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="openai", label="p", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    fake_api.api.faults.html_status = 502
    since = datetime.now(UTC) - timedelta(days=1)
    summary = sync_connection(engine, settings, conn.id, vault=vault, since=since, endpoints={"completions"})
    assert "502 Bad Gateway" in summary.error and "<" not in summary.error and len(summary.error) < 400
    with engine.connect() as db:
        (last_error,) = db.execute(text("SELECT last_error FROM connections")).one()
    assert "<p>" not in last_error and len(last_error) < 400


def test_trim_error_keeps_plain_text_and_cuts_long_messages():
    assert trim_error("rate limited\n  try later") == "rate limited try later"
    assert len(trim_error("x" * 5000)) == 300


@pytest.mark.parametrize(
    "url", ["https://api.openai.com/v1", "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:9/v1"]
)
def test_base_urls_that_keep_the_key_off_the_network_in_clear_are_accepted(url):
    assert check_base_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://api.openai.com/v1",
        "http://10.0.0.5/v1",
        "ftp://example.com/",
        "https://user:pw@example.com/v1",
        "https://example.com/v1?token=x",
        "not a url",
    ],
)
def test_insecure_base_urls_are_refused(url, engine, tmp_path):
    with pytest.raises(InsecureURLError):
        check_base_url(url)
    settings = make_settings(tmp_path)
    with pytest.raises(ConnectionsError, match="--base-url"):
        add_connection(
            engine, settings, load_vault(settings), provider="openai", label="x", key=OPENAI_KEY, base_url=url
        )
