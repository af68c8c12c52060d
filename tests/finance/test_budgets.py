"""Budgets: definitions are validated, spend is read per scope on the preferred basis, CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from collector.app import SCHEDULER_JOBS, app, build_scheduler
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
from collector.core.store import upsert_records
from collector.finance import budgets, chargeback
from collector.finance.budgets import BudgetError
from collector.finance.chargeback import Rule
from tests.conftest import create_database

D = Decimal
NOW = datetime(2026, 11, 10, 15, tzinfo=UTC)


def usage(day: int, cost: str, *, provider="openai", project="proj_a", key="key_1", basis="estimated", source="api"):
    start = datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(days=day - 1)
    return UsageRecord(
        provider=provider,
        source=source,
        kind="completions" if source == "api" else "generic",
        bucket_start=start,
        bucket_end=start + timedelta(hours=1),
        account="org",
        project=project,
        api_key_id=key,
        model="gpt-4o",
        input_tokens=10,
        requests=1,
        cost=D(cost),
        currency="USD",
        basis=basis,
        price_version="t" if basis == "estimated" else "",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"scope": "galaxy"}, "scope: 'galaxy' is not one of"),
        ({"scope": "project"}, "needs the project it covers"),
        ({"amount": "-5"}, "amount: must be positive"),
        ({"amount": "lots"}, "not a number"),
        ({"thresholds": "50,eighty"}, "'eighty' is not a whole percentage"),
        ({"currency": "dollars"}, "currency"),
        ({"period": "custom"}, "custom period needs"),
        ({"name": " "}, "needs a name"),
        ({"forecast_threshold": -1}, "forecast threshold"),
    ],
)
def test_bad_budgets_are_refused_with_the_field_named(sqlite_engine, values, message):
    base = {"name": "b", "scope": "all", "amount": "10"}
    with pytest.raises(BudgetError, match=message):
        budgets.create_budget(sqlite_engine, **{**base, **values})
    assert budgets.list_budgets(sqlite_engine) == []


def test_scope_spend_percent_and_thresholds(engine):
    upsert_records(
        engine,
        [
            usage(1, "30"),
            usage(2, "20", project="proj_b", key="key_2"),
            usage(3, "40", provider="anthropic", project="proj_a"),
            usage(12, "999"),  # after NOW's day: not spent yet
        ],
    )
    ids = {
        scope: budgets.create_budget(engine, name=scope, scope=scope, scope_value=value, amount="100")
        for scope, value in (
            ("all", ""),
            ("provider", "openai"),
            ("project", "proj_a"),
            ("api_key", "key_2"),
            ("account", "org"),
        )
    }
    spent = {}
    for scope, bid in ids.items():
        status = budgets.budget_status(engine, budgets.get_budget(engine, bid), NOW)
        assert status is not None and status.period_start == datetime(2026, 11, 1, tzinfo=UTC)
        spent[scope] = status.spent
    assert spent == {"all": D(90), "provider": D(50), "project": D(70), "api_key": D(20), "account": D(90)}
    status = budgets.budget_status(engine, budgets.get_budget(engine, ids["all"]), NOW)
    assert status.percent == D(90) and status.crossed == (50, 80)


def test_team_budget_uses_the_chargeback_rules(sqlite_engine):
    upsert_records(sqlite_engine, [usage(1, "30"), usage(2, "20", project="proj_b")])
    chargeback.save_rules(sqlite_engine, [Rule("project", "proj_b", "search")])
    bid = budgets.create_budget(sqlite_engine, name="t", scope="team", scope_value="search", amount="40")
    status = budgets.budget_status(sqlite_engine, budgets.get_budget(sqlite_engine, bid), NOW)
    assert status.spent == D(20) and status.crossed == (50,)


def test_preferred_basis_billed_days_are_not_double_counted(sqlite_engine):
    upsert_records(
        sqlite_engine,
        [usage(1, "10", source="csv", basis="billed", provider="google"), usage(1, "9", provider="google")],
    )
    bid = budgets.create_budget(sqlite_engine, name="g", scope="provider", scope_value="google", amount="100")
    assert budgets.budget_status(sqlite_engine, budgets.get_budget(sqlite_engine, bid), NOW).spent == D(10)


def test_custom_period_is_evaluated_only_inside_it(sqlite_engine):
    upsert_records(sqlite_engine, [usage(1, "30"), usage(5, "30")])
    bid = budgets.create_budget(
        sqlite_engine,
        name="launch",
        scope="all",
        amount="50",
        period="custom",
        starts_at=datetime(2026, 11, 3, tzinfo=UTC),
        ends_at=datetime(2026, 11, 17, tzinfo=UTC),
    )
    b = budgets.get_budget(sqlite_engine, bid)
    assert budgets.budget_status(sqlite_engine, b, datetime(2026, 11, 20, tzinfo=UTC)) is None
    status = budgets.budget_status(sqlite_engine, b, NOW)
    assert status.spent == D(30) and status.forecast.period_end.isoformat() == "2026-11-17"


def test_update_pause_and_delete(sqlite_engine):
    bid = budgets.create_budget(sqlite_engine, name="x", scope="all", amount="10")
    b = budgets.update_budget(sqlite_engine, bid, amount=D(20), thresholds="90, 50", active=False)
    assert (b.amount, b.thresholds, b.active) == (D(20), (50, 90), False)
    assert budgets.list_budgets(sqlite_engine, active_only=True) == []
    with pytest.raises(BudgetError, match="amount"):
        budgets.update_budget(sqlite_engine, bid, amount="0")
    budgets.delete_budget(sqlite_engine, bid)
    with pytest.raises(BudgetError, match=f"no budget with id {bid}"):
        budgets.delete_budget(sqlite_engine, bid)


def test_anomalies_in_evaluate_are_alerted_once(sqlite_engine):
    records = [usage(d, "10") for d in range(1, 30)]
    records[-1] = usage(29, "200")
    start = datetime(2026, 10, 1, 8, tzinfo=UTC)
    records += [
        UsageRecord(
            provider="openai",
            source="api",
            kind="completions",
            bucket_start=start + timedelta(days=i),
            bucket_end=start + timedelta(days=i, hours=1),
            account="org",
            project="proj_a",
            api_key_id="key_1",
            model="gpt-4o",
            input_tokens=1,
            cost=D(10) + D(i % 3),
            currency="USD",
            basis="estimated",
            price_version="t",
        )
        for i in range(31)
    ]
    upsert_records(sqlite_engine, records)
    now = datetime(2026, 11, 30, 6, tzinfo=UTC)
    first = budgets.evaluate(sqlite_engine, Settings(), now)
    keys = [k for k in first.due if k.startswith("anomaly:")]
    assert "anomaly:all:USD:2026-11-29" in keys and "anomaly:provider=openai:USD:2026-11-29" in keys
    assert any(d.value == "gpt-4o" for a in first.anomalies for d in a.drivers)
    second = budgets.evaluate(sqlite_engine, Settings(), now + timedelta(hours=1))
    assert second.sent == [] and set(second.due) == set(first.due)


def test_scheduler_gets_the_hourly_evaluation_job(sqlite_engine):
    assert budgets.install_jobs in SCHEDULER_JOBS  # listed by collector.app
    sched = build_scheduler(sqlite_engine, Settings())
    job = sched.get_job("budgets:evaluate")
    assert job is not None and job.trigger.interval == timedelta(hours=1)


def test_budgets_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'b.db'}")
    monkeypatch.setenv("LLM_USAGE_BUDGET_THRESHOLDS", "25,75")
    create_database()
    runner = CliRunner()
    added = runner.invoke(
        app, ["budgets", "add", "--name", "ai", "--amount", "500", "--scope", "provider", "--value", "openai"]
    )
    assert added.exit_code == 0 and "budget #1 added" in added.output
    listed = runner.invoke(app, ["budgets", "list"]).output
    assert "provider=openai 500.00 USD per month; alerts at 25,75%" in listed
    assert runner.invoke(app, ["budgets", "set", "1", "--amount", "600", "--paused"]).exit_code == 0
    assert "(paused)" in runner.invoke(app, ["budgets", "list"]).output
    bad = runner.invoke(app, ["budgets", "add", "--name", "x", "--amount", "ten"])
    assert bad.exit_code == 2 and "error: --amount" in bad.output  # a bad argument: exit 2, as every command
    assert runner.invoke(app, ["budgets", "set", "1", "--active"]).exit_code == 0
    status = runner.invoke(app, ["budgets", "status"])
    assert status.exit_code == 0 and "0.00 of 600.00 USD" in status.output
    evaluated = runner.invoke(app, ["budgets", "evaluate", "--no-anomalies"])
    assert evaluated.exit_code == 0 and "1 budget(s)" in evaluated.output
    assert runner.invoke(app, ["budgets", "remove", "1"]).exit_code == 0
    assert "no budget with id 1" in runner.invoke(app, ["budgets", "remove", "1"]).output


def test_statuses_lists_every_active_budget_for_the_overview(sqlite_engine):
    upsert_records(sqlite_engine, [usage(1, "30")])
    budgets.create_budget(sqlite_engine, name="a", scope="all", amount="100")
    paused = budgets.create_budget(sqlite_engine, name="b", scope="all", amount="100")
    budgets.update_budget(sqlite_engine, paused, active=False)
    found = budgets.statuses(sqlite_engine, NOW)
    assert [(s.budget.name, s.spent) for s in found] == [("a", D(30))]


def test_scope_forecast_without_a_budget_and_its_command(sqlite_engine, tmp_path, monkeypatch):
    create_database()
    upsert_records(sqlite_engine, [usage(d, "10") for d in range(1, 10)] + [usage(3, "5", provider="anthropic")])
    spent, forecast, notes = budgets.scope_forecast(sqlite_engine, "provider", "openai", now=NOW)
    assert spent == D(90) and notes == []
    assert forecast.actual == D(90) and forecast.projected == D(300)  # 10 a day for 30 days, no noise
    with pytest.raises(BudgetError, match="needs the project"):
        budgets.scope_forecast(sqlite_engine, "project", "", now=NOW)
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", str(sqlite_engine.url))
    out = CliRunner().invoke(app, ["budgets", "forecast", "--scope", "provider", "--value", "anthropic"])
    assert out.exit_code == 0 and "provider=anthropic: spent" in out.output and "projected" in out.output


def test_an_unknown_scope_value_is_refused_naming_the_known_ones(sqlite_engine, monkeypatch):
    """``--scope provider --value opneai`` could never trip: refused unless ``--allow-unknown``."""
    upsert_records(sqlite_engine, [usage(1, "30", project="proj_a")])
    with pytest.raises(
        budgets.BudgetError, match=r"no provider 'opneai' in the data of the last year; known: .*openai"
    ):
        budgets.create_budget(sqlite_engine, name="typo", scope="provider", scope_value="opneai", amount="10")
    with pytest.raises(budgets.BudgetError, match=r"no project 'proj_z'.*known: proj_a \(--allow-unknown"):
        budgets.create_budget(sqlite_engine, name="p", scope="project", scope_value="proj_z", amount="10")
    later = budgets.create_budget(
        sqlite_engine, name="launch", scope="project", scope_value="proj_z", amount="10", allow_unknown=True
    )
    assert [b.id for b in budgets.list_budgets(sqlite_engine)] == [later]
