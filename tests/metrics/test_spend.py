"""Prometheus spend metrics over real HTTP: every exported value equals ``report`` for the same scope."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import insert

from collector.core.ingest import ingest_records
from collector.core.schema import SOURCES, UsageRecord
from collector.core.settings import get_settings
from collector.finance.budgets import create_budget, statuses
from collector.metrics.server import metrics_app
from collector.metrics.spend import OTHER, SpendCollector, registry_for, windows
from collector.query.health import SYNC_STATE
from collector.query.report import Filters, report
from collector.sync.connections import add_connection, mark_status
from collector.sync.vault import load_vault
from tests.fakes.upstream import ServerThread


def _now() -> datetime:
    """The tests' clock: now, or 23:30 yesterday in the first hours of a UTC day.

    The seed puts rows up to 3 hours before it and expects them "today"; right after midnight
    they would fall on the day before. Everything here reads this clock (the collector is given
    it), so an earlier "now" is consistent.
    """
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    return now if now.hour >= 4 else now - timedelta(hours=now.hour + 1)


NOW = _now()
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini", "gpt-4.1"]


def rec(hours_ago: int, **kw) -> UsageRecord:
    start = NOW.replace(minute=0) - timedelta(hours=hours_ago)
    base = {"provider": "openai", "source": "api", "kind": "completions", "account": "org-1"}
    return UsageRecord(bucket_start=start, bucket_end=start + timedelta(hours=1), **{**base, **kw})


def seed(engine) -> None:
    records = []
    for i, model in enumerate(MODELS):  # five models, three projects: folded with top 2
        for h in (0, 30):  # today, and (usually) earlier this month
            records.append(
                rec(
                    h,
                    model=model,
                    project=f"proj_{i % 3}",
                    input_tokens=1000 * (i + 1),
                    output_tokens=100 * (i + 1),
                    requests=i + 1,
                )
            )
    records.append(
        rec(1, provider="anthropic", account="ws", model="claude-sonnet-4-5", input_tokens=5000, output_tokens=500)
    )
    day = NOW.replace(hour=0, minute=0)
    records.append(
        UsageRecord(
            provider="anthropic", source="api", kind="cost_report", account="ws", bucket_start=day,
            bucket_end=day + timedelta(days=1), line_item="Claude Sonnet usage", cost=Decimal("12.3456"),
            currency="USD", basis="billed",
        )
    )  # fmt: skip
    records.append(
        rec(
            2,
            source="proxy",
            kind="proxy",
            model="gpt-4o-mini",
            team="search",
            input_tokens=77,
            output_tokens=7,
            requests=1,
        )
    )
    records.append(
        rec(
            2,
            source="otel",
            kind="otel",
            model="gpt-4o-mini",
            project="checkout",
            input_tokens=55,
            output_tokens=5,
            requests=1,
        )
    )
    records.append(rec(3, model="no-such-model-xyz", input_tokens=9, requests=1))  # unpriced: tokens, no cost
    ingest_records(engine, records)


@pytest.fixture
def seeded(engine):
    seed(engine)
    settings = get_settings()
    conn = add_connection(
        engine, settings, load_vault(settings), provider="openai", label="Prod", key="sk-admin-" + "x" * 40, test=False
    )
    mark_status(engine, conn.id, "ok", last_synced_at=NOW - timedelta(minutes=20))
    with engine.begin() as c:
        c.execute(
            insert(SYNC_STATE).values(
                connection_id=conn.id,
                endpoint="completions",
                high_water=NOW.replace(minute=0) - timedelta(hours=2),
                updated_at=NOW,
            )
        )
    create_budget(engine, name="All LLM", scope="all", period="month", amount=Decimal(5000))
    return engine


def serve(engine, **settings_update):
    settings = get_settings().model_copy(update={"metrics_top_models": 2, "metrics_top_projects": 2, **settings_update})
    collector = SpendCollector(lambda: engine, settings, clock=lambda: NOW)
    return ServerThread(metrics_app(registry_for(collector), settings)).start()


def scrape(url: str, headers=None) -> dict[str, list[tuple[dict, float]]]:
    r = httpx.get(f"{url}/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    out: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[s.name].append((s.labels, s.value))
    return out


def total(samples, **match) -> float:
    return sum(v for labels, v in samples if all(labels.get(k) == val for k, val in match.items()))


def test_every_exported_value_equals_report(seeded):
    server = serve(seeded)
    try:
        m = scrape(server.url)
    finally:
        server.stop()
    assert {labels["part"]: v for labels, v in m["llm_usage_metrics_part_ok"]} == dict.fromkeys(
        ("usage", "budgets", "health", "sources"), 1.0
    )
    for window, (since, until) in windows(NOW).items():
        result = report(seeded, Filters(since, until, sources=SOURCES), by=("provider", "model", "project"))
        # each (section, provider, basis, currency): money and tokens
        expect_cost: dict[tuple, Decimal] = defaultdict(Decimal)
        expect_tokens: dict[tuple, int] = defaultdict(int)
        expect_requests: dict[tuple, int] = defaultdict(int)
        for r in result.rows:
            key = (r.section, r.dims["provider"], r.basis)
            if r.cost is not None:
                expect_cost[(*key, r.currency)] += r.cost
            expect_tokens[key] += r.input_tokens
            expect_requests[key] += r.requests
        got_cost = defaultdict(float)
        for labels, v in m["llm_usage_cost"]:
            if labels["window"] == window:
                got_cost[(labels["section"], labels["provider"], labels["basis"], labels["currency"])] += v
        assert got_cost == {k: pytest.approx(float(v), rel=1e-12) for k, v in expect_cost.items()}
        for (section, provider, basis), n in expect_tokens.items():
            assert (
                total(
                    m["llm_usage_tokens"],
                    window=window,
                    section=section,
                    provider=provider,
                    basis=basis,
                    token_type="input",
                )
                == n
            )
            assert (
                total(m["llm_usage_requests"], window=window, section=section, provider=provider, basis=basis)
                == expect_requests[(section, provider, basis)]
            )
        # the top-2 models by money keep their names, and equal report filtered to that model
        named = {
            labels["model"]
            for labels, _ in m["llm_usage_cost"]
            if labels["window"] == window and labels["provider"] == "openai" and labels["section"] == "provider"
        }
        assert OTHER in named and len(named - {OTHER}) == 2
        for model in named - {OTHER}:
            one = report(seeded, Filters(since, until, providers=("openai",), models=(model,)))
            got = total(m["llm_usage_cost"], window=window, section="provider", provider="openai", model=model)
            assert got == pytest.approx(float(sum(r.cost for r in one.rows if r.cost is not None)), rel=1e-12)
        projects = {
            labels["project"]
            for labels, _ in m["llm_usage_tokens"]
            if labels["window"] == window and labels["provider"] == "openai" and labels["section"] == "provider"
        }
        assert OTHER in projects and len(projects - {OTHER}) <= 2
    # the billed anthropic day is exported as billed, the otel and proxy rows in their own sections
    assert total(m["llm_usage_cost"], window="today", provider="anthropic", basis="billed") == pytest.approx(12.3456)
    assert total(m["llm_usage_tokens"], window="today", section="otel", token_type="input") == 55
    assert total(m["llm_usage_tokens"], window="today", section="proxy", token_type="input") == 77
    assert total(m["llm_usage_tokens"], window="today", basis="unpriced", token_type="input") == 9
    assert not [1 for labels, _ in m["llm_usage_cost"] if labels["basis"] == "unpriced"]
    # budgets equal the budget status
    (st,) = statuses(seeded, NOW)
    assert total(m["llm_usage_budget_spent"], budget="All LLM") == pytest.approx(float(st.spent))
    assert total(m["llm_usage_budget_amount"], budget="All LLM") == 5000
    assert total(m["llm_usage_budget_forecast"], budget="All LLM") == pytest.approx(float(st.forecast.projected))
    # freshness and sync status
    assert total(m["llm_usage_connection_data_age_seconds"], connection="Prod") == pytest.approx(2.5 * 3600)
    assert m["llm_usage_sync_status"] == [({"connection": "Prod", "provider": "openai", "status": "ok"}, 1.0)]
    ages = {(labels["source"], labels["provider"]): v for labels, v in m["llm_usage_source_data_age_seconds"]}
    assert ages[("otel", "openai")] == pytest.approx(3600 + 1800)


def test_bearer_token_and_cache(sqlite_engine):
    seed(sqlite_engine)
    server = serve(sqlite_engine, metrics_bearer_token=SecretStr("scrape-me"), metrics_cache_seconds=3600)
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        auth = {"authorization": "Bearer scrape-me"}
        first = scrape(server.url, auth)
        ingest_records(sqlite_engine, [rec(0, model="gpt-4o", project="new", input_tokens=10**6, requests=1)])
        assert scrape(server.url, auth)["llm_usage_tokens"] == first["llm_usage_tokens"]  # served from the cache
    finally:
        server.stop()


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\bllm_usage_[a-z0-9_]+", expr))


def test_grafana_dashboard_and_alert_rules_use_exported_metrics(seeded):
    server = serve(seeded)
    try:
        text = httpx.get(f"{server.url}/metrics").text
        exported = {f.name for f in text_string_to_metric_families(text)}  # families, even without samples
    finally:
        server.stop()
    dashboard = json.loads((DEPLOY / "grafana" / "llm-usage.json").read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("today", "month to date", "provider", "model", "project", "budget", "freshness"):
        assert wanted in titles
    rules = yaml.safe_load((DEPLOY / "prometheus" / "llm-usage-alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert "LLMUsageDataStale" in alerts
    exprs += [r["expr"] for r in alerts.values()]
    used = set().union(*(_names(e) for e in exprs))
    assert used and used <= exported, used - exported
