"""Budgets are evaluated after each successful sync and import, through the application's hooks, for real.

A real sync against the fake admin API (127.0.0.1) and a real import of the documented GCP
fixture land rows; the budget evaluation that follows sends its alert through apprise to the
recording HTTP receiver of ``test_alerts.py`` on 127.0.0.1. A failing evaluation is logged and
never fails the sync or import (the evaluation is the seam replaced by one that raises).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from collector.app import HOOKS
from collector.core.settings import Settings
from collector.finance import budgets
from collector.sync.connections import add_connection
from collector.sync.engine import sync_connection
from collector.sync.vault import load_vault
from importers.service import import_file
from tests.finance.test_alerts import Receiver
from tests.sync.sync_helpers import OPENAI_KEY, make_settings

GCP = Path(__file__).parents[1] / "fixtures" / "csv" / "gcp_billing.csv"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _budget(engine, since: datetime) -> int:
    """A tiny budget over a custom period from ``since`` to tomorrow: any spend crosses 50 %."""
    return budgets.create_budget(
        engine,
        name="tiny",
        scope="all",
        amount="0.0001",
        period="custom",
        starts_at=since,
        ends_at=datetime.now(UTC) + timedelta(days=1),
        thresholds="50",
        forecast_threshold=0,
    )


def _sync(engine, settings: Settings, fake_api):  # type: ignore[no-untyped-def]
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="openai", label="prod", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    assert conn.id is not None
    return sync_connection(engine, settings, conn.id, vault=vault, endpoints={"costs"}, hooks=HOOKS)


def test_a_successful_sync_evaluates_budgets_and_alerts(engine, tmp_path, fake_api, hook):
    settings = make_settings(tmp_path, backfill_days=2, alert_urls=SecretStr(hook.url), anomaly_alerts=False)
    bid = _budget(engine, datetime.now(UTC) - timedelta(days=5))
    summary = _sync(engine, settings, fake_api)
    assert summary.ok and summary.rows > 0
    assert len(hook.calls) == 1 and "reached 50%" in hook.calls[0]["json"]["title"]
    assert [s.budget.id for s in budgets.evaluate(engine, settings, check_anomalies=False).statuses] == [bid]


def test_a_failed_sync_does_not_evaluate(engine, tmp_path, fake_api, hook):
    settings = make_settings(tmp_path, backfill_days=2, alert_urls=SecretStr(hook.url))
    _budget(engine, datetime.now(UTC) - timedelta(days=5))
    fake_api.api.faults.auth_fail = True
    vault = load_vault(settings)
    conn = add_connection(
        engine, settings, vault, provider="openai", label="p", key=OPENAI_KEY, base_url=fake_api.base_url, test=False
    )
    assert conn.id is not None
    assert sync_connection(engine, settings, conn.id, vault=vault, endpoints={"costs"}, hooks=HOOKS).auth_failed
    assert hook.calls == []


def test_a_failing_evaluation_is_logged_and_never_fails_the_sync(engine, tmp_path, fake_api, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("fx table unreadable")

    monkeypatch.setattr(budgets, "evaluate", broken)
    settings = make_settings(tmp_path, backfill_days=1)
    with caplog.at_level(logging.ERROR, logger="collector.finance.budgets"):
        summary = _sync(engine, settings, fake_api)
    assert summary.ok and summary.rows > 0
    assert "budget evaluation after ingest failed" in caplog.text and "fx table unreadable" in caplog.text


def test_an_import_evaluates_budgets_and_alerts(engine, tmp_path, hook):
    settings = Settings(data_dir=tmp_path, alert_urls=SecretStr(hook.url), anomaly_alerts=False)
    _budget(engine, datetime(2026, 9, 1, tzinfo=UTC))  # the fixture's rows are of 2026-09-03
    dry = import_file(GCP, dry_run=True, engine=engine, settings=settings)
    assert dry.status == "dry_run" and hook.calls == []  # a dry run writes nothing: nothing to evaluate
    result = import_file(GCP, engine=engine, settings=settings, who="test", hooks=HOOKS)
    assert result.status == "imported"
    assert len(hook.calls) == 1 and "reached 50%" in hook.calls[0]["json"]["title"]
    again = import_file(GCP, engine=engine, settings=settings, who="test", hooks=HOOKS)
    assert again.status == "duplicate" and len(hook.calls) == 1


def test_a_failing_evaluation_never_fails_the_import(engine, tmp_path, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("alert table locked")

    monkeypatch.setattr(budgets, "evaluate", broken)
    with caplog.at_level(logging.ERROR, logger="collector.finance.budgets"):
        result = import_file(GCP, engine=engine, settings=Settings(data_dir=tmp_path), who="test", hooks=HOOKS)
    assert result.status == "imported" and result.records > 0
    assert "budget evaluation after ingest failed" in caplog.text and "alert table locked" in caplog.text
