"""Anomalies: 20 spikes injected into generator data, found through the database; drivers named."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from collector.core.schema import UsageRecord
from collector.core.store import upsert_records
from collector.demo.synthetic import MODELS, GeneratorConfig, generate
from collector.finance.anomaly import AnomalyError, Params, detect, find_anomalies
from collector.query.report import Filters, report

D = Decimal
DAY = timedelta(days=1)


def spike_record(provider: str, day: datetime, amount: Decimal, project: str = "proj_spike") -> UsageRecord:
    """A spike in the provider's own source and basis (billing CSVs are billed, APIs estimated)."""
    _, model, source, kind = next(m for m in MODELS if m[0] == provider)
    return UsageRecord(
        provider=provider,
        source=source,
        kind=kind,
        bucket_start=day + timedelta(hours=13),
        bucket_end=day + timedelta(hours=14),
        account="demo",
        project=project,
        api_key_id="key_spike",
        model=model,
        input_tokens=1_000_000,
        requests=100,
        cost=amount,
        currency="USD",
        basis="billed" if source == "csv" else "estimated",
        price_version="" if source == "csv" else "test",
    )


def test_twenty_injected_spikes_recall_and_false_alarms(sqlite_engine, capsys):
    cfg = GeneratorConfig(days=120, rows_per_hour=20, seed=42)
    upsert_records(sqlite_engine, generate(cfg))
    since = cfg.start + DAY * 28  # a full baseline window before the first scored day
    base = report(sqlite_engine, Filters(cfg.start, cfg.end), by=("provider",), grain="day")
    daily: dict[tuple[str, datetime], Decimal] = Counter()
    for row in base.rows:
        if row.cost is not None:
            daily[(row.dims["provider"], row.period)] += row.cost
    providers = sorted({p for p, _ in daily})
    rng = random.Random(7)
    days = [since + DAY * i for i in range((cfg.end - since).days)]
    spikes: set[tuple[str, datetime]] = set()
    while len(spikes) < 20:
        spikes.add((rng.choice(providers), rng.choice(days)))
    extra = []
    for provider, day in sorted(spikes):
        usual = sorted(daily[(provider, day - DAY * 7 * k)] for k in range(1, 5))[1]
        extra.append(spike_record(provider, day, (usual * D(str(rng.uniform(2.0, 4.0)))).quantize(D("0.01"))))
    upsert_records(sqlite_engine, extra)

    params = Params(threshold=D(6), min_ratio=D("0.5"), min_amount=D(1))
    found = find_anomalies(
        sqlite_engine, since=since, until=cfg.end, scopes=("provider",), params=params, with_drivers=False
    )
    flagged = {(a.scope_value, a.at) for a in found}
    hits = spikes & flagged
    false_alarms = Counter(p for p, _ in flagged - spikes)
    scored_days = (cfg.end - since).days
    worst = max(false_alarms.values(), default=0) / scored_days * 30
    overall = sum(false_alarms.values()) / len(providers) / scored_days * 30
    with capsys.disabled():
        print(
            f"\nanomaly detection: recall {len(hits)}/20 = {len(hits) / 20:.0%}; "
            f"false alarms {sum(false_alarms.values())} "
            f"over {len(providers)} provider scopes x {scored_days} days = {overall:.2f} per 30 days per scope "
            f"(worst scope {worst:.2f}: {dict(false_alarms)})"
        )
    assert len(hits) >= 18
    assert worst <= 1.0


def test_driver_names_the_model_project_and_key_behind_a_spike(engine):
    start = datetime(2026, 9, 1, tzinfo=UTC)
    records = []
    for i in range(42):
        day = start + DAY * i
        for project, model, key in (("proj_a", "gpt-4o", "key_a"), ("proj_b", "gpt-4o-mini", "key_b")):
            records.append(
                UsageRecord(
                    provider="openai",
                    source="api",
                    kind="completions",
                    bucket_start=day + timedelta(hours=9),
                    bucket_end=day + timedelta(hours=10),
                    account="org",
                    project=project,
                    api_key_id=key,
                    model=model,
                    input_tokens=100,
                    requests=1,
                    cost=D(10) + D(i % 3),
                    currency="USD",
                    basis="estimated",
                    price_version="t",
                )
            )
    spike_day = start + DAY * 40
    records.append(
        UsageRecord(
            provider="openai",
            source="api",
            kind="completions",
            bucket_start=spike_day + timedelta(hours=15),
            bucket_end=spike_day + timedelta(hours=16),
            account="org",
            project="proj_b",
            api_key_id="key_leaky",
            model="o3",
            input_tokens=100,
            requests=1,
            cost=D(200),
            currency="USD",
            basis="estimated",
            price_version="t",
        )
    )
    upsert_records(engine, records)
    found = find_anomalies(engine, since=start + DAY * 35, until=start + DAY * 42, scopes=("all", "provider"))
    assert {(a.scope, a.at) for a in found} == {("all", spike_day), ("provider", spike_day)}
    top = next(a for a in found if a.scope == "provider")
    assert top.amount > 3 * top.expected
    drivers = {d.dimension: d for d in top.drivers}
    assert drivers["model"].value == "o3" and drivers["model"].increase == D(200)
    assert drivers["project"].value == "proj_b"
    assert drivers["api_key"].value == "key_leaky"
    assert "driven by model=o3" in top.describe()


def test_hourly_grain_uses_hour_of_day_seasons():
    start = datetime(2026, 10, 1, tzinfo=UTC)
    points = {}
    for h in range(24 * 21):
        ts = start + timedelta(hours=h)
        points[ts] = D(50) if 9 <= ts.hour < 18 else D(5)
    spike = start + timedelta(days=20, hours=3)  # 03:00: usually quiet
    points[spike] = D(40)
    found = detect(points, Params(grain="hour", window=24 * 14), since=start + timedelta(days=15))
    assert [s.at for s in found] == [spike]


@pytest.mark.parametrize("kwargs", [{"grain": "week"}, {"window": 3}, {"threshold": D(0)}, {"min_amount": D(-1)}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(AnomalyError):
        Params(**kwargs)


def test_hourly_anomalies_through_the_database_and_the_cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from collector.app import app
    from collector.db.migrate import open_database

    url = f"sqlite:///{tmp_path / 'hours.db'}"
    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", url)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    records = []
    for h in range(24 * 16):
        ts = start + timedelta(hours=h)
        busy = 9 <= ts.hour < 18
        spike = ts == start + timedelta(days=15, hours=3)
        records.append(
            UsageRecord(
                provider="anthropic",
                source="api",
                kind="messages",
                bucket_start=ts,
                bucket_end=ts + timedelta(hours=1),
                account="org",
                project="proj_night" if spike else "proj_day",
                model="claude-opus-4-1-20250805" if spike else "claude-haiku-4-5-20251001",
                input_tokens=10,
                requests=1,
                cost=D(60) if spike else (D(20) + D(h % 5) if busy else D(2) + D(h % 3) / 10),
                currency="USD",
                basis="estimated",
                price_version="t",
            )
        )
    upsert_records(open_database(url=url), records)
    result = CliRunner().invoke(
        app, ["anomalies", "--grain", "hour", "--since", "2026-10-15", "--until", "2026-10-16", "--scope", "provider"]
    )
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "provider=anthropic spent 60.00 USD on 2026-10-16 03:00Z" in lines[0]
    assert "model=claude-opus-4-1-20250805" in lines[0] and "project=proj_night" in lines[0]
    bad = CliRunner().invoke(app, ["anomalies", "--grain", "week"])
    assert bad.exit_code == 2 and "--grain" in bad.output  # a bad argument: exit 2, as every command


def test_a_scope_that_starts_mid_window_gets_one_new_spend_notice_not_daily_anomalies(engine, tmp_path):
    """A new project spending from day 40 of 50: nothing to compare with, so one notice, no anomalies."""
    from collector.core.settings import Settings
    from collector.finance import budgets
    from collector.finance.anomaly import new_spend

    start = datetime(2026, 9, 1, tzinfo=UTC)
    steady = [spike_record("openai", start + DAY * i, D("10"), project="proj_old") for i in range(50)]
    new = [spike_record("openai", start + DAY * i, D("40") + i, project="proj_new") for i in range(40, 50)]
    upsert_records(engine, [*steady, *new])
    params = Params(threshold=D(6), min_ratio=D("0.5"), min_amount=D(1))
    since, until = start + DAY * 30, start + DAY * 50
    found = find_anomalies(engine, since=since, until=until, scopes=("project", "all"), params=params)
    assert [a for a in found if a.scope_value == "proj_new"] == []  # never "expected 0.00, z 3000"
    notices = new_spend(engine, since=since, until=until, scopes=("project",), params=params)
    assert [(n.scope_value, n.at, n.amount) for n in notices] == [("proj_new", start + DAY * 40, D("80"))]
    assert "new spend: project=proj_new first spent 80.00 USD" in notices[0].describe()
    # The dashboard's one-read scan gives the same anomalies (drivers apart) and the same notices.
    from collector.finance.anomaly import scan

    window = {"since": since, "until": until, "scopes": ("project", "all"), "params": params}
    both = scan(engine, **window)
    plain = find_anomalies(engine, **window, with_drivers=False)
    assert both == (plain, notices)
    # The first days of any history are no anomalies either (no scope has a window before them).
    assert find_anomalies(engine, since=start, until=start + DAY * 5, scopes=("all",), params=params) == []
    # Evaluated the day after its first spend, it is alerted once, and never again.
    settings = Settings(data_dir=tmp_path, anomaly_scopes="project")  # no channel: alerts are recorded
    first = budgets.evaluate(engine, settings, start + DAY * 41 + timedelta(hours=1))
    assert "new:project=proj_new:USD" in first.due
    later = budgets.evaluate(engine, settings, start + DAY * 45 + timedelta(hours=1))
    assert not [k for k in later.due if k.startswith("new:") or "proj_new" in k]


def test_anomalies_and_their_alerts_are_told_in_the_display_currency(engine, tmp_path):
    """With LLM_USAGE_DISPLAY_CURRENCY=EUR each day is converted at its rate before it is scored."""
    from collector.core.settings import Settings
    from collector.finance import budgets, fx
    from collector.finance.anomaly import Money

    start = datetime(2026, 9, 1, tzinfo=UTC)
    spike_day = start + DAY * 40
    daily = [spike_record("openai", start + DAY * i, D("10") + i % 3) for i in range(42)]
    upsert_records(engine, [*daily, spike_record("openai", spike_day, D("200"), project="proj_leak")])
    fx.set_rate(engine, start.date(), "USD", "EUR", D("0.5"))
    money = Money("EUR", fx.RateBook.load(engine).day_rate)
    found = find_anomalies(engine, since=start + DAY * 35, until=start + DAY * 42, scopes=("all",), money=money)
    assert [(a.at, a.currency, a.amount) for a in found] == [(spike_day, "EUR", (D("200") + 10 + 40 % 3) / 2)]
    drivers = {d.dimension: d for d in found[0].drivers}
    assert drivers["project"].value == "proj_leak" and drivers["project"].increase == D("100")  # in EUR too
    assert "EUR on 2026-10-11" in found[0].describe()

    settings = Settings(data_dir=tmp_path, anomaly_scopes="all", display_currency="EUR")
    evaluated = budgets.evaluate(engine, settings, spike_day + DAY + timedelta(hours=1))
    assert "anomaly:all:EUR:2026-10-11" in evaluated.due
