"""``usage_daily_slim``: daily reports from the slim rollup equal the same reports from ``usage_daily``.

The slim rollup drops project, key, user, team, tier and line item, and is rebuilt lazily from
``usage_daily`` (a write marks its days; the next daily read of them rebuilds). The tests check
the figures against the ``usage_daily`` path on the report seed (daily and hourly buckets,
billed and estimated money, two currencies, level units, side sources, value filters, currency
conversion), the choice of table, the marks, and the two ways the slim table is passed over:
another writer's lock and a day whose narrower sum SQLite cannot hold.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

import collector.query.report as query_module
from collector.core.rollups import SLIM, RollupUnavailable, refresh
from collector.core.schema import UsageRecord
from collector.core.store import SLIM_DIRTY, USAGE_DAILY, USAGE_DAILY_SLIM, upsert_records
from collector.db.migrate import open_database
from collector.query.report import Filters, report
from tests.query.report_seed import DAY, START, actual, seed_records

FULL = Filters(since=START, until=START + 6 * DAY)
CASES = [
    # (by, grain, basis, value filters)
    (("provider", "model"), "day", "preferred", {}),
    (("provider",), "week", "billed", {}),
    (("model",), "month", "estimated", {}),
    (("account", "source", "kind"), None, "preferred", {}),
    ((), "day", "preferred", {"models": ("gpt-4o",)}),
    (("provider",), "day", "preferred", {"sources": ("api", "csv", "proxy", "otel")}),
    (("provider", "account"), None, "billed", {"providers": ("openai",), "accounts": ("org-a",)}),
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    upsert_records(engine, seed_records())
    return engine


def _daily_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_module, "_daily_table", lambda *_args: USAGE_DAILY)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    chosen: list[str] = []
    real = query_module._daily_table

    def spy(*args):
        table = real(*args)
        chosen.append(table.name)
        return table

    monkeypatch.setattr(query_module, "_daily_table", spy)
    return chosen


def test_daily_reports_from_the_slim_rollup_equal_usage_daily(seeded, monkeypatch):
    chosen = _spy(monkeypatch)
    for by, grain, basis, values in CASES:
        f = Filters(FULL.since, FULL.until, **values)
        from_slim = report(seeded, f, by=by, grain=grain, basis=basis)
        with monkeypatch.context() as mp:
            _daily_only(mp)
            from_daily = report(seeded, f, by=by, grain=grain, basis=basis)
        case = (by, grain, basis, values)
        assert actual(from_slim) == actual(from_daily), case
        assert from_slim.notes == from_daily.notes, case
        assert from_slim.rows, case
    assert set(chosen) == {"usage_daily_slim"}
    with seeded.connect() as conn:
        slim = conn.execute(select(func.count()).select_from(USAGE_DAILY_SLIM)).scalar_one()
        daily = conn.execute(select(func.count()).select_from(USAGE_DAILY)).scalar_one()
    assert 0 < slim < daily


def test_a_converted_report_from_the_slim_rollup_equals_usage_daily(seeded, monkeypatch):
    def converter(amount: Decimal, currency: str, to: str, day):
        return (amount * Decimal("0.5"), "test rate") if currency != to and day.day % 2 else None

    def run() -> tuple[object, object, object]:
        res = report(seeded, FULL, by=("provider",), grain="day", currency="EUR", converter=converter)
        return actual(res), res.notes, res.missing_rates

    from_slim = run()
    with monkeypatch.context() as mp:
        _daily_only(mp)
        assert run() == from_slim


def test_only_the_dimensions_the_slim_rollup_keeps_read_it(seeded, monkeypatch):
    chosen = _spy(monkeypatch)
    report(seeded, FULL, by=("provider", "model"), grain="day")
    report(seeded, FULL, by=("project",), grain="day")
    report(seeded, Filters(FULL.since, FULL.until, users=("u1",)), by=("provider",))
    report(seeded, Filters(FULL.since, FULL.until, models=("gpt-4o",)), by=("kind",), grain="month")
    assert chosen == ["usage_daily_slim", "usage_daily", "usage_daily", "usage_daily_slim"]


def _marks(engine: Engine) -> list[datetime]:
    with engine.connect() as conn:
        days = conn.execute(select(SLIM_DIRTY.c.day)).scalars().all()
    return [d for d in days if FULL.since <= d < FULL.until]


def test_a_write_is_read_by_the_next_report_and_clears_its_mark(seeded):
    def total(engine: Engine) -> Decimal:
        rows = report(engine, FULL, by=("provider",), basis="estimated").rows
        return sum((r.cost for r in rows if r.cost is not None and r.section == "provider"), Decimal(0))

    before = total(seeded)
    assert _marks(seeded) == []
    rec = next(
        r
        for r in seed_records()
        if r.basis == "estimated" and r.source == "api" and r.cost and FULL.since <= r.bucket_start < FULL.until
    )
    upsert_records(seeded, [replace(rec, cost=rec.cost + Decimal("1.25"))])
    assert _marks(seeded) == [rec.bucket_start.replace(hour=0, minute=0)]
    assert total(seeded) == before + Decimal("1.25")
    assert _marks(seeded) == []


def test_behind_another_writer_a_report_reads_usage_daily_at_once(sqlite_url, monkeypatch):
    """SQLite has one writer: with an import's transaction open, the rebuild is skipped, not awaited."""
    engine = open_database(url=sqlite_url)
    try:
        upsert_records(engine, seed_records())
        expected = actual(report(engine, FULL, by=("provider", "model"), grain="day"))
        with engine.begin() as conn:  # the first day emptied and marked, as a write would leave it
            conn.execute(USAGE_DAILY_SLIM.delete().where(USAGE_DAILY_SLIM.c.day == START))
            conn.execute(SLIM_DIRTY.insert().values(day=START, seq=1))
        chosen = _spy(monkeypatch)
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
        holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        try:
            with pytest.raises(RollupUnavailable):
                refresh(engine, SLIM, FULL.since, FULL.until, wait=False)
            got = actual(report(engine, FULL, by=("provider", "model"), grain="day"))
        finally:
            holder.rollback()
            holder.close()
        assert got == expected
        assert chosen == ["usage_daily"]
        assert _marks(engine) == [START]  # still to do
        assert actual(report(engine, FULL, by=("provider", "model"), grain="day")) == expected
        assert chosen == ["usage_daily", "usage_daily_slim"]
    finally:
        engine.dispose()


def test_a_day_too_large_for_one_slim_row_is_read_from_usage_daily(sqlite_url, monkeypatch):
    """Two projects' costs each fit a daily row; their sum in one slim row would pass SQLite's 2**63.

    The slim rebuild fails for that day (and leaves it marked); the report reads ``usage_daily``,
    whose two-halves sum is exact, so the total is still right to the cent.
    """
    engine = open_database(url=sqlite_url)
    big = Decimal("600000000")  # 6e8 at 10 decimal places is 6e18; two of them pass 2**63 (9.2e18)
    common = {
        "bucket_start": START,
        "bucket_end": START + timedelta(hours=1),
        "provider": "openai",
        "account": "org-a",
        "source": "api",
        "kind": "completions",
        "model": "gpt-4o",
        "basis": "estimated",
        "currency": "USD",
        "cost": big,
    }
    try:
        upsert_records(engine, [UsageRecord(project="p1", **common), UsageRecord(project="p2", **common)])
        chosen = _spy(monkeypatch)
        res = report(engine, FULL, by=("provider",), basis="estimated")
        assert [r.cost for r in res.rows] == [2 * big]
        assert chosen == ["usage_daily"]
        assert _marks(engine) == [START]
    finally:
        engine.dispose()


def test_the_migration_marks_every_existing_day(sqlite_url):
    engine = open_database(url=sqlite_url)
    try:
        upsert_records(engine, seed_records())
        from alembic import command

        from collector.db.migrate import alembic_config, head_revision

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0018")
            command.upgrade(cfg, head_revision() or "head")
        with engine.connect() as conn:
            days = conn.execute(select(SLIM_DIRTY.c.day)).scalars().all()
        first = min(r.bucket_start for r in seed_records()).replace(hour=0, minute=0)
        assert days and min(days) == first
        assert refresh(engine, SLIM, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == len(days)
    finally:
        engine.dispose()
