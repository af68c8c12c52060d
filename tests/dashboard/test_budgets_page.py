"""The dashboard's Budgets page under Streamlit's AppTest, against a seeded SQLite file."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import streamlit as st
from argon2 import PasswordHasher
from sqlalchemy import literal, select
from streamlit.testing.v1 import AppTest

from collector.auth import users
from collector.core.schema import UsageRecord
from collector.core.settings import get_settings
from collector.core.store import SLIM_DIRTY, USAGE_DAILY, upsert_records
from collector.db.migrate import open_database
from collector.finance import budgets, chargeback, fx
from collector.finance.chargeback import Rule
from dashboard import queries

PAGE = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages" / "budgets.py"
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture
def page_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'page.db'}"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", url)
    monkeypatch.setenv("LLM_USAGE_DISPLAY_CURRENCY", "EUR")
    get_settings.cache_clear()
    monkeypatch.setattr(users, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    engine = open_database(url=url)
    records = []
    for day in range(1, 21):
        start = datetime(2026, 11, day, 9, tzinfo=UTC)
        records.append(
            UsageRecord(
                provider="openai",
                source="api",
                kind="completions",
                bucket_start=start,
                bucket_end=start + timedelta(hours=1),
                account="org",
                project="proj_a" if day % 2 else "proj_b",
                model="gpt-4o",
                input_tokens=10,
                requests=1,
                cost=Decimal(4),
                currency="USD",
                basis="estimated",
                price_version="t",
            )
        )
    upsert_records(engine, records)
    budgets.create_budget(engine, name="All LLM", scope="all", amount="100")
    chargeback.save_rules(engine, [Rule("project", "proj_a", "search", "CC-1")], created_by="admin")
    users.add_user(engine, "admin", "admin", "page test password 1")
    users.add_user(engine, "viewer", "viewer", "page test password 1")
    monkeypatch.setattr(queries, "as_of", lambda: NOW)
    st.cache_data.clear()
    yield engine
    st.cache_data.clear()
    engine.dispose()


def run(user: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.session_state["auth_user"] = user
    at.query_params.update(query)
    return at.run()


def add_button(at: AppTest):
    return next(b for b in at.button if b.label == "Add budget")


def test_viewer_sees_status_forecast_and_chargeback_but_no_editing(page_db):
    at = run("viewer", budget="1")
    assert not at.exception, at.exception
    assert at.title[0].value == "Budgets"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Spent this period"] == "80.00 USD"
    assert metrics["Amount"] == "100.00 USD"
    assert Decimal(metrics["Forecast at period end"].split()[0].replace(",", "")) >= 80
    captions = "\n".join(c.value for c in at.caption)
    assert "reached: 50%, 80%" in captions and "weekday-seasonal" in captions
    assert "no USD->EUR rate" in captions  # display currency without a rate says so
    forecast_table = at.dataframe[0].value
    assert list(forecast_table["scope"]) == ["all spend", "openai"]
    assert list(forecast_table["spent so far"]) == ["80.00", "80.00"]
    assert len(at.dataframe) == 1  # only the chosen view is computed and drawn
    assert not any(s.value == "Add a budget" for s in at.subheader)
    assert not any(c.key == "new_allow_unknown" for c in at.checkbox)
    at = run("viewer", view="Chargeback")
    chargeback_table = at.dataframe[0].value
    assert list(chargeback_table["team"]) == ["search", "unallocated", "TOTAL"]
    assert list(chargeback_table["amount"]) == ["40.00", "40.00", "80.00"]
    assert len(at.get("download_button")) == 1


def test_admin_adds_a_budget_and_bad_input_is_shown(page_db):
    at = run("admin")
    assert any(s.value == "Add a budget" for s in at.subheader)
    at.text_input(key="new_name").set_value("Search team")
    at.selectbox(key="new_scope").set_value("team")
    at.text_input(key="new_value").set_value("search")
    at.text_input(key="new_amount").set_value("fifty")
    add_button(at).click().run()
    assert any("not a number" in e.value for e in at.error)
    at.text_input(key="new_amount").set_value("50")
    add_button(at).click().run()
    assert not at.exception, at.exception
    added = [b for b in budgets.list_budgets(page_db) if b.name == "Search team"]
    assert len(added) == 1 and added[0].scope == "team" and added[0].amount == Decimal(50)


def test_admin_adds_a_custom_period_budget(page_db):
    at = run("admin")
    at.text_input(key="new_name").set_value("Launch week")
    at.text_input(key="new_amount").set_value("30")
    at.checkbox(key="new_custom").check()
    at.date_input(key="new_start").set_value(date(2026, 11, 16))
    at.date_input(key="new_end").set_value(date(2026, 11, 22))
    add_button(at).click().run()
    assert not at.exception, at.exception
    launch = next(b for b in budgets.list_budgets(page_db) if b.name == "Launch week")
    assert launch.period == "custom"
    assert (launch.starts_at, launch.ends_at) == (
        datetime(2026, 11, 16, tzinfo=UTC),
        datetime(2026, 11, 23, tzinfo=UTC),
    )
    at.run()
    assert any("Launch week" in e.label and "2026-11-16 .. 2026-11-22" in e.label for e in at.expander)


def test_export_tab_prepares_a_focus_parquet_download(page_db):
    import io

    import pyarrow.parquet as pq

    at = run("viewer", view="Export")
    at.selectbox(key="export_month").set_value(date(2026, 11, 1))
    at.radio(key="export_kind").set_value("FOCUS 1.2 Parquet")
    next(b for b in at.button if b.label == "Prepare export").click().run()
    assert not at.exception, at.exception
    name, data, rows, _ = at.session_state["prepared_export"]
    assert name == "focus-2026-11.parquet" and rows == 20
    table = pq.read_table(io.BytesIO(data))
    assert sum(table.column("BilledCost").to_pylist(), Decimal(0)) == Decimal(80)


RATES = b"date,base,quote,rate\n2026-11-01,USD,EUR,0.92\n2026-11-15,USD,EUR,0.95\n"


def test_admin_imports_exchange_rates_and_the_page_converts_with_them(page_db):
    at = run("admin", budget="1")
    assert "no USD->EUR rate" in "\n".join(c.value for c in at.caption)
    at = run("admin", view="Exchange rates")
    at.file_uploader(key="fx_upload").upload("rates.csv", RATES, "text/csv").run()
    next(b for b in at.button if b.key == "fx_import").click().run()
    assert not at.exception, at.exception
    assert "Imported 2 new rate(s), replaced 0." in [s.value for s in at.success]
    assert [(r.day, r.rate) for r in fx.list_rates(page_db)] == [
        (date(2026, 11, 1), Decimal("0.92")),
        (date(2026, 11, 15), Decimal("0.95")),
    ]
    at = run("admin", budget="1")  # the import cleared the cached reads: the new rates are used
    captions = "\n".join(c.value for c in at.caption)
    # Day by day at each day's rate (4.00 a day): Nov 1-14 x 0.92 + Nov 15-20 x 0.95 = 51.52 + 22.80.
    # The month total at one day's rate (80 x 0.95 = 76.00) was a second figure for the same spend.
    assert "80.00 USD = 74.32 EUR" in captions
    assert "no USD->EUR rate" not in captions
    at = run("admin", view="Exchange rates")
    rates_table = next(df.value for df in at.dataframe if "quote" in df.value)
    assert list(rates_table["="]) == ["0.95", "0.92"]  # newest first


def test_a_rates_file_that_is_not_utf8_is_refused_by_name(page_db):
    at = run("admin", view="Exchange rates")
    at.file_uploader(key="fx_upload").upload("rates.csv", b"date,base\n\xff\xfe\x00", "text/csv").run()
    next(b for b in at.button if b.key == "fx_import").click().run()
    assert not at.exception, at.exception
    assert any("rates.csv is not UTF-8 text" in e.value for e in at.error)
    assert fx.list_rates(page_db) == []


def test_team_rules_are_saved_through_actions_as_a_new_version(page_db):
    from dashboard import actions

    before = queries.team_rules()  # cached now; the save must make the next read see the new version
    assert before.version == 1
    rows = [
        {"provider": "", "match_field": "project", "pattern": "proj_b", "team": "growth", "cost_centre": "CC-2"},
        {"provider": None, "match_field": None, "pattern": "  ", "team": None},  # a blank editor row
    ]
    assert actions.save_team_rules(rows, created_by="admin") == 2
    after = queries.team_rules()
    assert after.version == 2 and [(r.pattern, r.team) for r in after.rules] == [("proj_b", "growth")]
    with pytest.raises(chargeback.ChargebackError, match="needs a team"):
        actions.save_team_rules([{"match_field": "project", "pattern": "proj_c", "team": ""}], created_by="admin")
    assert chargeback.load_rules(page_db).version == 2  # nothing saved


def test_admin_deletes_a_budget_from_its_form(page_db):
    at = run("admin", budget="1")
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not at.exception, at.exception
    assert budgets.list_budgets(page_db) == []
    assert any("No budgets yet." in i.value for i in at.info)


def test_a_garbage_day_in_the_link_is_ignored_not_a_stack_trace(page_db):
    at = run("viewer", view="Anomalies", day="garbage")
    assert not at.exception, at.exception
    assert any("not a date" in w.value for w in at.warning)
    assert run("viewer", view="Anomalies", day="2026-11-10").exception == []


def test_an_unknown_scope_value_is_refused_unless_the_admin_allows_it(page_db):
    at = run("admin")
    at.text_input(key="new_name").set_value("Future project")
    at.selectbox(key="new_scope").set_value("project")
    at.text_input(key="new_value").set_value("proj_future")
    at.text_input(key="new_amount").set_value("10")
    add_button(at).click().run()
    assert any("no project 'proj_future'" in e.value and "proj_a, proj_b" in e.value for e in at.error)
    assert [b.name for b in budgets.list_budgets(page_db)] == ["All LLM"]
    at.checkbox(key="new_allow_unknown").check()  # budgets add --allow-unknown
    add_button(at).click().run()
    assert not at.exception, at.exception
    assert [(b.name, b.scope_value) for b in budgets.list_budgets(page_db)][1:] == [("Future project", "proj_future")]


def test_a_scope_without_history_is_one_new_spend_notice_not_anomalies(page_db):
    at = run("viewer", view="Anomalies")
    assert not at.exception, at.exception
    notices = next(df.value for df in at.dataframe if "scope" in df.value)
    rows = set(zip(notices["day"], notices["scope"], notices["spent"], strict=True))
    assert ("2026-11-01", "provider=openai", "4.00") in rows
    assert any("No anomalies in these 30 days." in i.value for i in at.info)


def test_budget_figures_are_computed_once_per_data_change(page_db, monkeypatch):
    calls = []
    real = budgets.budget_status
    monkeypatch.setattr(budgets, "budget_status", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    first = run("viewer", budget="1")
    assert sorted(calls) == ["All LLM", "forecast"]  # the budget and the all-spend forecast
    assert run("viewer", budget="1").metric[0].value == first.metric[0].value == "80.00 USD"
    assert len(calls) == 2  # a second visit reads the cache, whatever the minute
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    late = UsageRecord(
        provider="openai", source="api", kind="completions", bucket_start=start, bucket_end=start + timedelta(hours=1),
        account="org", project="proj_a", model="gpt-4o", input_tokens=10, requests=1, cost=Decimal(6),
        currency="USD", basis="estimated", price_version="t",
    )  # fmt: skip
    upsert_records(page_db, [late])  # written by a sync: the dashboard's cache is not cleared
    assert {m.label: m.value for m in run("viewer", budget="1").metric}["Spent this period"] == "86.00 USD"
    assert len(calls) == 4


def test_the_warmer_fills_the_keys_the_page_reads(page_db, monkeypatch):
    import threading

    calls = []
    real = budgets.budget_status
    monkeypatch.setattr(budgets, "budget_status", lambda *a, **k: calls.append(a[1].name) or real(*a, **k))
    stop = threading.Event()
    warmed = []
    warm = queries.warm_budget_views
    monkeypatch.setattr(queries, "warm_budget_views", lambda: warmed.append(1) or stop.set())
    queries._warm_loop(stop)  # warms once at start, then stops when asked
    assert warmed == [1]
    with page_db.begin() as conn:  # every day marked, as a long import would leave the slim rollup
        conn.execute(SLIM_DIRTY.delete())
        days = select(USAGE_DAILY.c.day, literal(1)).distinct()
        conn.execute(SLIM_DIRTY.insert().from_select(["day", "seq"], days))
        # ... and a day years back, which no page's default window reads
        conn.execute(SLIM_DIRTY.insert().values(day=datetime(2001, 1, 1, tzinfo=UTC), seq=1))
    warm()
    with page_db.connect() as conn:
        assert conn.execute(select(SLIM_DIRTY.c.day)).first() is None  # rebuilt before any visitor reads
    assert sorted(calls) == ["All LLM", "forecast", "forecast"]  # the forecast table's and Overview's
    at = run("viewer", budget="1")
    assert {m.label: m.value for m in at.metric}["Spent this period"] == "80.00 USD"
    assert len(calls) == 3  # the page found everything already computed


def test_chargeback_shows_the_same_converted_month_as_the_budget(page_db):
    fx.import_rates_csv(page_db, RATES.decode(), "rates.csv")
    at = run("viewer", view="Chargeback")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    # Each day at its own rate, as the budget's 74.32 EUR: one figure for the same month's spend.
    assert list(zip(table["team"], table["amount"], table["currency"], strict=True)) == [
        ("search", "37.16", "EUR"),
        ("unallocated", "37.16", "EUR"),
        ("TOTAL", "74.32", "EUR"),
    ]
    assert "80.00 USD = 74.32 EUR" in "\n".join(c.value for c in run("viewer", budget="1").caption)


def test_the_warmer_runs_only_in_the_served_dashboard(page_db, monkeypatch):
    started = []
    monkeypatch.setattr(queries, "_warmer", started.append)
    assert queries.WARM_WHEN_SERVED == {"on": False}  # AppTest has a runtime, but tests share one process
    run("viewer")
    from tests.dashboard.conftest import app

    app("viewer")  # the whole app (navigation included) under AppTest
    assert started == []
    monkeypatch.setitem(queries.WARM_WHEN_SERVED, "on", True)  # what dashboard/server.py does
    app("viewer")
    assert started == [page_db.url.render_as_string(hide_password=False)]


def test_admin_enforces_lifts_and_stops_a_budget_cap_from_the_page(page_db):
    """The Budgets page does what ``budgets add --enforce``, ``enforce`` and ``lift`` do."""
    at = run("admin", budget="1")
    next(b for b in at.button if b.label == "Enforce with the proxy").click().run()
    assert not at.exception, at.exception
    assert budgets.get_budget(page_db, 1).enforce
    assert any("Enforced by the proxy" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Lift until the period ends").click().run()
    lifted = budgets.get_budget(page_db, 1)
    assert lifted.enforce and lifted.lifted_until == datetime(2026, 12, 1, tzinfo=UTC)  # NOW's month ends
    assert any("Lifted until 2026-12-01" in s.value for s in at.success)
    at = run("admin", budget="1")
    assert not [b for b in at.button if b.label == "Lift until the period ends"]  # already lifted
    next(b for b in at.button if b.label == "Stop enforcing").click().run()
    assert not budgets.get_budget(page_db, 1).enforce


def test_a_new_enforced_budget_and_an_account_budget_that_cannot_be(page_db):
    at = run("admin")
    at.text_input(key="new_name").set_value("Capped")
    at.text_input(key="new_amount").set_value("50")
    at.checkbox(key="new_enforce").check()
    add_button(at).click().run()
    assert not at.exception, at.exception
    assert [(b.name, b.enforce) for b in budgets.list_budgets(page_db)] == [("All LLM", False), ("Capped", True)]
    at.text_input(key="new_name").set_value("Org cap")
    at.selectbox(key="new_scope").set_value("account")
    at.text_input(key="new_value").set_value("org")
    add_button(at).click().run()
    assert any("account budget cannot be enforced" in e.value for e in at.error)
    assert len(budgets.list_budgets(page_db)) == 2
