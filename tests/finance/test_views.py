"""Kept figures: computed once per data version, shared across processes, rebuilt only as named types."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from collector.core import figures
from collector.core.figures import FIGURES, CodecError
from collector.core.settings import Settings
from collector.core.store import data_version, upsert_records
from collector.db.migrate import open_database
from collector.finance import budgets, views
from collector.query import billing
from tests.finance.test_budgets import NOW, usage

D = Decimal
DAY = datetime(2026, 11, 10, tzinfo=UTC)


def _seed(engine) -> int:
    upsert_records(engine, [usage(d, "2.50") for d in range(1, 10)])
    return budgets.create_budget(engine, name="all", scope="all", amount="100")


def test_the_codec_gives_back_equal_values_of_every_kept_type():
    status = budgets.BudgetStatus(
        budget=budgets.forecast_probe("all", "", "EUR"),
        period_start=DAY,
        period_end=DAY + timedelta(days=30),
        spent=D("12.3400000001"),
        forecast=budgets.Forecast(
            date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 10), D(1), D(2), D("0.5"), D(3), 0.8, "m", 9, 21
        ),
        notes=["a"],
        shown=None,
    )
    value = {
        ("k", 1): [status, (D("-0"), frozenset({"x", "y"})), {"nested": datetime(2026, 1, 1, 5, tzinfo=UTC)}],
        "nan": float("nan"),
        "plain": [None, True, 3, "s"],
    }
    back = figures.decode(json.loads(json.dumps(figures.encode(value))), views.TYPES)
    assert math.isnan(back.pop("nan"))
    value.pop("nan")
    assert back == value
    assert isinstance(back[("k", 1)][0].forecast, budgets.Forecast)
    assert back[("k", 1)][0].percent == status.percent  # properties work on the rebuilt object


def test_a_payload_naming_another_type_is_refused_not_imported():
    payload = {"$c": "os:system", "f": {"command": "touch /tmp/pwned"}}
    with pytest.raises(CodecError, match="may not build"):
        figures.decode(payload, views.TYPES)
    with pytest.raises(CodecError, match="naive"):
        figures.encode(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(CodecError, match="cannot keep"):
        figures.encode(object())


def test_the_key_is_the_same_in_another_process():
    args = (DAY, "EUR", D("1.5"), ("a", "b"))
    mine = figures.digest(args)
    code = (
        "from datetime import UTC, datetime; from decimal import Decimal as D; from collector.core import figures;"
        "print(figures.digest((datetime(2026, 11, 10, tzinfo=UTC), 'EUR', D('1.5'), ('a', 'b'))))"
    )
    theirs = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert theirs == mine


def test_a_figure_is_computed_once_per_data_version_for_every_process(db_url):
    first, second = open_database(url=db_url), open_database(url=db_url)  # two "processes"
    try:
        budget = budgets.get_budget(first, _seed(first))
        calls: list[int] = []
        real = budgets.budget_status

        def counted(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(budgets, "budget_status", counted)
            version = data_version(first)
            a = views.budget_view(first, version, budget, NOW, "", "r")
            b = views.budget_view(second, version, budget, NOW, "", "r")
            assert len(calls) == 1 and a == b and a is not None and a.spent == D("22.50")

            upsert_records(second, [usage(9, "7.50")])  # re-bills day 9: 2.50 -> 7.50
            newer = data_version(first)
            assert newer > version
            c = views.budget_view(first, newer, budget, NOW, "", "r")
            assert len(calls) == 2 and c is not None and c.spent == D("27.50")
            with first.connect() as conn:
                kept = conn.execute(select(FIGURES.c.version)).scalars().all()
            assert kept == [newer]  # the older generation is gone

            changed = budgets.update_budget(first, budget.id, amount="50")
            views.budget_view(first, newer, changed, NOW, "", "r")  # a new definition is a new key
            assert len(calls) == 3
    finally:
        first.dispose()
        second.dispose()


def test_a_tampered_or_unreadable_row_is_computed_again(sqlite_engine):
    budget = budgets.get_budget(sqlite_engine, _seed(sqlite_engine))
    version = data_version(sqlite_engine)
    good = views.budget_view(sqlite_engine, version, budget, NOW, "", "r")
    evil = json.dumps({"$c": "subprocess:Popen", "f": {"args": ["true"]}})
    with sqlite_engine.begin() as conn:
        conn.execute(update(FIGURES).values(payload=evil))
    assert views.budget_view(sqlite_engine, version, budget, NOW, "", "r") == good
    with sqlite_engine.connect() as conn:
        assert "subprocess" not in conn.execute(select(FIGURES.c.payload)).scalar_one()


def test_a_billing_preference_changes_the_data_version(sqlite_engine):
    before = data_version(sqlite_engine)
    billing.set_preference(sqlite_engine, "openai", "org", billing.BillingSource("csv", "focus"))
    assert data_version(sqlite_engine) == before + 1
    assert billing.clear_preference(sqlite_engine, "openai", "org")
    assert data_version(sqlite_engine) == before + 2
    assert not billing.clear_preference(sqlite_engine, "openai", "org")
    assert data_version(sqlite_engine) == before + 2


def test_every_budgets_figure_reads_back_equal(db_url):
    engine = open_database(url=db_url)
    try:
        _seed(engine)
        version = data_version(engine)
        settings = Settings()
        month = date(2026, 11, 1)

        def every_figure() -> tuple:
            return (
                views.forecast_rows(engine, version, DAY, "USD", "r"),
                views.anomaly_scan(engine, version, settings, DAY - timedelta(days=30), DAY, "r"),
                views.chargeback_month(engine, version, month, 0, "", "r"),
                views.scope_status(engine, version, "provider", "openai", DAY, "USD", "r"),
                views.reconciliation(engine, version, DAY - timedelta(days=10), DAY, D("0.01")),
            )

        computed = every_figure()
        with pytest.MonkeyPatch.context() as mp:  # from here on, only the kept rows can answer
            mp.setattr(budgets, "budget_status", _never)
            mp.setattr(budgets, "provider_forecasts", _never)
            mp.setattr(views, "scan", _never)
            mp.setattr(views.chargeback, "monthly_chargeback", _never)
            mp.setattr(views, "reconcile", _never)
            kept = every_figure()
        assert kept == computed
        spent, forecast, _notes = budgets.scope_forecast(engine, "provider", "openai", now=DAY + timedelta(hours=13))
        assert (computed[3].spent, computed[3].forecast) == (spent, forecast)  # the day's status is the minute's
        assert computed[0][0][1].spent == D("22.50")
        assert computed[2].totals == {"USD": D("22.50")}
        assert sum((d.estimated or 0 for d in computed[4].days), D(0)) == D("22.50")
        assert computed[4].largest_gaps(3) == kept[4].largest_gaps(3)  # methods work on the rebuilt object
    finally:
        engine.dispose()


def _never(*_args, **_kwargs):
    raise AssertionError("computed again although a kept figure was there")


def test_behind_another_writer_a_figure_is_computed_and_not_kept(sqlite_url):
    import sqlite3
    import time

    engine = open_database(url=sqlite_url)
    try:
        budget = budgets.get_budget(engine, _seed(engine))
        version = data_version(engine)
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
        holder.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            status = views.budget_view(engine, version, budget, NOW, "", "r")
            assert time.monotonic() - started < 20  # generous: not the engine's 30 s busy timeout
        finally:
            holder.rollback()
            holder.close()
        assert status is not None and status.spent == D("22.50")
        with engine.connect() as conn:
            assert conn.execute(select(FIGURES.c.name)).all() == []
        views.budget_view(engine, version, budget, NOW, "", "r")
        with engine.connect() as conn:
            assert conn.execute(select(FIGURES.c.name)).scalars().all() == ["budget"]
    finally:
        engine.dispose()


def test_a_kept_report_reads_back_equal_named_tuples_and_all(engine, monkeypatch):
    from collector.query import report as report_module
    from tests.query.report_seed import WINDOW, seed_records

    upsert_records(engine, seed_records())
    billing.set_preference(engine, "openai", "org-a", billing.BillingSource("csv", "focus"))
    version = data_version(engine)
    options = {"by": ("provider", "account"), "grain": "day", "basis": "preferred", "top": None}
    computed = views.kept_report(engine, version, WINDOW, options, "", "")
    assert computed == report_module.report(engine, WINDOW, by=("provider", "account"), grain="day")
    monkeypatch.setattr(views, "report", _never)
    kept = views.kept_report(engine, version, WINDOW, options, "", "")
    assert kept == computed
    assert kept.totals() == computed.totals()
    assert kept.overlaps and all(isinstance(o.counted, billing.BillingSource) for o in kept.overlaps)
    assert [o.describe() for o in kept.overlaps] == [o.describe() for o in computed.overlaps]
