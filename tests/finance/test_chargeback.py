"""Chargeback: versioned rules, first match wins, unallocated line, totals to the cent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from collector.app import app
from collector.core.schema import UsageRecord
from collector.core.store import upsert_records
from collector.demo.synthetic import GeneratorConfig, generate
from collector.finance import chargeback
from collector.finance.chargeback import ChargebackError, Rule, allocate_cents, monthly_chargeback
from collector.proxy.recorder import insert_events
from collector.proxy.rollup import rollup
from collector.query.report import Filters, report
from tests.conftest import create_database
from tests.proxy.test_recorder_rollup import make_event

D = Decimal
WINDOW = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def rec(project: str, key: str, cost: str, *, team: str = "", day: int = 3, provider: str = "openai", user: str = ""):
    start = datetime(2026, 10, 1, 10, tzinfo=UTC) + timedelta(days=day - 1)
    return UsageRecord(
        provider=provider,
        source="api",
        kind="completions",
        bucket_start=start,
        bucket_end=start + timedelta(hours=1),
        account="org",
        project=project,
        api_key_id=key,
        user_id=user,
        team=team,
        model="gpt-4o",
        input_tokens=10,
        requests=1,
        cost=D(cost),
        currency="USD",
        basis="estimated",
        price_version="t",
    )


def test_rules_assign_teams_first_match_wins_and_the_rest_is_unallocated(engine):
    upsert_records(
        engine,
        [
            rec("proj_search", "k1", "10.005"),
            rec("proj_search", "k2", "5.001"),
            rec("proj_other", "k_special", "3.333"),
            rec("proj_misc", "k9", "1.111"),
            rec("", "", "2.000", team="growth", provider="anthropic"),  # team from the source
            rec("", "", "0.500", user="u_ops", provider="anthropic"),  # the provider's user id
            rec("proj_search", "k1", "99", day=1 + 31),  # November: not in October
        ],
    )
    v1 = chargeback.save_rules(
        engine,
        [
            Rule("api_key", "k_special", "platform", "CC-100"),
            Rule("project", "proj_s*", "search", "CC-200", provider="openai"),
            Rule("user", "u_ops*", "ops", "CC-300"),
            Rule("monitor_token", "*", "proxy-only", "CC-0"),  # matches proxy rows only: none here
        ],
        created_by="alice",
    )
    cb = monthly_chargeback(engine, date(2026, 10, 1))
    lines = {(ln.team, ln.cost_centre): ln for ln in cb.lines}
    assert lines[("search", "CC-200")].amount == D("15.006")
    assert lines[("platform", "CC-100")].amount == D("3.333")
    assert lines[("ops", "CC-300")].amount == D("0.5")
    assert lines[("growth", "")].amount == D(2)
    assert lines[("unallocated", "")].amount == D("1.111")
    assert cb.rules_version == v1 == 1
    total = report(engine, Filters(cb.since, cb.until)).totals()[("USD", "estimated")].cost
    assert cb.totals["USD"] == total == cb.line_sum("USD") == D("21.95")
    assert cb.cents_sum("USD") == total.quantize(D("0.01"))
    csv_text = chargeback.chargeback_csv(cb)
    assert "2026-10,search,CC-200,USD,15.01,15.006,1,preferred" in csv_text
    assert csv_text.strip().endswith("2026-10,TOTAL,,USD,21.95,21.95,1,preferred")

    # A new version changes the split; the old version can still be re-run.
    chargeback.save_rules(engine, [Rule("project", "proj_*", "everyone", "CC-9")], created_by="bob")
    assert {ln.team for ln in monthly_chargeback(engine, date(2026, 10, 1)).lines} == {
        "everyone",
        "growth",
        "unallocated",
    }
    old = monthly_chargeback(engine, date(2026, 10, 1), rules=chargeback.load_rules(engine, 1))
    assert {ln.team for ln in old.lines} == {"search", "platform", "ops", "growth", "unallocated"}
    history = chargeback.rule_versions(engine)
    assert [(h.version, h.created_by, len(h.rules)) for h in history] == [(2, "bob", 1), (1, "alice", 4)]


def test_monitor_token_rules_match_what_the_proxy_rollup_writes(engine):
    """A real proxy rollup row: team and project from the token, the key fingerprint as api_key_id."""
    day = datetime(2026, 10, 7, 9, 15, tzinfo=UTC)
    events = [
        make_event(day, team="search", project="ranker"),
        make_event(day, team="search", project="ranker"),
        make_event(day + timedelta(hours=1), team="search", project="indexer"),
        make_event(day, team="ops", project=""),
        make_event(day, team="", project="", token_id=0),  # no monitor token
    ]
    assert insert_events(engine, events) == 5 and rollup(engine) > 0
    # A provider row with the same team/project: a monitor-token rule never matches it.
    upsert_records(engine, [rec("ranker", "k1", "7", team="search", day=7)])
    chargeback.save_rules(
        engine,
        [
            Rule("monitor_token", "search/ranker", "ranking", "CC-500"),
            Rule("monitor_token", "search/*", "search", "CC-200"),
        ],
    )
    proxy = report(engine, Filters(*WINDOW, sources=("proxy",)), by=("team", "project"))
    spend = {(r.dims["team"], r.dims["project"]): r.cost for r in proxy.rows}
    assert all(c is not None and c > 0 for c in spend.values()) and len(spend) == 4
    cb = monthly_chargeback(engine, date(2026, 10, 1), source="proxy")
    lines = {(ln.team, ln.cost_centre): ln.amount for ln in cb.lines}
    assert lines == {
        ("ranking", "CC-500"): spend[("search", "ranker")],
        ("search", "CC-200"): spend[("search", "indexer")],
        ("ops", ""): spend[("ops", "")],  # no rule: the token's team, as the proxy recorded it
        ("unallocated", ""): spend[("", "")],
    }
    assert cb.source == "proxy" and cb.line_sum("USD") == cb.totals["USD"] == sum(spend.values(), D(0))
    provider = monthly_chargeback(engine, date(2026, 10, 1))
    assert [(ln.team, ln.amount) for ln in provider.lines] == [("search", D(7))]  # from the row's team
    result = CliRunner().invoke(app, ["teams", "chargeback", "--month", "2026-10", "--source", "nope"])
    assert result.exit_code != 0


def test_generator_month_chargeback_equals_the_month_spend_to_the_cent(sqlite_engine):
    cfg = GeneratorConfig(days=31, rows_per_hour=12, end=datetime(2026, 11, 1, tzinfo=UTC))
    upsert_records(sqlite_engine, generate(cfg))
    chargeback.save_rules(
        sqlite_engine,
        [
            Rule("project", "proj_support-bot", "search", "CC-1"),
            Rule("api_key", "key_code-review_*", "support", "CC-2"),
        ],
    )
    cb = monthly_chargeback(sqlite_engine, date(2026, 10, 1))
    totals = report(sqlite_engine, Filters(cb.since, cb.until)).totals()
    month_spend = sum((s.cost for (cur, _), s in totals.items() if cur == "USD" and s.cost is not None), D(0))
    assert cb.line_sum("USD") == cb.totals["USD"] == month_spend
    assert cb.cents_sum("USD") == month_spend.quantize(D("0.01"))
    search = report(sqlite_engine, Filters(cb.since, cb.until, projects=("proj_support-bot",))).totals()
    search_spend = sum((s.cost for s in search.values() if s.cost is not None), D(0))
    assert next(ln for ln in cb.lines if ln.team == "search").amount == search_spend > 0


def test_an_empty_rule_list_is_a_version_too(sqlite_engine):
    chargeback.save_rules(sqlite_engine, [Rule("project", "p", "t")])
    v = chargeback.save_rules(sqlite_engine, [])
    assert chargeback.load_rules(sqlite_engine).version == v and chargeback.load_rules(sqlite_engine).rules == ()
    with pytest.raises(ChargebackError, match="no team rules version 9"):
        chargeback.load_rules(sqlite_engine, 9)


def test_rules_csv_round_trips_and_bad_lines_are_named():
    rules = [Rule("workspace", "wrkspc_*", "research", "CC-7", provider="anthropic", note="all workspaces")]
    assert chargeback.rules_from_csv(chargeback.rules_to_csv(rules)) == rules
    with pytest.raises(ChargebackError, match="line 3: rule field 'colour'"):
        chargeback.rules_from_csv("match_field,pattern,team\nproject,p,t\ncolour,red,t\n")
    with pytest.raises(ChargebackError, match="missing column"):
        chargeback.rules_from_csv("pattern,team\np,t\n")
    with pytest.raises(ChargebackError, match="unallocated"):
        Rule("project", "p", "unallocated")


@given(st.lists(st.decimals(min_value=-1000, max_value=10_000, places=6, allow_nan=False), min_size=1, max_size=30))
def test_allocated_cents_add_up_to_the_rounded_total(amounts):
    cents = allocate_cents(amounts)
    assert sum(cents, D(0)) == sum(amounts, D(0)).quantize(D("0.01"))
    assert all(abs(c - a) < D("0.01") for c, a in zip(cents, amounts, strict=True))


def test_cli_chargeback_and_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    create_database()
    runner = CliRunner()
    rules = tmp_path / "rules.csv"
    rules.write_text("match_field,pattern,team,cost_centre\nproject,proj_*,search,CC-1\n")
    assert runner.invoke(app, ["teams", "set-rules", str(rules), "--by", "carol"]).exit_code == 0
    from collector.db.migrate import open_database

    upsert_records(open_database(), [rec("proj_x", "k", "1.5"), rec("", "", "0.25")])
    out = tmp_path / "cb.csv"
    result = runner.invoke(app, ["teams", "chargeback", "--month", "2026-10", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "search" in result.output and "unallocated" in result.output and "1.75 USD" in result.output
    assert out.read_text().count("\n") == 4  # header, two teams, total
    shown = runner.invoke(app, ["teams", "rules"])
    assert "version 1 by carol" in shown.output and "proj_*" in shown.output
    bad = tmp_path / "bad.csv"
    bad.write_text("match_field,pattern,team\nnope,x,y\n")
    failed = runner.invoke(app, ["teams", "set-rules", str(bad)])
    assert failed.exit_code == 1 and "line 2" in failed.output


def test_chargeback_in_the_readers_currency_converts_each_day_before_splitting(tmp_path, monkeypatch):
    """``teams chargeback --currency EUR``: day 3 at 0.9, day 4 at 0.8; lines still add up to the total."""
    from collector.finance import fx

    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'cb.db'}")
    engine = create_database()
    chargeback.save_rules(engine, [Rule("project", "proj_a*", "alpha", "CC-A")], created_by="t")
    upsert_records(
        engine,
        [rec("proj_a1", "k1", "10", day=3), rec("proj_b", "k2", "20", day=3), rec("proj_a1", "k1", "5", day=4)],
    )
    fx.set_rate(engine, date(2026, 10, 3), "USD", "EUR", D("0.9"))
    fx.set_rate(engine, date(2026, 10, 4), "USD", "EUR", D("0.8"))
    cb = monthly_chargeback(engine, date(2026, 10, 1), currency="EUR", converter=fx.RateBook.load(engine).day_rate)
    lines = {(ln.team, ln.currency): ln.amount for ln in cb.lines}
    assert lines == {("alpha", "EUR"): D("9.0") + D("4.0"), ("unallocated", "EUR"): D("18.0")}
    assert cb.totals == {"EUR": D("31.0")} and cb.cents_sum("EUR") == D("31.00")

    monkeypatch.setenv("LLM_USAGE_DISPLAY_CURRENCY", "EUR")
    from collector.core.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    shown = runner.invoke(app, ["teams", "chargeback", "--month", "2026-10"])
    assert shown.exit_code == 0, shown.output
    assert "31.00 EUR" in shown.output and "USD" not in shown.output
    as_billed = runner.invoke(app, ["teams", "chargeback", "--month", "2026-10", "--currency", ""])
    assert "35.00 USD" in as_billed.output
    bad = runner.invoke(app, ["teams", "chargeback", "--month", "2026-10", "--currency", "euro"])
    assert bad.exit_code == 2 and "ISO 4217" in bad.output


def test_chargeback_and_rules_csv_escape_formulas(sqlite_engine):
    """Team names come from sources and rule editors: a spreadsheet must not evaluate them."""
    upsert_records(sqlite_engine, [rec("", "", "2.000", team='=HYPERLINK("http://x")')])
    cb = monthly_chargeback(sqlite_engine, date(2026, 10, 1))
    text = chargeback.chargeback_csv(cb)
    assert "'=HYPERLINK" in text and ",2.00,2," in text
    rules = [Rule("project", "-x*", "@team", "+CC")]
    written = chargeback.rules_to_csv(rules)
    assert "'-x*" in written and "'@team" in written and "'+CC" in written
    assert chargeback.rules_from_csv(written) == rules
