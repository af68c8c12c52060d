"""The one write path for usage rows (design.md, "Data flow").

Every source ends in :func:`upsert`. It compiles the dialect's ``INSERT ... ON CONFLICT DO
UPDATE`` once per dialect and hands batches of plain tuples straight to the driver's
``executemany`` (SQLAlchemy's per-row parameter processing would add ~1.5x, measured by the store benchmark). Rows whose
values did not change are not rewritten, so a re-sync touches nothing but the daily rollup of
the days it covered, which is rebuilt from ``usage`` in the same transaction. The rollup of
slices a write is the first to fill is summed from the written rows instead (:class:`_Fresh`).
On SQLite rows go 100 to a multi-row ``VALUES`` statement (:meth:`_Writer.execute`); on
PostgreSQL a large batch goes through ``COPY`` (:class:`_Stage`). The per-row work is done in C
where the optional extension is built (``_rowbuild.c``), else by the same steps in Python.
"""

from __future__ import annotations

import hashlib
import operator
import sqlite3
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from itertools import chain, islice, repeat
from typing import Any

from sqlalchemy import BigInteger, Table, delete, func, select, text, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import OperationalError

from collector.core.gcpause import paused_gc
from collector.core.native import rowbuild as _rowbuild
from collector.core.schema import (
    KEY_FIELDS,
    KEY_PARTS,
    LEVEL_UNITS,
    RECORD_FIELDS,
    ROLLUP_DIMENSIONS,
    ROLLUP_MEASURES,
    DataVersion,
    UsageDaily,
    UsageDailySlim,
    UsageDailySlimDirty,
    UsageHourly,
    UsageHourlyDirty,
    UsageRecord,
    UsageRow,
)
from collector.core.sqltypes import MAX_MONEY, MONEY_SCALE, QUANTITY_SCALE, ScaledDecimal, UTCDateTime
from collector.core.walsync import WalSync

DAY_SECONDS = 86_400
USAGE: Table = UsageRow.__table__  # type: ignore[attr-defined]
USAGE_DAILY: Table = UsageDaily.__table__  # type: ignore[attr-defined]
DATA_VERSION: Table = DataVersion.__table__  # type: ignore[attr-defined]
USAGE_HOURLY: Table = UsageHourly.__table__  # type: ignore[attr-defined]
HOURLY_DIRTY: Table = UsageHourlyDirty.__table__  # type: ignore[attr-defined]
USAGE_DAILY_SLIM: Table = UsageDailySlim.__table__  # type: ignore[attr-defined]
SLIM_DIRTY: Table = UsageDailySlimDirty.__table__  # type: ignore[attr-defined]
#: Columns an upsert may change on an existing row; ``ingested_at`` keeps its first value.
_MUTABLE = tuple(c for c in RECORD_FIELDS if c not in KEY_FIELDS)
#: Changes to these count as a change of data; ``source_ref`` alone does not rewrite a row.
_COMPARED = tuple(c for c in _MUTABLE if c != "source_ref")
_ROW_COLUMNS = ("record_key", *RECORD_FIELDS, "ingested_at", "updated_at")


@dataclass
class UpsertResult:
    """What one :func:`upsert` call wrote."""

    records: int = 0
    #: Rows inserted or changed (identical re-writes are skipped by the upsert's WHERE clause).
    changed: int = 0
    #: UTC days (epoch seconds of midnight) whose rollups were rebuilt.
    days: set[int] = field(default_factory=set)
    #: Wall time spent rebuilding ``usage_daily`` (reported by the store benchmark).
    rollup_seconds: float = 0.0


class _Writer:
    """The upsert statement and a lean row builder for one dialect.

    The statement is compiled once with a positional parameter style (``?`` or ``%s``) so each
    row is a plain tuple. Its ``ON CONFLICT`` tail is kept as compiled; the column list is
    reordered so that the columns the driver takes as they are come first, read by one
    ``attrgetter``, followed by the record key and the few that need a converter (scaled money
    on SQLite), which are built a whole batch at a time (:meth:`rows`).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
        stmt = insert(USAGE)
        excluded = stmt.excluded
        changed = None
        for name in _COMPARED:
            cond = USAGE.c[name].is_distinct_from(excluded[name])
            changed = cond if changed is None else changed | cond
        stmt = stmt.on_conflict_do_update(
            index_elements=[USAGE.c.bucket_start, USAGE.c.record_key],
            set_={name: excluded[name] for name in (*_MUTABLE, "updated_at")},
            where=changed,
        )
        compile_dialect = dialect if dialect.positional else type(dialect)(paramstyle="format")  # type: ignore[call-arg]
        compiled = stmt.compile(dialect=compile_dialect)
        names = [str(p) for p in compiled.positiontup or []]
        if set(names) != set(_ROW_COLUMNS):
            raise RuntimeError(f"unexpected upsert parameters: {names}")
        self.conflict = str(compiled)[str(compiled).index(" ON CONFLICT ") :]
        epoch = dialect.name == "sqlite"  # SQLite stores time as epoch seconds (collector/sqltypes.py)
        timestamps = {"bucket_start": "_start_ts", "bucket_end": "_end_ts"} if epoch else {}
        plain: list[str] = []
        converted: list[tuple[str, Any]] = []
        for name in _ROW_COLUMNS[:-2]:
            if name == "record_key":
                continue
            conv = (
                None
                if name in timestamps
                else getattr(USAGE.c[name].type, "fast_bind_column", lambda _d: None)(dialect)
            )
            if conv is None:
                plain.append(name)
            else:
                converted.append((name, conv))
        #: Column order of every row tuple: plain columns, the key, converted ones, then the two stamps.
        self.columns = (*plain, "record_key", *(name for name, _ in converted), "ingested_at", "updated_at")
        #: The record fields behind the plain columns (the buckets as epoch seconds on SQLite).
        self.fields = tuple(timestamps.get(n, n) for n in plain)
        self.getter = operator.attrgetter(*self.fields)
        self.converted = tuple((operator.attrgetter(name), conv) for name, conv in converted)
        marker = "?" if dialect.paramstyle == "qmark" else "%s"
        self.column_list = ", ".join(self.columns)
        values = f"({', '.join([marker] * len(self.columns))})"
        self.sql = f"INSERT INTO usage ({self.column_list}) VALUES {values}" + self.conflict
        #: The same insert that leaves an existing key alone: for slices that held no rows (:class:`_Fresh`).
        nothing = " ON CONFLICT (bucket_start, record_key) DO NOTHING"
        self.sql_new = f"INSERT INTO usage ({self.column_list}) VALUES {values}{nothing}"
        #: SQLite: rows per multi-row ``VALUES`` statement (see :meth:`execute`), within its bound-variable limit.
        self.per_statement = min(100, _sqlite_max_variables() // len(self.columns)) if dialect.name == "sqlite" else 1
        many = ", ".join([values] * self.per_statement)
        self.sql_multi = f"INSERT INTO usage ({self.column_list}) VALUES {many}" + self.conflict
        self.sql_multi_new = f"INSERT INTO usage ({self.column_list}) VALUES {many}{nothing}"
        self.nothing = nothing
        #: Multi-row statements that bind a batch's shared values once (:meth:`_shared_sql`).
        self.shared_sql: dict[tuple[tuple[int, ...], bool], str] = {}
        self.key_at = self.columns.index("record_key")
        self.stamp = USAGE.c.updated_at.type.fast_bind(dialect)  # type: ignore[attr-defined]

    def execute(self, cursor: Any, params: list[Any], *, new: bool = False) -> int:
        """Write parameter tuples with the upsert (``new``: with ``DO NOTHING``); returns the rows changed.

        On SQLite the rows go ``per_statement`` at a time into one multi-row ``VALUES``
        statement: SQLite applies them one after another, exactly as ``executemany`` of the
        one-row statement would (a key repeated in one statement is inserted, then updated), at
        about 15 % less of SQLite's time for a re-write that changes nothing (store benchmark).
        Columns whose value every row of the batch shares (the source, the stamps, a file's
        account, the zero counters) are bound once per statement instead of once per row: the
        driver's binding, not SQLite, was half of that statement's time (a profile of the FOCUS
        import), and a FOCUS batch shares 21 of its 34 columns. The keys go as ``bytearray``,
        which the driver binds without its adapter lookup (see ``_rowbuild.flatten``).
        """
        k = self.per_statement
        one, multi = (self.sql_new, self.sql_multi_new) if new else (self.sql, self.sql_multi)
        full = len(params) - len(params) % k if k > 1 else 0
        written = 0
        if full and _rowbuild is not None:
            shared = tuple(i for i in _rowbuild.shared_columns(params) if i != self.key_at)
            if shared:
                keep = tuple(i for i in range(len(self.columns)) if i not in shared)
                lead = tuple(params[0][i] for i in shared)
                runs = _rowbuild.flatten(params, k, keep, lead, (self.key_at,))
                cursor.executemany(self._shared_sql(shared, new), runs)
            else:
                cursor.executemany(multi, _rowbuild.flatten(params, k, None, (), (self.key_at,)))
            written = cursor.rowcount
        elif full:
            cursor.executemany(multi, [list(chain.from_iterable(params[i : i + k])) for i in range(0, full, k)])
            written = cursor.rowcount
        if full < len(params):
            cursor.executemany(one, params[full:])
            written += cursor.rowcount
        return written

    def _shared_sql(self, shared: tuple[int, ...], new: bool) -> str:
        """The multi-row statement that binds the columns at ``shared`` once, the rest per row.

        ``INSERT ... SELECT`` from a multi-row ``VALUES`` (whose columns SQLite names
        ``column1``, ``column2``, ...) inserts its rows in order, as the plain multi-row
        statement does; the ``?`` of the select list come first in the text, so the shared
        values lead each statement's parameters. ``WHERE true`` is SQLite's documented way to
        end the ``SELECT`` before an upsert's ``ON CONFLICT``.
        """
        sql = self.shared_sql.get((shared, new))
        if sql is None:
            picks: list[str] = []
            per_row = 0
            for i in range(len(self.columns)):
                if i not in shared:
                    per_row += 1
                picks.append("?" if i in shared else f"column{per_row}")
            one = f"({', '.join(['?'] * per_row)})"
            rows = ", ".join([one] * self.per_statement)
            tail = self.nothing if new else self.conflict
            select = f"SELECT {', '.join(picks)} FROM (VALUES {rows}) WHERE true"
            sql = f"INSERT INTO usage ({self.column_list}) {select}{tail}"
            if len(self.shared_sql) >= 64:  # batches of ever other shared columns: keep the cache small
                self.shared_sql.clear()
            self.shared_sql[(shared, new)] = sql
        return sql

    def rows(self, records: list[UsageRecord], now: datetime, touched: set[Any]) -> list[Any]:
        """Plain parameter tuples for the driver; collects the rollup slices they touch.

        The C extension (``_rowbuild.rows``) reads each record's slots and hashes its key in one
        pass. Without it, rows are built column-wise with C-level calls (``map``, ``zip``,
        ``attrgetter``) so that no Python code runs per row: each row is the plain columns' tuple
        joined to a tuple of its key, converted values and stamps. Both give the same tuples.
        """
        stamp = self.stamp(now) if self.stamp else now
        if _rowbuild is not None and type(records) is list:
            converted = tuple(conv(list(map(get, records))) for get, conv in self.converted)
            return _rowbuild.rows(
                records, UsageRecord, self.fields, KEY_PARTS, "_key", converted, (stamp, stamp),
                touched, _START_AND_SLICE_FIELDS, DAY_SECONDS,
            )  # fmt: skip
        # Distinct (hour, slice) pairs first: a batch has far fewer of them than rows.
        touched.update((ts - ts % DAY_SECONDS, *sl) for ts, *sl in set(map(_START_AND_SLICE, records)))
        extra = zip(
            UsageRecord.record_keys(records),
            *(conv(list(map(get, records))) for get, conv in self.converted),
            repeat(stamp),
            repeat(stamp),
            strict=False,  # the stamps repeat without end; the key and converted columns have a value per record
        )
        return list(map(tuple.__add__, map(self.getter, records), extra))


_WRITERS: dict[str, _Writer] = {}
_START_AND_SLICE_FIELDS = ("_start_ts", "provider", "account", "source", "kind")
_START_AND_SLICE = operator.attrgetter(*_START_AND_SLICE_FIELDS)


def _sqlite_max_variables() -> int:
    """SQLite's limit on ``?`` per statement: 32766 since 3.32, 999 before."""
    return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def _writer(dialect: Dialect) -> _Writer:
    key = f"{dialect.name}:{dialect.driver}:{dialect.paramstyle}"
    if key not in _WRITERS:
        _WRITERS[key] = _Writer(dialect)
    return _WRITERS[key]


def _batches(records: Iterable[UsageRecord], size: int) -> Iterator[list[UsageRecord]]:
    it = iter(records)
    while batch := list(islice(it, size)):
        yield batch


#: From this many rows a PostgreSQL batch goes through ``COPY`` into a staging table and one
#: ``INSERT ... SELECT ... ON CONFLICT``: about twice as fast as ``executemany`` there (store
#: benchmark), while a small batch (a sync page) does not pay the extra round trips.
COPY_MIN_ROWS = 200


class _Stage:
    """PostgreSQL's bulk path: ``COPY`` rows into a temporary table, then upsert them in one statement.

    The staging table has ``usage``'s columns plus ``seq``, the row's position in its batch:
    ``DISTINCT ON`` keeps the last row of each key, as a row-by-row upsert would end with it
    (one ``INSERT ... ON CONFLICT`` may not update the same row twice). The table is
    ``ON COMMIT DELETE ROWS`` and emptied after each batch, so nothing outlives the transaction;
    its name carries a digest of the column list, so a session that outlives a migration never
    reuses a table of the old shape.
    """

    def __init__(self, cursor: Any, writer: _Writer) -> None:
        digest = hashlib.blake2b(writer.column_list.encode(), digest_size=4).hexdigest()
        self.name = f"usage_stage_{digest}"
        self.cursor = cursor
        self.copy_sql = f"COPY {self.name} ({writer.column_list}, seq) FROM STDIN"
        select = (
            f"INSERT INTO usage ({writer.column_list}) "
            f"SELECT DISTINCT ON (bucket_start, record_key) {writer.column_list} FROM {self.name} "
            f"ORDER BY bucket_start, record_key, seq DESC"
        )
        self.insert_sql = select + writer.conflict
        #: The same insert that leaves an existing key alone: for slices that held no rows (:class:`_Fresh`).
        self.insert_new_sql = select + " ON CONFLICT (bucket_start, record_key) DO NOTHING"
        self.created = False

    def write(self, params: list[Any], *, new: bool = False) -> int:
        """Upsert one batch (``new``: insert only keys not yet stored); returns the rows inserted or changed."""
        cursor = self.cursor
        if not self.created:  # created on first use: a sync's small pages never need it
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.name} "
                "(LIKE usage INCLUDING DEFAULTS, seq integer NOT NULL) ON COMMIT DELETE ROWS"
            )
            self.created = True
        with cursor.copy(self.copy_sql) as copy:
            write_row = copy.write_row
            for seq, row in enumerate(params):
                write_row((*row, seq))
        cursor.execute(self.insert_new_sql if new else self.insert_sql)
        written = int(cursor.rowcount)
        cursor.execute(f"TRUNCATE {self.name}")
        return written


_SliceDay = tuple[int, str, str, str, str]
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Day ranges to rebuild, each with the (provider, account, source, kind) slices to rebuild in it.
_Plan = list[tuple[int, int, list[tuple[str, str, str, str]]]]


def _slice_day(group: tuple[int, tuple[Any, ...]]) -> _SliceDay:
    """The (day, provider, account, source, kind) of a rollup group (the dimensions start with the slice)."""
    day, dims = group
    return (day, dims[0], dims[1], dims[2], dims[3])


class _Fresh:
    """First writes: the daily rollup of slices that held no rows before, summed from the rows.

    Rebuilding ``usage_daily`` reads the written rows back and sorts them for a ``GROUP BY``,
    which cost about as much as writing them on SQLite and a fifth of a bulk write's time on
    PostgreSQL (store benchmark). For a (day, provider, account, source, kind) slice with no row
    in ``usage_daily`` (so none in ``usage``: the rollup is rebuilt in the same transaction as
    every write), the rollup is exactly the sum of the rows this write adds, which are at hand.
    Such rows go in with ``ON CONFLICT DO NOTHING``: if fewer rows went in than were sent, a key
    came twice in this write (or another writer's), the batch is written again with the upsert
    (which leaves the last row of each key, as always) and its slices fall back to the rebuild
    from ``usage``, as do slices whose sums would not fit SQLite's 64-bit integers (so the
    rebuild raises :class:`AmountOverflow` as before).

    No other writer may add rows to a summed slice before this one commits:

    - SQLite: ``usage_daily`` is read only once this transaction holds the write lock.
    - PostgreSQL: writers run side by side until their rollups, which each builds under one
      advisory lock held to commit. :meth:`finish` takes that lock and reads ``usage_daily``
      again: a slice that another writer has committed rows to since (they always come with
      their rollup rows) goes to the rebuild, which then counts both writers' rows. A writer
      that commits later rebuilds or sums under the same lock after this one's commit. A
      level unit's daily mean is left to the rebuild there (PostgreSQL's ``numeric`` division).
    """

    def __init__(self, cursor: Any, writer: _Writer, stage: _Stage | None = None) -> None:
        self.cursor, self.writer, self.stage = cursor, writer, stage
        self.postgres = writer.dialect.name == "postgresql"
        index = writer.columns.index
        self.slice_of = operator.itemgetter(index("bucket_start"), *(index(n) for n in _SLICE))
        self.start_of = operator.itemgetter(index("bucket_start"))
        self.dims_of = operator.itemgetter(*(index(n) for n in ROLLUP_DIMENSIONS))
        self.measures_of = operator.itemgetter(*(index(n) for n in ROLLUP_MEASURES))
        self.cost_at = ROLLUP_MEASURES.index("cost")
        #: The same positions for ``_rowbuild.group_sums``.
        self.native_columns = (
            index("bucket_start"),
            tuple(index(n) for n in ROLLUP_DIMENSIONS),
            tuple(index(n) for n in ROLLUP_MEASURES),
        )
        #: PostgreSQL's rows carry the bucket as a datetime: its UTC day in epoch seconds.
        self.day_of: dict[Any, int] | None = {} if self.postgres else None
        #: Every slice-day this write touched: True if it held no rows before (summed here).
        self.fresh: dict[_SliceDay, bool] = {}
        #: (day, ROLLUP_DIMENSIONS values) -> [*ROLLUP_MEASURES sums, rows, rows with a cost]
        #: (lists where the C extension adds to them in place, tuples where Python sums them).
        self.sums: dict[tuple[int, tuple[Any, ...]], Any] = {}

    def write(self, params: list[Any], touched: set[_SliceDay]) -> tuple[int, set[_SliceDay]]:
        """Write one batch; returns the rows written and the slice-days left to the rebuild from ``usage``."""
        fresh = self.fresh
        unknown = [sd for sd in touched if sd not in fresh]
        if unknown:
            self._classify(unknown)
        new = {sd for sd in touched if fresh[sd]}
        if not new:
            written = self._write(params)
            return written, touched if written else set()
        if self.day_of is not None:
            day_of = self.day_of
            for start in set(map(self.start_of, params)) - day_of.keys():
                day_of[start] = int(start.timestamp()) // DAY_SECONDS * DAY_SECONDS
        rebuild: set[_SliceDay] = set()
        written = 0
        new_rows: list[Any] = params
        if len(new) != len(touched):  # slices old and new in one batch: their keys differ, so order does not matter
            new_rows = []
            old_rows: list[Any] = []
            for row in params:
                (new_rows if self._slice_day_of(row) in new else old_rows).append(row)
            written = self._write(old_rows)
            if written:
                rebuild |= touched - new
        inserted = self._write(new_rows, new=True)
        if inserted == len(new_rows):
            self._add(new_rows)
            return written + inserted, rebuild
        written += self._write(new_rows)  # a key came twice (or was another writer's): the upsert settles it
        self._demote(new)
        return written + inserted, rebuild | new

    def _write(self, rows: list[Any], *, new: bool = False) -> int:
        if self.stage is not None and len(rows) >= COPY_MIN_ROWS:
            return self.stage.write(rows, new=new)
        return self.writer.execute(self.cursor, rows, new=new) if rows else 0

    def _slice_day_of(self, row: tuple[Any, ...]) -> _SliceDay:
        start, provider, account, source, kind = self.slice_of(row)
        day = start - start % DAY_SECONDS if self.day_of is None else self.day_of[start]
        return (day, provider, account, source, kind)

    def _classify(self, unknown: list[_SliceDay]) -> None:
        if not self.postgres and not self.cursor.connection.in_transaction:
            # A write statement takes the write lock (and the driver's BEGIN) before usage_daily is read.
            self.cursor.execute("UPDATE data_version SET version = version WHERE id < 0")
        found = self._held({sd[0] for sd in unknown})
        for sd in unknown:
            self.fresh[sd] = sd not in found

    def _held(self, days: set[int]) -> set[_SliceDay]:
        """The slice-days of these days that ``usage_daily`` holds rows of."""
        cursor, ordered = self.cursor, sorted(days)
        found: set[_SliceDay] = set()
        select = "SELECT DISTINCT day, provider, account, source, kind FROM usage_daily"
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            if self.postgres:
                cursor.execute(f"{select} WHERE day = ANY(%s)", ([datetime.fromtimestamp(d, UTC) for d in chunk],))
                found.update((int(d.timestamp()), *sl) for d, *sl in cursor.fetchall())
            else:
                found.update(cursor.execute(f"{select} WHERE day IN ({', '.join('?' * len(chunk))})", chunk))
        return found

    def _add(self, rows: list[Any]) -> None:
        """Sum rows into their daily rollup groups (the C extension straight into the write's totals)."""
        sums, add = self.sums, operator.add
        with localcontext(_EXACT):  # PostgreSQL's amounts are Decimals: sums as exact as numeric's
            if _rowbuild is not None:
                start_at, dims_at, measures_at = self.native_columns
                _rowbuild.group_sums(rows, start_at, dims_at, measures_at, self.cost_at, DAY_SECONDS, self.day_of, sums)
                return
            for group, totals in self._batch_sums(rows).items():
                held = sums.get(group)
                # Tuples of numbers, which the cyclic GC stops tracking: the write's many thousand
                # groups then add nothing to the full collections that run between batches.
                sums[group] = tuple(totals) if held is None else tuple(map(add, held, totals))

    def _batch_sums(self, rows: list[Any]) -> dict[tuple[int, tuple[Any, ...]], list[Any]]:
        """One batch's sums per (day, dimensions): ``[*ROLLUP_MEASURES, rows, rows with a cost]``.

        What ``_rowbuild.group_sums`` adds up where the extension is built (:meth:`_add`). Here
        the group keys are built by C calls (``map``, ``itemgetter``), and so is the grouping:
        each row's measures are appended to ``groups[key]`` by a ``map`` that a zero-length
        ``deque`` drains, with no Python loop per row.
        """
        starts = list(map(self.start_of, rows))
        if self.day_of is None:
            days: Iterable[int] = map(operator.sub, starts, map(operator.mod, starts, repeat(DAY_SECONDS)))
        else:
            days = map(self.day_of.__getitem__, starts)
        groups: defaultdict[tuple[int, tuple[Any, ...]], list[Any]] = defaultdict(list)
        keys = zip(days, map(self.dims_of, rows), strict=False)  # equal lengths: both map the rows
        deque(map(list.append, map(groups.__getitem__, keys), map(self.measures_of, rows)), maxlen=0)
        cost_at = self.cost_at
        out = {}
        for group, members in groups.items():
            columns = list(zip(*members, strict=True))
            try:
                totals = list(map(sum, columns))
                totals += (len(members), len(members))  # rows, rows priced
            except TypeError:  # unpriced rows: SUM(cost) skips NULLs (and is NULL if every one is)
                costs = [c for c in columns[cost_at] if c is not None]
                columns[cost_at] = costs  # type: ignore[call-overload]
                totals = [*map(sum, columns), len(members), len(costs)]
            out[group] = totals
        return out

    def _demote(self, slice_days: set[_SliceDay]) -> None:
        """Leave these slice-days to the rebuild from ``usage``: drop what was summed for them."""
        for sd in slice_days:
            self.fresh[sd] = False
        for group in [g for g in self.sums if _slice_day(g) in slice_days]:
            del self.sums[group]

    def finish(self, rebuild: set[_SliceDay]) -> tuple[_Plan, set[int]]:
        """Plan the rebuild of ``rebuild`` plus slices that cannot be summed; returns it and the summed days.

        Those are slices whose sums overflow 64 bits and, on PostgreSQL, slices another writer
        has committed rows to since they were found empty, and a level unit's slices. A rebuild
        range covers every slice it names on each of its days, so summed slice-days it covers
        are left to it.
        """
        summed = set(map(_slice_day, self.sums))
        unsummable = {
            _slice_day(group)
            for group, totals in self.sums.items()
            if not (min(totals) >= _INT64_MIN and max(totals) <= _INT64_MAX)
        }
        if self.postgres and summed:
            self.cursor.execute("SELECT pg_advisory_xact_lock(hashtext('usage_daily'))")  # as _rebuild() takes it
            unit_at = ROLLUP_DIMENSIONS.index("quantity_unit")
            unsummable |= {_slice_day(g) for g in self.sums if g[1][unit_at] in LEVEL_UNITS}
            unsummable |= summed & self._held({sd[0] for sd in summed})
        if unsummable:
            self._demote(unsummable)
        plan = _slice_plan(rebuild | unsummable)
        covered = {(day, *sl) for d0, d1, slices in plan for day in range(d0, d1, DAY_SECONDS) for sl in slices}
        self._demote({sd for sd in map(_slice_day, self.sums) if sd in covered})
        return plan, {g[0] for g in self.sums}

    def insert(self) -> None:
        """Insert the summed rollup rows, in the order a ``GROUP BY`` rebuild would insert them.

        The rows are made as the driver takes them (100 to a multi-row ``VALUES`` on SQLite,
        ``COPY`` on PostgreSQL), and each group's sums are dropped once its row is made (an
        import's million rows make tens of thousands of groups).
        """
        if not self.sums:
            return
        columns = ", ".join(("day", *ROLLUP_DIMENSIONS, *ROLLUP_MEASURES, "rows"))
        if self.postgres:
            with self.cursor.copy(f"COPY usage_daily ({columns}) FROM STDIN") as copy:
                write_row = copy.write_row
                for row in self._rollup_rows():
                    row[0] = datetime.fromtimestamp(row[0], UTC)
                    write_row(row)
            return
        width = len(ROLLUP_DIMENSIONS) + len(ROLLUP_MEASURES) + 2
        values = f"({', '.join('?' * width)})"
        per = min(100, _sqlite_max_variables() // width)  # rows per multi-row VALUES, as _Writer.execute
        rows, tail = self._rollup_rows(), []

        def runs() -> Iterator[list[Any]]:
            while len(run := list(islice(rows, per))) == per:
                yield list(chain.from_iterable(run))
            tail.extend(run)

        self.cursor.executemany(f"INSERT INTO usage_daily ({columns}) VALUES {', '.join([values] * per)}", runs())
        if tail:
            self.cursor.executemany(f"INSERT INTO usage_daily ({columns}) VALUES {values}", tail)

    def _rollup_rows(self) -> Iterator[list[Any]]:
        levels, unit_at = LEVEL_UNITS, ROLLUP_DIMENSIONS.index("quantity_unit")
        quantity_at, cost_at, sums = ROLLUP_MEASURES.index("quantity"), self.cost_at, self.sums
        for group in sorted(sums):
            day, dims = group
            *measures, count, priced = sums.pop(group)
            if not priced:
                measures[cost_at] = None
            if dims[unit_at] in levels:  # a level's daily value is its mean (SQLite's integer division)
                total = measures[quantity_at]
                measures[quantity_at] = abs(total) // count * (1 if total >= 0 else -1)
            yield [day, *dims, *measures, count]


#: Exact sums of PostgreSQL's ``numeric(38, …)`` amounts (a Decimal context rounds past its precision).
_EXACT = Context(prec=80)


def upsert(
    conn: Connection,
    records: Iterable[UsageRecord],
    *,
    batch_size: int = 5000,
    now: datetime | None = None,
) -> UpsertResult:
    """Insert or update usage records by natural key, then rebuild the touched daily rollups.

    Runs inside the caller's transaction, so a sync can commit its high-water mark, or an
    importer its ``import_files`` row, atomically with the data (design.md, "Sync engine").

    Args:
        conn: an open connection inside a transaction (``engine.begin()``).
        records: validated records; a generator is consumed in batches, never held whole.
        batch_size: records per ``executemany``.
        now: the ``updated_at`` stamp; defaults to the current UTC time.

    Returns:
        How many records were written and which UTC days (epoch seconds) they touched.
    """
    writer = _writer(conn.dialect)
    stamp = now or datetime.now(UTC)
    result = UpsertResult()
    # The DBAPI cursor of this connection, inside its transaction: SQLAlchemy's parameter
    # distilling would add a per-row cost to what is the product's hottest loop.
    cursor = conn.connection.cursor()
    touched: set[tuple[int, str, str, str, str]] = set()
    bulk = _bulk(conn, cursor, writer)
    wal = WalSync(conn.connection.dbapi_connection)
    for batch in _batches(records, batch_size):
        # Each row allocates a few tuples and no cycles: the collections they would trigger find
        # nothing, and cost about 10 % of a bulk write's CPU time (store benchmark). Only this
        # write's own work is paused, never the caller's generator (a sync's HTTP pages, retries).
        with paused_gc():
            batch_touched: set[tuple[int, str, str, str, str]] = set()
            params = writer.rows(batch, stamp, batch_touched)
            _execute(cursor, writer, bulk, params, batch_touched, touched, result)
            # Freed inside the pause: the collection that the first allocation after it runs
            # then finds these 5,000 tuples gone instead of walking them (about 0.3 µs a row).
            del params
        wal.batch()
    _finish(conn, touched, result, bulk)
    wal.close()
    return result


def _bulk(conn: Connection, cursor: Any, writer: _Writer) -> _Fresh | None:
    """The dialect's bulk helper: summed first writes, through PostgreSQL's ``COPY`` staging there."""
    if conn.dialect.name == "postgresql":
        return _Fresh(cursor, writer, _Stage(cursor, writer)) if hasattr(cursor, "copy") else None
    return _Fresh(cursor, writer) if conn.dialect.name == "sqlite" else None


def _execute(
    cursor: Any,
    writer: _Writer,
    bulk: _Fresh | None,
    params: list[Any],
    batch_touched: set[_SliceDay],
    touched: set[_SliceDay],
    result: UpsertResult,
) -> None:
    """Write one batch of parameter tuples; its rollup slices count only if it changed a row."""
    result.records += len(params)
    if bulk is not None:
        written, rebuild = bulk.write(params, batch_touched)
        result.changed += written
        touched |= rebuild
        return
    written = writer.execute(cursor, params)
    result.changed += written
    if written:  # a batch that changed nothing leaves its rollups as they are
        touched |= batch_touched


def _finish(conn: Connection, touched: set[_SliceDay], result: UpsertResult, bulk: _Fresh | None) -> None:
    """Rebuild the rollup slices the written batches touched (and insert those summed by :class:`_Fresh`)."""
    started = time.perf_counter()
    if isinstance(bulk, _Fresh):
        plan, summed_days = bulk.finish(touched)
        result.days = {t[0] for t in touched} | summed_days
        _rebuild_plan(conn, plan)
        bulk.insert()
        ranges = _day_ranges(result.days)
        if ranges:
            _changed(conn, ranges)
    else:
        result.days = {t[0] for t in touched}
        refresh_slices(conn, touched)
    result.rollup_seconds = time.perf_counter() - started


@dataclass
class RowColumns:
    """Validated, named and priced records held as columns: the bulk write of columnar importers.

    What a list of :class:`UsageRecord` would hold, one list per field, for readers that build
    columns directly (``importers/columnar.py``) and would otherwise build a record per row only
    to take it apart again here. Whoever builds one guarantees what ``UsageRecord`` checks (the
    schema's rules); :meth:`from_records` builds one from records that checked themselves.

    Attributes:
        size: the number of rows.
        values: every field of :data:`RECORD_FIELDS` except the bucket, ``cost`` and ``quantity``:
            a list of ``size`` values, or one value every row shares.
        start_ts: each row's ``bucket_start`` in epoch seconds (whole seconds: a bucket starts on one).
        end_ts: each row's ``bucket_end`` likewise.
        cost: money as integers of ``10**-MONEY_SCALE`` (exact; ``None`` for unpriced), list or shared.
        quantity: quantities as integers of ``10**-QUANTITY_SCALE``, list or shared.
        keys: each row's ``record_key`` (:attr:`UsageRecord.record_key` of the same fields).
    """

    size: int
    values: dict[str, Any]
    start_ts: list[int]
    end_ts: list[int]
    cost: list[int | None] | int | None
    quantity: list[int] | int
    keys: list[bytes]

    def column(self, name: str) -> Iterable[Any]:
        """The field's values, one per row (a shared value repeated)."""
        value = self.values[name]
        return value if isinstance(value, list) else repeat(value, self.size)

    @classmethod
    def from_records(cls, records: Sequence[UsageRecord]) -> RowColumns:
        """The columns of records built (and so validated) one by one."""
        skip = {"bucket_start", "bucket_end", "cost", "quantity"}
        money = ScaledDecimal(MONEY_SCALE).fast_bind(_SQLITE)
        amount = ScaledDecimal(QUANTITY_SCALE).fast_bind(_SQLITE)
        assert money is not None and amount is not None
        return cls(
            size=len(records),
            values={name: [getattr(r, name) for r in records] for name in RECORD_FIELDS if name not in skip},
            start_ts=[r._start_ts for r in records],
            end_ts=[r._end_ts for r in records],
            cost=[money(r.cost) for r in records],
            quantity=[amount(r.quantity) for r in records],
            keys=[r.record_key for r in records],
        )


_SQLITE = sqlite.dialect()


def _scaled_to_decimal(scale: int) -> Callable[[int | None], Decimal | None]:
    def to_decimal(value: int | None) -> Decimal | None:
        return None if value is None else Decimal(value).scaleb(-scale)

    return to_decimal


def _column_params(writer: _Writer, batch: RowColumns, now: datetime) -> list[Any]:
    """Parameter tuples in the writer's column order, built column-wise."""
    epoch = writer.dialect.name == "sqlite"
    n = batch.size
    seqs: list[Iterable[Any]] = []
    for name in writer.columns:
        if name == "record_key":
            seqs.append(batch.keys)
        elif name in ("bucket_start", "bucket_end"):
            ts = batch.start_ts if name == "bucket_start" else batch.end_ts
            if epoch:
                seqs.append(ts)
            else:
                cache: dict[int, datetime] = {}
                seqs.append([cache.get(t) or cache.setdefault(t, datetime.fromtimestamp(t, UTC)) for t in ts])
        elif name in ("cost", "quantity"):
            scaled = batch.cost if name == "cost" else batch.quantity
            if not epoch:
                convert = _scaled_to_decimal(MONEY_SCALE if name == "cost" else QUANTITY_SCALE)
                scaled = [convert(v) for v in scaled] if isinstance(scaled, list) else convert(scaled)  # type: ignore[assignment]
            seqs.append(scaled if isinstance(scaled, list) else repeat(scaled, n))
        elif name in ("ingested_at", "updated_at"):
            seqs.append(repeat(writer.stamp(now) if writer.stamp else now, n))
        else:
            seqs.append(batch.column(name))
    return list(zip(*seqs, strict=False))  # shared values are endless repeats


def upsert_columns(conn: Connection, batches: Iterable[RowColumns], *, now: datetime | None = None) -> UpsertResult:
    """:func:`upsert` for records held as columns: the same statement, rows and rollup rebuild.

    Rows are written exactly as :func:`upsert` writes the records they stand for (a test
    imports one file both ways, on SQLite and PostgreSQL, and compares every stored row).
    """
    writer = _writer(conn.dialect)
    stamp = now or datetime.now(UTC)
    result = UpsertResult()
    cursor = conn.connection.cursor()
    touched: set[tuple[int, str, str, str, str]] = set()
    bulk = _bulk(conn, cursor, writer)
    wal = WalSync(conn.connection.dbapi_connection)
    for batch in batches:
        if not batch.size:
            continue
        with paused_gc():  # as in upsert(): this write's own work only, not the reader's
            days = [t - t % DAY_SECONDS for t in batch.start_ts]
            batch_touched = set(zip(days, *(batch.column(name) for name in _SLICE), strict=False))
            _execute(cursor, writer, bulk, _column_params(writer, batch, stamp), batch_touched, touched, result)
        wal.batch()
    _finish(conn, touched, result, bulk)
    wal.close()
    return result


def upsert_records(engine: Engine, records: Iterable[UsageRecord], **kwargs: Any) -> UpsertResult:
    """:func:`upsert` in a transaction of its own."""
    with engine.begin() as conn:
        return upsert(conn, records, **kwargs)


def _day_ranges(days: Iterable[int]) -> list[tuple[int, int]]:
    """Merge day starts (epoch seconds) into half-open ``[start, end)`` runs of consecutive days."""
    ranges: list[tuple[int, int]] = []
    for day in sorted(days):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + DAY_SECONDS)
        else:
            ranges.append((day, day + DAY_SECONDS))
    return ranges


_SLICE = ("provider", "account", "source", "kind")
#: Slices named in one rebuild statement (four parameters each).
_SLICES_PER_STATEMENT = 200


def _rollup_sql(dialect_name: str, slices: int) -> tuple[str, str]:
    """The DELETE and INSERT ... SELECT that rebuild ``usage_daily`` for ``[d0, d1)``.

    With ``slices`` > 0 only rows of those (provider, account, source, kind) slices are
    rebuilt, named as one row-value list (``(provider, ...) IN (VALUES ...)``), so one pass
    over the day range serves every slice an upsert touched.
    """
    dims = ", ".join(ROLLUP_DIMENSIONS)
    levels = ", ".join(f"'{unit}'" for unit in sorted(LEVEL_UNITS))
    sums = ", ".join(
        f"CASE WHEN quantity_unit IN ({levels}) THEN SUM(quantity) / COUNT(*) ELSE SUM(quantity) END"
        if m == "quantity"
        else f"SUM({m})"
        for m in ROLLUP_MEASURES
    )
    day = (
        f"(bucket_start - bucket_start % {DAY_SECONDS})"
        if dialect_name == "sqlite"
        else "date_trunc('day', bucket_start, 'UTC')"
    )
    where_slice = ""
    if slices:
        values = ", ".join(f"(:p{i}, :a{i}, :s{i}, :k{i})" for i in range(slices))
        where_slice = f" AND ({', '.join(_SLICE)}) IN (VALUES {values})"
    delete = f"DELETE FROM usage_daily WHERE day >= :d0 AND day < :d1{where_slice}"
    insert = (
        f"INSERT INTO usage_daily (day, {dims}, {', '.join(ROLLUP_MEASURES)}, rows) "
        f"SELECT {day}, {dims}, {sums}, COUNT(*) FROM usage "
        f"WHERE bucket_start >= :d0 AND bucket_start < :d1{where_slice} GROUP BY {day}, {dims}"
    )
    return delete, insert


def _slice_params(slices: list[tuple[str, str, str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for i, (provider, account, source, kind) in enumerate(slices):
        params.update({f"p{i}": provider, f"a{i}": account, f"s{i}": source, f"k{i}": kind})
    return params


def _rebuild(
    conn: Connection,
    ranges: Iterable[tuple[int, int]],
    slices: list[tuple[str, str, str, str]] | None,
) -> None:
    """Delete and re-aggregate ``usage_daily`` for day ranges, optionally for some slices only.

    On PostgreSQL a transaction-scoped advisory lock serialises rebuilds, so two collectors
    writing the same day cannot both insert a rollup for it (each statement then sees the
    other's committed rows under READ COMMITTED).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('usage_daily'))"))
    bind = UTCDateTime().bind_processor(conn.dialect)
    assert bind is not None
    chunks = (
        [None]
        if slices is None
        else [slices[i : i + _SLICES_PER_STATEMENT] for i in range(0, len(slices), _SLICES_PER_STATEMENT)]
    )
    for d0, d1 in ranges:
        for chunk in chunks:
            delete, insert = _rollup_sql(conn.dialect.name, len(chunk) if chunk else 0)
            params = {
                "d0": bind(datetime.fromtimestamp(d0, UTC)),
                "d1": bind(datetime.fromtimestamp(d1, UTC)),
                **(_slice_params(chunk) if chunk else {}),
            }
            conn.execute(text(delete), params)
            try:
                conn.execute(text(insert), params)
            except OperationalError as exc:
                if "integer overflow" not in str(exc):
                    raise
                raise AmountOverflow(_overflow_message(d0, d1, chunk)) from None


def bump_data_version(conn: Connection) -> None:
    """Count one more change of ``usage_daily`` (same transaction, so readers see both or neither).

    On PostgreSQL the row lock this takes is held to commit, after the rebuild's advisory lock,
    so concurrent writers queue in the order they already do and never deadlock on it.
    """
    bumped = conn.execute(
        DATA_VERSION.update().where(DATA_VERSION.c.id == 1).values(version=DATA_VERSION.c.version + 1)
    ).rowcount
    if not bumped:  # a database created from the models rather than the migration
        conn.execute(DATA_VERSION.insert().values(id=1, version=1))


def _changed(conn: Connection, ranges: list[tuple[int, int]]) -> None:
    """After a rollup rebuild: count the change and mark the days' lazy rollups for rebuilding."""
    bump_data_version(conn)
    _mark_lazy(conn, [day for d0, d1 in ranges for day in range(d0, d1, DAY_SECONDS)])


#: The marks of the rollups rebuilt on read (:mod:`collector.core.rollups`).
LAZY_MARKS: tuple[Table, ...] = (HOURLY_DIRTY, SLIM_DIRTY)


def _mark_lazy(conn: Connection, days: list[int]) -> None:
    """One upsert per written day and lazy rollup (``seq`` + 1), instead of their aggregation in the write."""
    if not days:
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    params = [{"day": datetime.fromtimestamp(day, UTC), "seq": 1} for day in days]
    for marks in LAZY_MARKS:
        stmt = dialect_insert(marks).on_conflict_do_update(index_elements=["day"], set_={"seq": marks.c.seq + 1})
        conn.execute(stmt, params)


@contextmanager
def short_wait(conn: Connection, ms: int) -> Iterator[None]:
    """On SQLite, wait at most ``ms`` for the write lock (not the engine's 30 s) inside this block.

    A reader that writes on the side (a kept figure, an hourly rebuild) must not stall a page
    behind an import's minutes-long transaction; it gives up and reads around it instead.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection  # beside SQLAlchemy's transaction, which has not begun
    assert raw is not None
    raw.execute(f"PRAGMA busy_timeout={int(ms)}")
    try:
        yield
    finally:
        raw.execute("PRAGMA busy_timeout=30000")


def data_version(engine: Engine) -> int:
    """The ``usage_daily`` change counter (0 before the first write): one primary-key read."""
    with engine.connect() as conn:
        found = conn.execute(select(DATA_VERSION.c.version).where(DATA_VERSION.c.id == 1)).scalar()
    return int(found or 0)


class AmountOverflow(ValueError):
    """A day's total of one group would not fit SQLite's 64-bit money column; nothing was written."""


def _overflow_message(d0: int, d1: int, slices: list[tuple[str, str, str, str]] | None) -> str:
    days = f"{datetime.fromtimestamp(d0, UTC):%Y-%m-%d} .. {datetime.fromtimestamp(d1 - 1, UTC):%Y-%m-%d}"
    names = sorted({f"{p}/{a}" if a else p for p, a, _s, _k in slices or []})
    where = f"of {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}, " if names else ""
    return (
        f"the daily total of one group ({where}{days}) exceeds what SQLite stores exactly "
        f"(±{MAX_MONEY:,} per row and about 922,337,203 per day and group); nothing was written. "
        "Split the amounts or use PostgreSQL (LLM_USAGE_DATABASE_URL)."
    )


def refresh_daily(conn: Connection, days: Iterable[int]) -> None:
    """Rebuild every rollup row of the given UTC days (epoch seconds of midnight) from ``usage``."""
    ranges = _day_ranges(days)
    if ranges:
        _rebuild(conn, ranges, None)
        _changed(conn, ranges)


def refresh_slices(conn: Connection, touched: Iterable[tuple[int, str, str, str, str]]) -> None:
    """Rebuild the rollup only for the (day, provider, account, source, kind) slices written.

    A rollup row never mixes slices (they are rollup dimensions), so rebuilding just the
    written slices is exact, and a sync of one endpoint does not re-aggregate every other
    endpoint's rows of the same days. The touched days are merged into ranges and each range
    is rebuilt once for every slice written in it: a slice that was not written on one day of
    the range is rebuilt from unchanged rows, which gives the same rollup.
    """
    plan = _slice_plan(touched)
    _rebuild_plan(conn, plan)
    if plan:
        _changed(conn, [(d0, d1) for d0, d1, _ in plan])


def _slice_plan(touched: Iterable[_SliceDay]) -> _Plan:
    """The day ranges of the touched slice-days, each with every slice written in it (see :func:`refresh_slices`)."""
    by_day: dict[int, set[tuple[str, str, str, str]]] = {}
    for day, provider, account, source, kind in touched:
        by_day.setdefault(day, set()).add((provider, account, source, kind))
    plan = []
    for d0, d1 in _day_ranges(by_day):
        slices: set[tuple[str, str, str, str]] = set()
        for day in range(d0, d1, DAY_SECONDS):
            slices |= by_day.get(day, set())
        plan.append((d0, d1, sorted(slices)))
    return plan


def _rebuild_plan(conn: Connection, plan: _Plan) -> None:
    for d0, d1, slices in plan:
        _rebuild(conn, [(d0, d1)], slices)


def delete_by_source_ref(conn: Connection, ref: str, *, prefix: bool = False) -> int:
    """Delete the usage rows one file or connection wrote (``source_ref``), and their rollups.

    How an admin lets the next billed source count again for days this one billed (design
    rule 5): removing an import or a connection's data, never editing rows. ``prefix`` matches
    ``conn:<id>/`` (every run of one connection). Returns how many rows were deleted.
    """
    ref_col = USAGE.c.source_ref
    where = ref_col.startswith(ref, autoescape=True) if prefix else ref_col == ref
    epoch = type_coerce(USAGE.c.bucket_start, BigInteger)
    day = (
        (epoch - epoch % DAY_SECONDS)
        if conn.dialect.name == "sqlite"
        else func.date_trunc("day", USAGE.c.bucket_start, "UTC")
    )
    slice_cols = (USAGE.c.provider, USAGE.c.account, USAGE.c.source, USAGE.c.kind)
    rows = conn.execute(select(type_coerce(day, UTCDateTime()), *slice_cols).where(where).distinct()).all()
    deleted = conn.execute(delete(USAGE).where(where)).rowcount or 0
    touched = {(int(d.timestamp()), p, a, s, k) for d, p, a, s, k in rows}
    refresh_slices(conn, touched)
    return deleted


def rebuild_all_daily(conn: Connection, *, count: bool = True) -> int:
    """Rebuild every daily rollup from ``usage``; returns the number of days rebuilt.

    ``count=False`` leaves ``data_version`` alone: for migrations older than the table (0015).
    """
    row = conn.execute(text("SELECT MIN(bucket_start), MAX(bucket_start) FROM usage")).one()
    if row[0] is None:
        conn.execute(text("DELETE FROM usage_daily"))
        if count:
            bump_data_version(conn)
        return 0
    to_dt = UTCDateTime().process_result_value
    first: datetime = to_dt(row[0], conn.dialect)  # type: ignore[assignment]
    last: datetime = to_dt(row[1], conn.dialect)  # type: ignore[assignment]
    day = int(first.timestamp()) // DAY_SECONDS * DAY_SECONDS
    days = set(range(day, int(last.timestamp()) + 1, DAY_SECONDS))
    _rebuild(conn, _day_ranges(days), None)
    if count:
        _changed(conn, _day_ranges(days))
    return len(days)


__all__ = [
    "DATA_VERSION",
    "DAY_SECONDS",
    "HOURLY_DIRTY",
    "SLIM_DIRTY",
    "USAGE",
    "USAGE_DAILY",
    "USAGE_DAILY_SLIM",
    "USAGE_HOURLY",
    "AmountOverflow",
    "RowColumns",
    "UpsertResult",
    "bump_data_version",
    "data_version",
    "delete_by_source_ref",
    "rebuild_all_daily",
    "refresh_daily",
    "refresh_slices",
    "upsert",
    "upsert_columns",
    "upsert_records",
]
