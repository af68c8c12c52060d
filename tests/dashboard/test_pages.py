"""Every page under AppTest against the seeded database: renders, shows the seed's totals, roles."""

import pytest

from tests.dashboard.conftest import DUMMY_KEY, MTD, PREV, PROJECTED, TODAY, app, rendered, texts


def test_overview_shows_the_exact_totals_of_the_seed(dashboard_db):
    at = app("viewer")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Month to date"] == MTD
    assert metrics["Today (so far)"] == TODAY
    assert metrics["Same days last month"] == PREV
    assert metrics["Projected month end"] == PROJECTED
    assert "Projection:" in texts(at)


def test_overview_projection_is_the_forecast_modules(dashboard_db):
    """The same method, figure and interval as the Budgets page's "all spend" forecast."""
    from collector.finance.budgets import scope_forecast
    from collector.finance.forecast import METHOD
    from dashboard import charts, queries
    from tests.dashboard.conftest import NOW

    _spent, fc, _notes = scope_forecast(queries.engine(), "all", "", now=NOW)
    at = app("viewer")
    assert {m.label: m.value for m in at.metric}["Projected month end"] == charts.money(fc.projected) == PROJECTED
    caption = next(c.value for c in at.caption if c.value.startswith("Projection:"))
    assert METHOD in caption and "80% interval" in caption
    assert f"{charts.money(fc.low)} .. {charts.money(fc.high)}" in caption
    assert "11 day(s) left" in caption


def test_overview_shows_the_budgets_status_and_forecast(dashboard_db):
    at = app("viewer")
    table = next(df.value for df in at.dataframe if "budget" in df.value)
    row = table.set_index("budget").loc["All LLM"]
    assert (row["scope"], row["spent"], row["amount"]) == ("all spend", MTD, "$200.00")
    assert row["used"] == pytest.approx(144.25 / 200)
    assert row["period"] == "2026-11-01 → 2026-11-30"
    assert row["forecast"] == PROJECTED  # the budget over all spend forecasts what the Overview projects


def test_overview_compares_with_last_month_and_lists_freshness(dashboard_db):
    at = app("viewer")
    mtd = next(m for m in at.metric if m.label == "Month to date")
    assert mtd.delta == "+1703.1% vs same days last month"  # 144.25 / 8.00 - 1
    body = texts(at)
    assert "Data freshness" in body
    assert {"api: oldest of the newest data", "csv: oldest of the newest data"} <= {m.label for m in at.metric}


def test_explore_totals_and_filters_from_the_url(dashboard_db):
    at = app("viewer", "app_pages/explore.py")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Spend"] == "$144.25"
    assert len(at.get("download_button")) == 1
    table = at.dataframe[0].value
    assert set(table["provider"]) == {"openai", "anthropic", "google"}
    # A shared link: the provider filter comes from the URL.
    at = app("viewer", None, provider="anthropic")
    at.switch_page("app_pages/explore.py")
    at.query_params["provider"] = "anthropic"
    at.run()
    assert {m.label: m.value for m in at.metric}["Spend"] == "$8.00"
    assert set(at.dataframe[0].value["provider"]) == {"anthropic"}


def test_explore_proxy_is_its_own_series(dashboard_db):
    at = app("viewer", "app_pages/explore.py")
    at.multiselect(key="source").set_value(["api", "csv", "proxy"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    proxy = table[table["section"] == "proxy"]
    assert list(proxy["cost"]) == ["9.99"]
    assert {m.label: m.value for m in at.metric}["Spend"] == "$144.25"  # never added to provider money


def test_tokens_page_shows_cache_hit_rate_and_cost_per_million(dashboard_db):
    at = app("viewer", "app_pages/tokens.py")
    assert not at.exception, at.exception
    per_model = at.dataframe[0].value.set_index("model")
    # gpt-4o in the window: Nov 5 and Nov 20, 1000 input (400 cache read) + 200 output each. Nov 5 is
    # billed without a model breakdown, so only Nov 20 has money of its own: 10.00 / 1200 tokens x 1M.
    assert per_model.loc["gpt-4o", "cache hit rate"] == "40.0%"
    assert per_model.loc["gpt-4o", "cost per 1M tokens"] == "$8.3k"
    assert per_model.loc["mystery-model", "cost"] == "unpriced"


def test_reconciliation_compares_billed_estimated_and_proxy(dashboard_db):
    at = app("viewer", "app_pages/reconciliation.py")
    assert not at.exception, at.exception
    accounts = at.dataframe[0].value.set_index("provider")
    assert accounts.loc["openai", "billed"] == "$6.25"
    assert accounts.loc["openai", "estimated"] == "$35.50"  # 10 + 20 + 5.50, the price table's view
    assert accounts.loc["openai", "proxy"] == "$9.99"
    assert accounts.loc["openai", "otel"] == "missing"  # a column of its own, empty without OTLP data
    assert accounts.loc["google", "estimated"] == "missing"
    assert at.selectbox(key="recon_account").value == "anthropic / org-b"
    at.selectbox(key="recon_account").set_value("openai / org-a").run()
    per_day = next(df.value for df in at.dataframe if "day" in df.value).set_index("day")
    assert per_day.loc["2026-11-05", "status"] == "no proxy data"
    assert per_day.loc["2026-11-19", "status"] == "no billed data; no proxy data"
    assert per_day.loc["2026-11-20", "proxy"] == "$9.99"
    # The 6.25 bill has no breakdown: 0.75 above its 5.50 estimate is unexplained, and flagged (> 2 %).
    assert per_day.loc["2026-11-05", "residual"] == "$0.75" and per_day.loc["2026-11-05", "flagged"]


def test_reconciliation_explains_the_gap_with_a_waterfall_and_its_causes(dashboard_db):
    at = app("viewer", "app_pages/reconciliation.py")
    at.selectbox(key="recon_account").set_value("openai / org-a").run()
    assert not at.exception, at.exception
    steps = next(df.value for df in at.dataframe if "step" in df.value).set_index("step")
    # Nov 19 and 20 have usage (20.00 + 10.00) but no bill: one side only; the rest is the residual.
    assert steps.loc["days or accounts with one side only", "amount"] == "-$30.00"
    assert steps.loc["residual (unexplained)", "amount"] == "$0.75"
    assert steps.loc["residual (unexplained)", "share of billed"] == "12.0%"
    assert steps.loc["credits", "amount"] == "$0.00"
    assert "Why the bill and usage x price differ: openai / org-a" in texts(at)
    charts = [c for c in at.get("plotly_chart") if "from usage x price to the bill" in c.proto.spec]
    assert len(charts) == 1 and '"type":"waterfall"' in charts[0].proto.spec.replace(" ", "")
    captions = " ".join(c.value for c in at.caption)
    assert "Residual (unexplained): $0.75 (12.0% of billed)" in captions
    assert "Outside the proxy" in captions  # the proxy covers org-a (its 9.99 on Nov 20)


def test_proxy_page_empty_state_and_recorded_usage(dashboard_db):
    at = app("viewer", "app_pages/proxy.py")
    assert not at.exception, at.exception
    body = texts(at)
    assert "llm-usage proxy --port 8787" in body
    assert "3 requests" in body and "$9.99" in body
    assert "Monitor tokens" not in body  # admins only


def test_admin_pages_render_and_show_their_empty_states(dashboard_db):
    at = app("admin", "app_pages/health.py")
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Usage rows"] == "11"
    assert "No sync has run yet" in texts(at)
    at = app("admin", "app_pages/connections.py")
    assert not at.exception, at.exception
    assert at.dataframe[0].value.loc[0, "key_hint"] == "sk-admin…Hj5"
    at = app("admin", "app_pages/import_csv.py")
    assert not at.exception, at.exception
    assert at.file_uploader(key="import_files") is not None
    assert "No file imported yet." in texts(at)
    at = app("admin", "app_pages/users.py")
    assert set(at.dataframe[0].value["name"]) == {"admin", "finance", "viewer"}
    at = app("admin", "app_pages/proxy.py")
    assert "llm-usage tokens create" in texts(at)


@pytest.mark.parametrize(
    "page", ["health", "connections", "users", "proxy", "overview", "budgets", "import_csv", "explore"]
)
def test_no_page_renders_an_admin_key(dashboard_db, page):
    at = app("admin", f"app_pages/{page}.py")
    assert not at.exception, at.exception
    shown = rendered(at)
    assert "sk-admin…Hj5" in shown or page not in ("health", "connections")
    assert DUMMY_KEY not in shown
    assert DUMMY_KEY[-12:] not in shown


def test_overview_and_explore_on_postgresql(pg_url, monkeypatch):
    import streamlit as st

    from collector.core.settings import get_settings
    from dashboard import queries
    from tests.dashboard.conftest import NOW, seed

    seed(pg_url)
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    monkeypatch.setattr(queries, "as_of", lambda: NOW)
    st.cache_data.clear()
    at = app("viewer")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Month to date"], metrics["Today (so far)"], metrics["Projected month end"]) == (
        MTD,
        TODAY,
        PROJECTED,
    )
    at.switch_page("app_pages/explore.py").run()
    assert {m.label: m.value for m in at.metric}["Spend"] == MTD
    st.cache_data.clear()
    queries._engine.clear()


def test_explore_hourly_by_model_from_a_shared_link(dashboard_db):
    at = app("viewer")
    at.switch_page("app_pages/explore.py")
    at.query_params.update(grain="hour", by="model", days=["2026-11-19", "2026-11-20"])
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    hours = {p.isoformat() for p in table["period"]}
    assert hours == {"2026-11-19T10:00:00+00:00", "2026-11-20T10:00:00+00:00"}
    assert {m.label: m.value for m in at.metric}["Spend"] == "$33.20"  # 20.00 + 10.00 + 3.20
    assert at.get("download_button")[0].proto.label == "Download CSV"


def test_proxy_page_reads_latency_and_errors_from_proxy_events(dashboard_db):
    from datetime import timedelta

    from collector.proxy.recorder import insert_events
    from dashboard import queries
    from tests.dashboard.conftest import NOW, proxy_event

    def event(ago: timedelta, latency: float, status: int = 200) -> dict:
        return proxy_event(NOW - ago, latency, status)

    # 100 calls in the last hour: latency 1..100 ms; 4 answered 500, one stream the upstream cut.
    # A client that hung up is not an error; a call two hours ago is outside the window.
    events = [event(timedelta(seconds=30 * (i + 1)), i + 1, 500 if i < 4 else 200) for i in range(100)]
    events[4]["error"], events[4]["partial"] = "upstream_cut", True
    events[5]["error"], events[5]["partial"] = "client_disconnected", True
    events.append(event(timedelta(hours=2), 9999))
    assert insert_events(queries.engine(), events) == 101
    at = app("viewer", "app_pages/proxy.py")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Latency p50"] == "51 ms"
    assert metrics["Latency p95"] == "96 ms"
    assert metrics["Error rate"] == "5.0%"
    assert metrics["Requests/s (last hour)"] == "0.03"  # 100 / 3600
    assert "No proxy traffic recorded in the last hour" not in texts(at)


def test_admin_rolls_up_proxy_calls_now(dashboard_db):
    from datetime import timedelta

    from collector.proxy.recorder import insert_events
    from dashboard import queries
    from tests.dashboard.conftest import NOW, proxy_event

    assert "Roll up now" not in [b.label for b in app("viewer", "app_pages/proxy.py").button]
    at = app("admin", "app_pages/proxy.py")
    before = texts(at)
    assert "3 requests" in before
    insert_events(queries.engine(), [proxy_event(NOW - timedelta(minutes=m), 10.0) for m in (1, 2)])
    next(b for b in at.button if b.label == "Roll up now").click().run()
    assert not at.exception, at.exception
    assert "proxy: 2 calls rolled up into 1 usage rows" in at.success[0].value
    assert "5 requests" in texts(at)  # the seed's 3 and the 2 just rolled up, without waiting


def test_admin_creates_and_revokes_a_monitor_token(dashboard_db):
    from collector.proxy.tokens import hash_token, load_active
    from dashboard import queries

    at = app("admin", "app_pages/proxy.py")
    next(t for t in at.text_input if t.label == "Team").set_value("search")
    next(t for t in at.text_input if t.label == "Project").set_value("proj_search")
    next(b for b in at.button if b.label == "Create token").click().run()
    assert not at.exception, at.exception
    token = at.code[0].value
    assert token.startswith("mt_")
    assert load_active(queries.engine())[hash_token(token)].team == "search"
    at.run()  # shown once: gone on the next run, the table lists its hint only
    assert token not in rendered(at)
    listed = at.dataframe[-1].value
    assert list(listed["team"]) == ["search"] and listed.loc[0, "hint"].endswith(token[-3:])
    next(b for b in at.button if b.label == "Revoke").click().run()
    assert load_active(queries.engine()) == {}


def test_health_check_button_gives_the_status_commands_answer(dashboard_db):
    at = app("admin", "app_pages/health.py")
    at.button(key="check_health").click().run()
    assert not at.exception, at.exception
    body = texts(at)
    # The same problem `llm-usage status --check` reports (the seeded connection is failing),
    # with the key the provider's error quoted masked.
    assert "connection prod (openai): failing: 401 from provider for key sk-admi…" in body
    assert DUMMY_KEY not in body
    assert "no CSV imports recorded" in body


def test_proxy_page_counts_refused_calls_of_the_last_day(dashboard_db):
    from datetime import timedelta

    from collector.proxy.limits import Refusal, RefusalLog
    from collector.proxy.tokens import TokenInfo
    from dashboard import queries
    from tests.dashboard.conftest import NOW

    log = RefusalLog()
    info = TokenInfo(7, "team-a", "p1", rpm_limit=60)
    for _ in range(3):
        log.add(Refusal(403, "budget", "over", 60, 4, "team-a cap"), "openai", info)
    log.add(Refusal(429, "rate_requests", "over", 5, None, ""), "google", info)
    old = Refusal(429, "rate_tokens", "over", 5)
    log.add(old, "openai", info)
    log.pending[-1]["ts"] = NOW - timedelta(days=2)  # outside the last day
    for row in log.pending:
        if row["ts"] > NOW:
            row["ts"] = NOW - timedelta(minutes=5)
    log.store(queries.engine())
    at = app("viewer", "app_pages/proxy.py")
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "refused" in d.value.columns)
    assert [tuple(r) for r in table[["kind", "budget_name", "team", "refused"]].itertuples(index=False)] == [
        ("budget", "team-a cap", "team-a", 3),
        ("rate_requests", "", "team-a", 1),
    ]
