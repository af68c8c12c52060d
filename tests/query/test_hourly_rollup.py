"""``usage_hourly``: hourly reports from the rollup equal the same reports from raw rows, and stay current.

The rollup is rebuilt lazily (a write marks its days; the next hourly read of them rebuilds), so
the tests check both halves: the figures (against the raw-row path on the seed that mixes daily
and hourly buckets, billed and estimated money, two currencies, level units and side sources),
and the marks (a write is seen by the next read; a write racing a rebuild leaves its day marked).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

import collector.query.report as query_module
from collector.core.rollups import RollupUnavailable, refresh_hourly
from collector.core.store import HOURLY_DIRTY, USAGE, USAGE_HOURLY, upsert_records
from collector.db.migrate import open_database
from collector.query.report import Filters, report
from tests.query.report_seed import DAY, START, actual, seed_records

FULL = Filters(since=START, until=START + 6 * DAY)
CASES = [
    # (by, grain, tz, window, basis, value filters)
    (("provider",), "hour", "UTC", FULL, "preferred", {}),
    (("model",), "hour", "UTC", FULL, "billed", {}),
    (("provider", "account"), "day", "Asia/Seoul", FULL, "preferred", {}),
    ((), "hour", "UTC", Filters(START + timedelta(hours=10), START + 2 * DAY + timedelta(hours=5)), "estimated", {}),
    (("source", "kind"), None, "UTC", Filters(START + timedelta(hours=3), START + 3 * DAY), "preferred", {}),
    (("provider",), "hour", "America/New_York", FULL, "preferred", {"models": ("gpt-4o",)}),
    (("account",), "hour", "UTC", FULL, "preferred", {"sources": ("api", "csv", "proxy")}),
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    upsert_records(engine, seed_records())
    return engine


def _raw_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_module, "_hourly_table", lambda *_args: USAGE)


def test_hourly_reports_from_the_rollup_equal_the_raw_rows(seeded, monkeypatch):
    for by, grain, tz, window, basis, values in CASES:
        f = Filters(window.since, window.until, **values)
        from_rollup = report(seeded, f, by=by, grain=grain, tz=tz, basis=basis)
        with monkeypatch.context() as mp:
            _raw_only(mp)
            from_raw = report(seeded, f, by=by, grain=grain, tz=tz, basis=basis)
        case = (by, grain, tz, basis, values)
        assert actual(from_rollup) == actual(from_raw), case
        assert from_rollup.notes == from_raw.notes, case
        assert from_rollup.rows, case
    with seeded.connect() as conn:
        assert conn.execute(select(func.count()).select_from(USAGE_HOURLY)).scalar_one() > 0


def test_only_the_dimensions_the_rollup_keeps_read_it(seeded, monkeypatch):
    chosen: list[str] = []
    real = query_module._hourly_table

    def spy(*args):
        table = real(*args)
        chosen.append(table.name)
        return table

    monkeypatch.setattr(query_module, "_hourly_table", spy)
    report(seeded, FULL, by=("model",), grain="hour")
    report(seeded, FULL, by=("project",), grain="hour")
    report(seeded, Filters(FULL.since, FULL.until, teams=("search",)), by=("provider",), grain="hour")
    report(seeded, Filters(START + timedelta(minutes=30), FULL.until), by=("provider",), grain="hour")
    assert chosen == ["usage_hourly", "usage", "usage", "usage"]


def test_a_write_is_read_by_the_next_hourly_report_and_clears_its_mark(seeded):
    def hour_total(engine: Engine) -> Decimal:
        rows = report(engine, FULL, by=("provider",), grain="hour", basis="estimated").rows
        return sum((r.cost for r in rows if r.cost is not None and r.section == "provider"), Decimal(0))

    def marks_in_window() -> list[datetime]:
        with seeded.connect() as conn:
            days = conn.execute(select(HOURLY_DIRTY.c.day)).scalars().all()
        return [d for d in days if FULL.since <= d < FULL.until]  # seed rows outside it stay marked

    before = hour_total(seeded)
    assert marks_in_window() == []
    # One estimated seed row re-written with 1.25 more: the next report must show it.
    rec = next(
        r
        for r in seed_records()
        if r.basis == "estimated" and r.source == "api" and r.cost and FULL.since <= r.bucket_start < FULL.until
    )
    bumped = replace(rec, cost=rec.cost + Decimal("1.25"))
    upsert_records(seeded, [bumped])
    assert marks_in_window() == [rec.bucket_start.replace(hour=0, minute=0)]
    assert hour_total(seeded) == before + Decimal("1.25")
    assert marks_in_window() == []


def test_a_write_during_a_rebuild_keeps_its_day_marked(pg_url):
    """PostgreSQL only: a second writer commits while the rebuild runs (SQLite has one writer)."""
    engine, writer = open_database(url=pg_url), open_database(url=pg_url)
    try:
        recs = seed_records()
        upsert_records(engine, recs)
        target = next(
            r
            for r in recs
            if r.basis == "estimated" and r.source == "api" and r.cost and FULL.since <= r.bucket_start < FULL.until
        )
        day = target.bucket_start.replace(hour=0, minute=0)
        changed = replace(target, cost=target.cost + Decimal(2))
        fired: list[bool] = []

        def mid_rebuild(conn, cursor, statement, *_rest):
            if statement.startswith("INSERT INTO usage_hourly") and not fired:
                fired.append(True)
                upsert_records(writer, [changed])  # commits, bumping the day's mark

        event.listen(engine, "after_cursor_execute", mid_rebuild)
        try:
            refresh_hourly(engine, FULL.since, FULL.until)
        finally:
            event.remove(engine, "after_cursor_execute", mid_rebuild)
        assert fired
        with engine.connect() as conn:
            marked = conn.execute(select(HOURLY_DIRTY.c.day)).scalars().all()
        assert [d for d in marked if FULL.since <= d < FULL.until] == [day]
        assert refresh_hourly(engine, FULL.since, FULL.until) == 1
        with engine.connect() as conn:
            hourly = conn.execute(
                select(func.sum(USAGE_HOURLY.c.cost)).where(USAGE_HOURLY.c.hour >= day, USAGE_HOURLY.c.hour < day + DAY)
            ).scalar_one()
            raw = conn.execute(
                select(func.sum(USAGE.c.cost)).where(USAGE.c.bucket_start >= day, USAGE.c.bucket_start < day + DAY)
            ).scalar_one()
        assert hourly == raw
    finally:
        engine.dispose()
        writer.dispose()


def test_the_migration_marks_every_existing_day(sqlite_url):
    engine = open_database(url=sqlite_url)
    try:
        upsert_records(engine, seed_records())
        with engine.begin() as conn:
            conn.execute(USAGE_HOURLY.delete())
            conn.execute(HOURLY_DIRTY.delete())
        # What 0018 does on a database that already has usage: every day of usage_daily starts marked.
        from alembic import command

        from collector.db.migrate import alembic_config

        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0017")
            command.upgrade(cfg, "0018")
        with engine.connect() as conn:
            days = conn.execute(select(HOURLY_DIRTY.c.day)).scalars().all()
        first = min(r.bucket_start for r in seed_records()).replace(hour=0, minute=0)
        assert days and min(days) == first and all(d.tzinfo is UTC or d.utcoffset() == timedelta(0) for d in days)
        assert refresh_hourly(engine, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == len(days)
    finally:
        engine.dispose()


def test_behind_a_long_import_an_hourly_report_reads_the_raw_rows_at_once(sqlite_url):
    """SQLite has one writer: with an import's transaction open, the rebuild is skipped, not awaited."""
    import sqlite3
    import time

    engine = open_database(url=sqlite_url)
    try:
        upsert_records(engine, seed_records())
        expected = actual(report(engine, FULL, by=("provider",), grain="hour"))
        with engine.begin() as conn:  # mark the window again, as a write would
            conn.execute(HOURLY_DIRTY.delete())
            conn.execute(USAGE_HOURLY.delete())
        upsert_records(engine, seed_records()[:1])  # unchanged: no mark; mark by hand below
        with engine.begin() as conn:
            conn.execute(HOURLY_DIRTY.insert().values(day=START, seq=1))
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
        holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
        try:
            started = time.monotonic()
            with pytest.raises(RollupUnavailable):
                refresh_hourly(engine, FULL.since, FULL.until, wait=False)
            got = actual(report(engine, FULL, by=("provider",), grain="hour"))
            assert time.monotonic() - started < 20  # generous: not the 30 s busy timeout twice
        finally:
            holder.rollback()
            holder.close()
        assert got == expected
        with engine.connect() as conn:
            assert conn.execute(select(HOURLY_DIRTY.c.day)).scalars().all() == [START]  # still to do
        assert refresh_hourly(engine, FULL.since, FULL.until, wait=False) == 1
    finally:
        engine.dispose()
