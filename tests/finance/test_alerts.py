"""Budget alerts through apprise to a real HTTP receiver on 127.0.0.1.

The receiver is a ``ThreadingHTTPServer`` that records every request; apprise reaches it through
a ``json://127.0.0.1:PORT/hook`` URL (apprise's generic JSON webhook), so the whole path —
evaluation, the once-per-threshold claim in ``alert_events``, apprise, HTTP — is the real one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from collector.app import app
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
from collector.core.store import upsert_records
from collector.finance import alerts, budgets
from collector.finance.alerts import ALERT_EVENTS


class Receiver:
    """Records POSTed JSON bodies; answers with ``status``."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.calls.append({"path": self.path, "json": json.loads(body or b"{}")})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def spend(engine, day: datetime, amount: str, hour: int = 1) -> None:
    start = day.replace(hour=hour)
    upsert_records(
        engine,
        [
            UsageRecord(
                provider="openai",
                source="api",
                kind="completions",
                bucket_start=start,
                bucket_end=start + timedelta(hours=1),
                account="org-test",
                project="proj_a",
                model="gpt-4o",
                input_tokens=1000,
                output_tokens=100,
                requests=1,
                cost=Decimal(amount),
                currency="USD",
                basis="estimated",
                price_version="test",
            )
        ],
    )


def settings_for(receiver: Receiver) -> Settings:
    return Settings(alert_urls=SecretStr(receiver.url), dashboard_base_url="http://dash.example:8501/")


def test_crossing_80_percent_sends_exactly_one_alert_then_none_then_resets_next_period(engine, receiver):
    settings = settings_for(receiver)
    bid = budgets.create_budget(engine, name="LLM total", scope="all", amount="100", forecast_threshold=0)
    nov = datetime(2026, 11, 1, tzinfo=UTC)
    spend(engine, nov, "60")
    first = budgets.evaluate(engine, settings, nov + timedelta(days=3), check_anomalies=False)
    assert first.sent == [f"budget:{bid}:2026-11-01:50"]
    assert len(receiver.calls) == 1
    receiver.calls.clear()

    spend(engine, nov + timedelta(days=2), "25")  # 85 % now
    crossing = budgets.evaluate(engine, settings, nov + timedelta(days=3, hours=1), check_anomalies=False)
    assert crossing.sent == [f"budget:{bid}:2026-11-01:80"]
    assert len(receiver.calls) == 1
    message = receiver.calls[0]["json"]
    assert receiver.calls[0]["path"] == "/hook"
    assert "reached 80%" in message["title"]
    assert "85.00 USD of 100.00 USD" in message["message"]
    assert f"http://dash.example:8501/budgets?budget={bid}&period=2026-11-01" in message["message"]

    again = budgets.evaluate(engine, settings, nov + timedelta(days=3, hours=2), check_anomalies=False)
    assert again.sent == [] and again.due == []  # both already sent
    assert len(receiver.calls) == 1

    # A new period starts afresh; a jump past two thresholds at once is one message naming the highest.
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    spend(engine, dec, "81")
    reset = budgets.evaluate(engine, settings, dec + timedelta(days=1), check_anomalies=False)
    assert reset.sent == [f"budget:{bid}:2026-12-01:80"]
    assert len(receiver.calls) == 2
    assert (
        "reached 80%" in receiver.calls[1]["json"]["title"] and "also passed 50%" in receiver.calls[1]["json"]["title"]
    )
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(ALERT_EVENTS.c.alert_key, ALERT_EVENTS.c.status)).all())
    assert statuses == {
        f"budget:{bid}:2026-11-01:50": "sent",
        f"budget:{bid}:2026-11-01:80": "sent",
        f"budget:{bid}:2026-12-01:50": "superseded",  # covered by the 80 % message, never sent later
        f"budget:{bid}:2026-12-01:80": "sent",
    }
    assert budgets.evaluate(engine, settings, dec + timedelta(days=1, hours=1), check_anomalies=False).sent == []


def test_a_refused_alert_is_recorded_as_failed_and_sent_at_the_next_evaluation(engine, receiver):
    settings = settings_for(receiver)
    budgets.create_budget(engine, name="p", scope="provider", scope_value="openai", amount="10", thresholds="80")
    day = datetime(2026, 11, 2, tzinfo=UTC)
    spend(engine, day, "9")
    receiver.status = 500
    failed = budgets.evaluate(engine, settings, day + timedelta(hours=5), check_anomalies=False)
    assert failed.sent == [] and len(receiver.calls) == 1
    with engine.connect() as conn:
        row = conn.execute(select(ALERT_EVENTS.c.status, ALERT_EVENTS.c.error)).one()
    assert row.status == "failed" and "did not accept" in row.error and "127.0.0.1" not in row.error
    receiver.status = 200
    retried = budgets.evaluate(engine, settings, day + timedelta(hours=6), check_anomalies=False)
    assert len(retried.sent) == 1 and len(receiver.calls) == 2
    assert budgets.evaluate(engine, settings, day + timedelta(hours=7), check_anomalies=False).sent == []


def test_forecast_alert_when_the_projection_passes_the_budget(engine, receiver):
    settings = settings_for(receiver)
    bid = budgets.create_budget(engine, name="f", scope="all", amount="100", thresholds="100", forecast_threshold=100)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(10):
        spend(engine, start + timedelta(days=i), "5")  # 50 spent, 5/day -> about 150 projected
    result = budgets.evaluate(engine, settings, start + timedelta(days=10, hours=3), check_anomalies=False)
    assert result.sent == [f"forecast:{bid}:2026-11-01:100"]
    status = result.statuses[0]
    assert status.spent == Decimal(50)
    assert Decimal(140) < status.forecast.projected < Decimal(160)
    assert "forecast to reach" in receiver.calls[0]["json"]["title"]


def test_without_urls_alerts_are_recorded_not_sent(sqlite_engine):
    budgets.create_budget(sqlite_engine, name="x", scope="all", amount="1", thresholds="50")
    day = datetime(2026, 11, 2, tzinfo=UTC)
    spend(sqlite_engine, day, "2")
    result = budgets.evaluate(sqlite_engine, Settings(), day + timedelta(hours=3), check_anomalies=False)
    assert result.sent == [] and len(result.due) == 2  # 50 % and the forecast
    listed = alerts.recent_alerts(sqlite_engine)
    assert {a.status for a in listed} == {"no-channel"}


def test_alerts_test_command_sends_one_message(receiver, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_ALERT_URLS", receiver.url)
    result = CliRunner().invoke(app, ["alerts", "test"])
    assert result.exit_code == 0, result.output
    assert "json" in result.output and "127.0.0.1" not in result.output
    assert len(receiver.calls) == 1 and "test" in receiver.calls[0]["json"]["title"]


def test_alerts_test_without_urls_says_which_variable_to_set():
    result = CliRunner().invoke(app, ["alerts", "test"])
    assert result.exit_code == 1
    assert "LLM_USAGE_ALERT_URLS" in result.output


def test_a_bad_apprise_url_is_reported_without_its_secret():
    with pytest.raises(alerts.AlertError) as info:
        alerts.send(["nosuchscheme://secret-token-123@host"], "t", "b")
    assert "secret-token-123" not in str(info.value) and "#1" in str(info.value)


def test_racing_evaluators_send_an_alert_once(engine, receiver):
    alert = alerts.Alert("budget:9:2026-11-01:80", "threshold", "t", "b", "http://dash/budgets?budget=9")
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(alerts.deliver_once(engine, alert, [receiver.url])))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert len(receiver.calls) == 1


@pytest.mark.parametrize(
    "url",
    [
        "slack://T000AAAA/B000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX",
        "mailtos://alerts:app-password@example.com?to=finops@example.com",
        "workflows://prod-00.westus.logic.azure.com:443/0123456789abcdef0123456789abcdef/Sig_abc-123",
        "json://hooks.example.internal/llm-usage",
        "form://hooks.example.internal/llm-usage",
    ],
)
def test_documented_channel_urls_are_understood_by_apprise(url):
    import apprise

    assert apprise.Apprise().add(url)


def test_alert_urls_setting_splits_on_spaces_commas_and_new_lines():
    settings = Settings(alert_urls=SecretStr("json://a/x, slack://T/B/C\nmailtos://u:p@example.com"))
    urls = alerts.parse_urls(settings)
    assert len(urls) == 3 and alerts.describe_urls(urls) == "json, slack, mailtos"
    assert "u:p" not in repr(settings)


def test_a_budget_recreated_after_deletion_alerts_again(engine, receiver):
    settings = settings_for(receiver)
    day = datetime(2026, 11, 2, tzinfo=UTC)
    spend(engine, day, "90")
    first = budgets.create_budget(engine, name="a", scope="all", amount="100", thresholds="80", forecast_threshold=0)
    assert len(budgets.evaluate(engine, settings, day + timedelta(hours=5), check_anomalies=False).sent) == 1
    budgets.delete_budget(engine, first)
    budgets.create_budget(engine, name="a again", scope="all", amount="100", thresholds="80", forecast_threshold=0)
    again = budgets.evaluate(engine, settings, day + timedelta(hours=6), check_anomalies=False)
    assert len(again.sent) == 1 and len(receiver.calls) == 2
    history = alerts.recent_alerts(engine)
    assert len(history) == 2 and any(":deleted-" in a.key for a in history)
