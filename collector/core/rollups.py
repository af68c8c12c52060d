"""Rollups rebuilt on read: ``usage_hourly`` and ``usage_daily_slim``.

``usage_daily`` is rebuilt inside every write's transaction, because every daily read needs it.
These two serve narrower reads (hourly charts; reports grouped only by provider, model and the
money rule's keys), so a write only marks its days (``store._mark_lazy``: one small upsert per
day and table) and the first read of a marked day rebuilds it. Ingest pays no second or third
aggregation, and a day nobody reads is never aggregated again.

One rule serves both (:func:`refresh`): the marks are read again under a lock (PostgreSQL: an
advisory lock; SQLite: the write lock a first write statement takes), so two readers never
rebuild the same day twice; a mark is deleted only with the ``seq`` the rebuild saw, so a write
that lands meanwhile keeps its day marked; and a reader that must not wait (``wait=False``)
gets :class:`RollupUnavailable` at once and reads the wider table instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from collector.core.schema import HOURLY_DIMENSIONS, ROLLUP_MEASURES
from collector.core.sqltypes import UTCDateTime
from collector.core.store import (
    DAY_SECONDS,
    HOURLY_DIRTY,
    SLIM_DIRTY,
    USAGE_DAILY_SLIM,
    USAGE_HOURLY,
    _day_ranges,
    short_wait,
)


class RollupUnavailable(RuntimeError):
    """A lazy rollup could not be brought up to date now; the caller reads the wider table.

    Either another writer holds SQLite's write lock (``wait=False``), or a day's sum in the
    narrower grouping exceeds what SQLite's 64-bit money column holds exactly.
    """


def _hourly_sql(dialect_name: str) -> tuple[str, str]:
    """The DELETE and INSERT ... SELECT that rebuild ``usage_hourly`` for ``[d0, d1)`` from ``usage``."""
    dims = ", ".join(HOURLY_DIMENSIONS)
    measures = ", ".join(ROLLUP_MEASURES)
    if dialect_name == "sqlite":
        hour = "(bucket_start - bucket_start % 3600)"
        daily = f"(bucket_end - bucket_start >= {DAY_SECONDS})"
    else:
        hour = "date_trunc('hour', bucket_start, 'UTC')"
        daily = "(bucket_end - bucket_start >= INTERVAL '1 day')"
    delete = "DELETE FROM usage_hourly WHERE hour >= :d0 AND hour < :d1"
    insert = (
        f"INSERT INTO usage_hourly (hour, daily, {dims}, {measures}, rows) "
        f"SELECT {hour}, {daily}, {dims}, {', '.join(f'SUM({m})' for m in ROLLUP_MEASURES)}, COUNT(*) "
        f"FROM usage WHERE bucket_start >= :d0 AND bucket_start < :d1 GROUP BY {hour}, {daily}, {dims}"
    )
    return delete, insert


def _slim_sql(_dialect_name: str) -> tuple[str, str]:
    """The DELETE and INSERT ... SELECT that rebuild ``usage_daily_slim`` for ``[d0, d1)``.

    Summed from ``usage_daily``, so a level unit (bytes stored) keeps the daily rollup's value
    per fine group, summed over the dropped columns exactly as a report over ``usage_daily``
    sums it.
    """
    dims = ", ".join(HOURLY_DIMENSIONS)
    measures = ", ".join(ROLLUP_MEASURES)
    delete = "DELETE FROM usage_daily_slim WHERE day >= :d0 AND day < :d1"
    insert = (
        f"INSERT INTO usage_daily_slim (day, {dims}, {measures}, rows) "
        f"SELECT day, {dims}, {', '.join(f'SUM({m})' for m in ROLLUP_MEASURES)}, SUM(rows) "
        f"FROM usage_daily WHERE day >= :d0 AND day < :d1 GROUP BY day, {dims}"
    )
    return delete, insert


@dataclass(frozen=True)
class LazyRollup:
    """One rollup rebuilt on read: its table, its marks and the statements that rebuild a day range."""

    table: Table
    marks: Table
    sql: Callable[[str], tuple[str, str]]

    @property
    def name(self) -> str:
        return str(self.table.name)


HOURLY = LazyRollup(USAGE_HOURLY, HOURLY_DIRTY, _hourly_sql)
SLIM = LazyRollup(USAGE_DAILY_SLIM, SLIM_DIRTY, _slim_sql)


def refresh(engine: Engine, rollup: LazyRollup, since: datetime, until: datetime, *, wait: bool = True) -> int:
    """Rebuild the marked days of ``rollup`` that ``[since, until)`` touches; returns how many.

    Readers call this before reading the rollup (module docstring). Raises
    :class:`RollupUnavailable` when ``wait`` is False and another writer holds SQLite's write
    lock, or when a sum overflows SQLite's exact range (the day stays marked).
    """
    lo = datetime.fromtimestamp(int(since.timestamp()) // DAY_SECONDS * DAY_SECONDS, UTC)
    window = (rollup.marks.c.day >= lo, rollup.marks.c.day < until)
    with engine.connect() as conn:
        if conn.execute(select(rollup.marks.c.day).where(*window).limit(1)).first() is None:
            return 0
    try:
        with engine.connect() as conn, short_wait(conn, 30_000 if wait else 50), conn.begin():
            return _rebuild(conn, rollup, window)
    except OperationalError as exc:
        if "integer overflow" in str(exc):
            raise RollupUnavailable(f"a day's sum in {rollup.name} exceeds SQLite's exact range") from None
        if wait or "locked" not in str(exc):
            raise
        raise RollupUnavailable("another writer holds the database") from None


def refresh_hourly(engine: Engine, since: datetime, until: datetime, *, wait: bool = True) -> int:
    """:func:`refresh` of ``usage_hourly``."""
    return refresh(engine, HOURLY, since, until, wait=wait)


def _rebuild(conn: Connection, rollup: LazyRollup, window: tuple[Any, ...]) -> int:
    """Rebuild the marked days of ``window`` inside the caller's transaction (see :func:`refresh`)."""
    marks = rollup.marks
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": rollup.name})
    else:  # takes SQLite's write lock before the marks are read
        conn.execute(marks.update().where(marks.c.seq < 0).values(seq=0))
    found = conn.execute(select(marks.c.day, marks.c.seq).where(*window)).all()
    bind = UTCDateTime().bind_processor(conn.dialect)
    assert bind is not None
    delete_sql, insert_sql = rollup.sql(conn.dialect.name)
    for d0, d1 in _day_ranges(int(m.day.timestamp()) for m in found):
        params = {"d0": bind(datetime.fromtimestamp(d0, UTC)), "d1": bind(datetime.fromtimestamp(d1, UTC))}
        conn.execute(text(delete_sql), params)
        conn.execute(text(insert_sql), params)
    if found:
        conn.execute(
            marks.delete().where(marks.c.day == bindparam("d"), marks.c.seq == bindparam("s")),
            [{"d": m.day, "s": m.seq} for m in found],
        )
    return len(found)


__all__ = ["HOURLY", "SLIM", "LazyRollup", "RollupUnavailable", "refresh", "refresh_hourly"]
