"""Import one billing export: the API the CLI and the dashboard's upload page call.

:func:`import_file` takes a path or a binary file object, detects the format from the header
(or is told), validates every row, and writes the file in **one transaction**: the usage rows
(through :func:`collector.core.ingest.ingest`, the one ingest path) and its ``import_files`` row
commit together or not at all, so a failed file leaves nothing half-imported. It stops reading
after 50 problems and reports each with file, line, column, value and rule.

Re-importing the same bytes (same SHA-256) is a no-op that says so. A newer export that
overlaps an older one updates rows through their natural keys instead of adding to them.
Rows of one file that share a natural key (e.g. two resources whose key columns coincide) are
*summed*, never allowed to overwrite each other: within a batch in memory, across batches by
reading the row back inside the same transaction.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from collector.core.ingest import (
    NO_HOOKS,
    CanonicalNames,
    Hooks,
    MergeError,
    add,
    ingest,
    ingest_columns,
    named_columns,
    prepare,
)
from collector.core.schema import UsageRecord
from collector.core.settings import Settings, get_settings
from collector.core.sqltypes import MONEY_SCALE
from collector.core.store import DAY_SECONDS, AmountOverflow, RowColumns, UpsertResult
from collector.query.billing import (
    BillingSource,
    DayBill,
    Overlap,
    add_money,
    decide,
    overlaps,
    preferences,
    read_coverage,
)
from importers import detect, get_importer
from importers.base import (
    BATCH_ROWS,
    ArrowColumns,
    BatchMapper,
    ColumnarFallback,
    CsvFile,
    FileFormatError,
    ImportContext,
    Importer,
    ImportIssue,
    Limits,
    TableFile,
    open_table,
)
from importers.log import ACCOUNT_SEPARATOR, FAILED, IMPORT_FILES, IMPORTED

if TYPE_CHECKING:  # pyarrow is imported when a file is read column-wise (about 45 MB of RSS)
    import pyarrow as pa

    from importers.columnar import ColumnarCsv

#: ``ImportResult.status`` values besides ``imported`` / ``failed`` (collector/imports.py).
DUPLICATE = "duplicate"
DRY_RUN = "dry_run"
Source = str | Path | IO[bytes]


@dataclass
class Totals:
    """What one (provider, model) pair of a file adds up to."""

    records: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    #: ``(basis, currency) -> amount``; billed and estimated money are never summed (design rule 5).
    cost: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    unpriced: int = 0


@dataclass
class ImportResult:
    """The outcome of importing (or dry-running) one file."""

    file: str
    status: str = FAILED
    importer: str = ""
    sha256: str = ""
    size: int = 0
    rows_read: int = 0
    records: int = 0
    skipped: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None
    totals: dict[tuple[str, str], Totals] = field(default_factory=dict)
    issues: list[ImportIssue] = field(default_factory=list)
    import_id: int | None = None
    message: str = ""
    #: Billing accounts the records were filed under (recorded in ``import_files.account``).
    accounts: set[str] = field(default_factory=set)
    #: Rows that repeat an earlier row of the file exactly (summed into it, as documented).
    duplicate_rows: int = 0
    #: Records that changed nothing already stored (e.g. this product's own export re-imported).
    unchanged: int = 0
    #: The file's billed money per provider account-day and source (for overlap checks).
    bills: dict[tuple[str, str, date], DayBill] = field(default_factory=dict, repr=False)
    #: Account-days this file and another billed source both bill, and which one counts.
    overlaps: list[Overlap] = field(default_factory=list)
    #: Whether the rows were read column-wise (``importers/columnar.py``) rather than row by row.
    columnar: bool = False

    @property
    def ok(self) -> bool:
        """True unless the file was refused."""
        return self.status != FAILED

    def summary(self) -> list[str]:
        """Human-readable lines: the headline, the period, then totals by provider and model."""
        lines = [(self.message or self.status).splitlines()[0]]  # the stored message repeats the overlaps
        if self.period_start and self.period_end:
            lines.append(f"  period {self.period_start:%Y-%m-%d %H:%M} → {self.period_end:%Y-%m-%d %H:%M} UTC")
        for (provider, model), t in sorted(self.totals.items()):
            money = ", ".join(f"{amount:,.4f} {cur} {basis}" for (basis, cur), amount in sorted(t.cost.items()))
            if t.unpriced:
                money = ", ".join(filter(None, [money, f"{t.unpriced} unpriced"]))
            lines.append(
                f"  {provider:<14} {model or '(no model)':<36} {t.records:>9,} rows  "
                f"in {t.input_tokens:>14,}  out {t.output_tokens:>13,}  {money}"
            )
        if self.duplicate_rows:
            lines.append(
                f"  {self.duplicate_rows:,} row(s) repeat an earlier row exactly and were summed into it "
                "(a file concatenated twice shows up here)"
            )
        lines += [f"  overlap: {o.describe()}" for o in self.overlaps]
        lines += [f"  {issue}" for issue in self.issues]
        return lines


def _fingerprint(rec: UsageRecord) -> int:
    """What two rows of one key must share to be the same row twice (money, counts, details)."""
    return hash(
        (
            rec.cost,
            rec.currency,
            rec.basis,
            rec.quantity,
            rec.quantity_unit,
            rec.input_tokens,
            rec.cache_read_tokens,
            rec.cache_write_5m_tokens,
            rec.cache_write_1h_tokens,
            rec.output_tokens,
            rec.reasoning_tokens,
            rec.requests,
            rec.details,
        )
    )


class _Rollback(Exception):
    """Raised inside the transaction to undo a file that has problems."""


class _Duplicate(Exception):
    """Raised inside the transaction to undo a file found, once hashed, to be imported before."""

    def __init__(self, previous: dict[str, Any]) -> None:
        super().__init__("already imported")
        self.previous = previous


# -- opening the source -------------------------------------------------------------------------


@contextlib.contextmanager
def _open_source(source: Source, name: str | None) -> Iterator[tuple[IO[bytes], str]]:
    """A seekable binary file and its display name, from a path or a file object."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as fp:
            yield fp, name or path.name
        return
    display = name or Path(str(getattr(source, "name", "") or "upload.csv")).name
    seekable = getattr(source, "seekable", None)
    if callable(seekable) and seekable():
        yield source, display
        return
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
        shutil.copyfileobj(source, spool)
        yield spool, display  # type: ignore[misc]


def limits(settings: Settings) -> Limits:
    """What one file may cost to read, from the ``LLM_USAGE_IMPORT_MAX_*`` settings."""
    return Limits(settings.import_max_bytes, settings.import_max_line_length, settings.import_max_rows)


def _digest(fp: IO[bytes]) -> tuple[str, int]:
    fp.seek(0)
    sha = hashlib.sha256()
    size = 0
    while chunk := fp.read(1 << 20):
        sha.update(chunk)
        size += len(chunk)
    fp.seek(0)
    return sha.hexdigest(), size


def _file_size(fp: IO[bytes]) -> int | None:
    """The size of a file on disk read through a descriptor (a path), else None (an upload).

    Only plain disk files qualify: a spooled upload would be written to disk by ``fileno()``.
    """
    if not isinstance(fp, io.BufferedReader | io.FileIO):
        return None
    try:
        st = os.fstat(fp.fileno())
    except (OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class _Hashing:
    """A file's SHA-256 and size, hashed in a thread while its rows are read and written.

    Hashing the 450 MB bench file first took 0.3 to 0.7 s before its first row was read, yet
    the hash is needed only to refuse bytes imported before, and bytes of a size no earlier
    import had cannot be those. For such a file the hash runs beside the import, with
    ``os.preadv`` on the reader's own descriptor (which leaves the reader's offset where it
    is); OpenSSL's SHA-256 lets go of the GIL for each chunk, so it runs on a core the import
    leaves idle. The import waits for it inside its transaction, before the commit.
    """

    CHUNK = 1 << 20

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._stop = False
        self._out: tuple[str, int] | OSError | None = None
        self._thread = threading.Thread(target=self._run, name="import-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sha, offset = hashlib.sha256(), 0
        buffer = bytearray(self.CHUNK)
        view = memoryview(buffer)
        try:
            while not self._stop and (n := os.preadv(self._fd, [buffer], offset)):
                sha.update(view[:n])
                offset += n
            self._out = (sha.hexdigest(), offset)
        except OSError as exc:
            self._out = exc

    def result(self) -> tuple[str, int]:
        """``(hex digest, bytes hashed)``, once the thread is done; its read error is raised here."""
        self._thread.join()
        if isinstance(self._out, OSError):
            raise self._out
        if self._out is None:
            raise RuntimeError("the file's hash was stopped before it finished")
        return self._out

    def stop(self) -> None:
        """End the thread early (the import failed) and wait for it: the descriptor closes next."""
        self._stop = True
        self._thread.join()


def _settle(result: ImportResult, hashing: _Hashing | None) -> None:
    """Put the file's hash into ``result`` once it is known (a no-op when it was taken first)."""
    if hashing is not None:
        result.sha256, result.size = hashing.result()


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return ""


# -- the run over one file ----------------------------------------------------------------------


class _Run:
    """Streams one file's rows into merged, priced records and keeps the result's tallies."""

    def __init__(self, importer: Importer, csv_file: TableFile, ctx: ImportContext, result: ImportResult) -> None:
        self.importer = importer
        self.csv = csv_file
        self.ctx = ctx
        self.result = result
        #: Key -> fingerprint of the key's first row, to tell exact repeats from other rows of one key.
        self.seen: dict[bytes, int] = {}
        #: Rows whose key was already flushed in an earlier batch: summed in after the main pass.
        self.late: dict[bytes, UsageRecord] = {}

    def records(self) -> Iterator[UsageRecord]:
        """Every distinct record of the file, in batches; stops yielding at the first problem."""
        ctx, result, importer = self.ctx, self.result, self.importer
        mapper = importer.row_mapper(importer.bind(self.csv.header), ctx)
        width = len(self.csv.header)
        pending: dict[bytes, UsageRecord] = {}
        seen, late = self.seen, self.late
        for lines, rows in self.csv.batches(BATCH_ROWS):
            result.rows_read += len(rows)
            records, rec_lines, skipped = importer.map_batch(mapper, lines, rows, width, ctx)
            result.skipped += skipped
            if ctx.issues:
                if ctx.full:
                    return
                continue  # keep validating; nothing more will be written
            for rec, line in zip(records, rec_lines, strict=True):
                key = rec.record_key
                try:
                    first = seen.get(key)
                    if first is None:
                        pending[key] = rec
                        seen[key] = _fingerprint(rec)
                        continue
                    result.duplicate_rows += first == _fingerprint(rec)
                    if key in pending:
                        pending[key] = add(pending[key], rec)
                    else:
                        late[key] = add(late[key], rec) if key in late else rec
                except MergeError as exc:
                    ctx.issue(line, exc.column, exc.value, exc.rule)
            if ctx.issues:
                continue
            if len(pending) >= BATCH_ROWS:
                yield from pending.values()
                pending = {}
        if not ctx.issues:
            yield from pending.values()

    def write(self, conn: Connection) -> UpsertResult:
        """Ingest the file's records in the caller's transaction."""
        written = ingest(conn, self.records(), on_record=self.tally)
        ingest(conn, self.late_records(), additive=True, on_record=self.tally_late)
        return written

    def dry(self) -> None:
        """Name, price and total the file's records without writing them."""
        for _ in prepare(self.records(), self.tally):
            pass
        for _ in prepare(self.late_records(), self.tally_late):
            pass

    def late_records(self) -> list[UsageRecord]:
        """Rows whose key an earlier batch already wrote: they are added to that row."""
        return list(self.late.values())

    def tally(self, rec: UsageRecord) -> None:
        """Count a priced record of the file in the result's totals."""
        self._tally(rec, count=True)

    def tally_late(self, rec: UsageRecord) -> None:
        """Add a late duplicate's tokens and money to the totals (its row is already counted)."""
        self._tally(rec, count=False)

    def _tally(self, rec: UsageRecord, *, count: bool) -> None:
        result = self.result
        if rec.basis == "billed":
            add_money(result.bills, rec, BillingSource(rec.source, rec.kind), rec.bucket_start.date())
        t = result.totals.get((rec.provider, rec.model))
        if t is None:
            t = result.totals[(rec.provider, rec.model)] = Totals()
        if count:
            t.records += 1
            result.records += 1
        t.input_tokens += rec.input_tokens
        t.output_tokens += rec.output_tokens
        t.requests += rec.requests
        if rec.cost is None:
            t.unpriced += 1
        else:
            key = (rec.basis, rec.currency)
            t.cost[key] = t.cost.get(key, Decimal(0)) + rec.cost
        result.accounts.add(rec.account)
        if result.period_start is None or rec.bucket_start < result.period_start:
            result.period_start = rec.bucket_start
        if result.period_end is None or rec.bucket_end > result.period_end:
            result.period_end = rec.bucket_end


class _ColumnarRun(_Run):
    """The same run over Arrow batches mapped column-wise (``importers/columnar.py``).

    Rows are written as :class:`RowColumns` through :func:`ingest_columns`. Rows of one file that
    share a natural key (summed by the row path) raise :class:`ColumnarFallback`, like any value
    the columnar mapper cannot map: the import then runs again on the row path.
    """

    def __init__(
        self,
        importer: Importer,
        csv_file: TableFile,
        ctx: ImportContext,
        result: ImportResult,
        reader: ColumnarCsv,
        mapper: BatchMapper,
    ) -> None:
        super().__init__(importer, csv_file, ctx, result)
        self.reader, self.mapper = reader, mapper
        #: The first 8 bytes of every row's key, checked for repeats once the file is read (a set
        #: of a million ``bytes`` would take 80 MB). A repeat rolls the write back and the row path
        #: sums the rows (two different keys sharing 8 bytes, odds about 1 in 10^7 for a million
        #: rows, only cost that detour).
        self.keys: list[pa.Array] = []
        result.columnar = True

    def batches(self) -> Iterator[RowColumns]:
        """The file's rows as columns, batch by batch; raises at the end if two rows share a key."""
        result, keys = self.result, self.keys
        max_rows = self.csv.limits.max_rows
        for batch in self.reader.batches():
            result.rows_read += batch.num_rows
            if max_rows and result.rows_read > max_rows:
                raise ColumnarFallback("more rows than the limit")
            mapped = self.mapper(batch)
            result.skipped += mapped.skipped
            parts = [mapped.columns, RowColumns.from_records(mapped.records) if mapped.records else None]
            for part in parts:
                if part is None:
                    continue
                keys.append(_key_prefixes(part.keys))
                yield part
        result.rows_read += self.reader.blank_rows
        if max_rows and result.rows_read > max_rows:
            raise ColumnarFallback("more rows than the limit")
        if keys and _repeats(keys):
            raise ColumnarFallback("rows that share a natural key")  # the row path sums them

    def write(self, conn: Connection) -> UpsertResult:
        """Ingest the file's columns in the caller's transaction."""
        return ingest_columns(conn, self.batches(), on_batch=self.tally_columns)

    def dry(self) -> None:
        """Name and total the file's columns without writing them."""
        names = CanonicalNames()
        for batch in self.batches():
            self.tally_columns(named_columns(batch, names))

    def tally_columns(self, batch: RowColumns) -> None:
        """Count a named batch in the result's totals, as :meth:`tally` counts each of its records."""
        import pyarrow as pa

        result = self.result
        n = batch.size
        starts = batch.start_ts
        # Columns the mapper still holds as Arrow arrays are taken as they are (ArrowColumns).
        arrow: dict[str, Any] = batch.arrow if isinstance(batch, ArrowColumns) else {}
        # Only columns that vary are grouped by; a shared value (one currency, one account) is
        # the same in every group. Money is summed as decimals: scaled 64-bit integers could overflow.
        dims = ("provider", "model", "account", "currency", "source", "kind", "basis")
        shared = {name: batch.values[name] for name in dims if not isinstance(batch.values[name], list)}
        columns: dict[str, Any] = {name: arrow.get(name, batch.values[name]) for name in dims if name not in shared}
        columns["day"] = _days(arrow.get("start_ts"), starts)
        for name, field_name in (("input", "input_tokens"), ("output", "output_tokens"), ("requests", "requests")):
            value = batch.values[field_name]
            if field_name in arrow:
                columns[name] = arrow[field_name]
            elif isinstance(value, list):
                columns[name] = pa.array(value, pa.int64())
            else:
                columns[name] = pa.repeat(pa.scalar(value, pa.int64()), n)
        cost = (
            arrow["cost"]
            if "cost" in arrow
            else pa.array(batch.cost if isinstance(batch.cost, list) else [batch.cost] * n, pa.int64())
        )
        columns["cost"] = cost.cast(pa.decimal128(38, 0))
        sums = [(name, "sum") for name in ("input", "output", "requests", "cost")]
        keys = [name for name in columns if name not in ("input", "output", "requests", "cost")]
        groups = pa.table(columns).group_by(keys).aggregate([*sums, ("cost", "count"), ("input", "count")])
        for g in groups.to_pylist():
            g.update(shared)
            t = result.totals.get((g["provider"], g["model"]))
            if t is None:
                t = result.totals[(g["provider"], g["model"])] = Totals()
            rows = g["input_count"]
            t.records += rows
            result.records += rows
            t.input_tokens += g["input_sum"]
            t.output_tokens += g["output_sum"]
            t.requests += g["requests_sum"]
            t.unpriced += rows - g["cost_count"]
            if g["cost_count"]:
                amount = Decimal(g["cost_sum"]).scaleb(-MONEY_SCALE)
                key = (g["basis"], g["currency"])
                t.cost[key] = t.cost.get(key, Decimal(0)) + amount
                if g["basis"] == "billed":
                    group = _Group(g["provider"], g["account"], g["currency"], amount)
                    day = datetime.fromtimestamp(g["day"], UTC).date()
                    add_money(result.bills, group, BillingSource(g["source"], g["kind"]), day)
            result.accounts.add(g["account"])
        first = datetime.fromtimestamp(min(starts), UTC)
        last = datetime.fromtimestamp(max(batch.end_ts), UTC)
        if result.period_start is None or first < result.period_start:
            result.period_start = first
        if result.period_end is None or last > result.period_end:
            result.period_end = last


def _days(starts: pa.Array | None, start_ts: list[int]) -> pa.Array:
    """Each row's UTC day (epoch seconds of its midnight), from its ``start_ts``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if starts is None:
        return pa.array([t - t % DAY_SECONDS for t in start_ts], pa.int64())
    # floor_temporal floors toward the past, as t - t % DAY_SECONDS does (also before 1970).
    return pc.floor_temporal(starts.cast(pa.timestamp("s")), unit="day").cast(pa.int64())


def _key_prefixes(keys: list[bytes]) -> pa.Array:
    """The first 8 bytes of each 16-byte key as a ``uint64`` array, cut by Arrow from the joined keys.

    Unpacking them into Python integers first (``struct``) cost about 0.2 s per million rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = b"".join(keys)
    if len(joined) != 16 * len(keys):
        raise ValueError("record keys are 16 bytes")
    whole = pa.Array.from_buffers(pa.binary(16), len(keys), [None, pa.py_buffer(joined)])
    head = pc.binary_slice(whole, 0, 8)
    return pa.Array.from_buffers(pa.uint64(), len(keys), [None, head.buffers()[1]], offset=head.offset)


def _repeats(chunks: list[pa.Array]) -> bool:
    """Whether any value of the ``uint64`` chunks occurs twice (sorted, then compared with its neighbour).

    The values are copied once into one NumPy array and sorted in place: Arrow's sort returns
    indices and then a sorted copy, three arrays of the file's size at once, which made the
    end of the 1M-row import its peak of memory (about 16 MB above the rest of it).
    """
    import numpy as np

    values = np.concatenate([chunk.to_numpy(zero_copy_only=True) for chunk in chunks])
    values.sort()
    return bool(len(values) > 1 and (values[1:] == values[:-1]).any())


@dataclass(frozen=True)
class _Group:
    """One group's billed money, shaped as :func:`add_money` reads a record."""

    provider: str
    account: str
    currency: str
    cost: Decimal


def _columnar_run(
    importer: Importer, csv_file: TableFile, fp: IO[bytes], ctx: ImportContext, result: ImportResult
) -> _ColumnarRun | None:
    """A columnar run when the importer maps Arrow batches and the file is a CSV Arrow reads alike."""
    if not isinstance(csv_file, CsvFile):
        return None
    mapper = importer.columnar_mapper(importer.bind(csv_file.header), ctx)
    if mapper is None:
        return None
    from importers.columnar import ColumnarCsv

    try:
        reader = ColumnarCsv(csv_file, fp)
    except ColumnarFallback:
        return None
    return _ColumnarRun(importer, csv_file, ctx, result, reader, mapper)


# -- the public API -----------------------------------------------------------------------------


def import_file(
    source: Source,
    *,
    importer: str | None = None,
    dry_run: bool = False,
    account: str | None = None,
    engine: Engine | None = None,
    settings: Settings | None = None,
    who: str | None = None,
    keep_all: bool | None = None,
    name: str | None = None,
    force: bool = False,
    hooks: Hooks = NO_HOOKS,
    columnar: bool = True,
) -> ImportResult:
    """Import one billing export, whole or not at all.

    Args:
        source: a path, or a binary file object (an upload); its ``name`` is shown in messages.
        importer: a registry name (``focus``, ``gcp_billing``, ...); detected from the header if None.
        dry_run: validate and total everything, write nothing; with an ``engine`` it is read to say which
            account-days the file would share with other billed sources.
        account: label stored as every record's ``account`` instead of the file's billing account.
        engine: the database; by default the configured one (migrated on open).
        settings: defaults to :func:`collector.core.settings.get_settings`.
        who: recorded as ``imported_by``; defaults to the OS user.
        keep_all: keep every service, not only AI ones (default from settings).
        name: display name overriding the path's or file object's.
        force: import even if the same bytes were imported before (e.g. with other options);
            rows are upserted by natural key, so nothing is counted twice.
        hooks: what the application runs after the rows were stored (budget evaluation).
        columnar: read the file with the columnar reader when its importer and shape allow
            (``False``: always row by row; the stored rows are the same either way).

    Returns:
        The result: status ``imported``, ``duplicate``, ``dry_run`` or ``failed`` (then ``issues``
        names file, line, column, value and rule of up to 50 problems).
    """
    settings = settings or get_settings()
    with _open_source(source, name) as (fp, display):
        if not dry_run and engine is None:
            from collector.db.migrate import open_database

            engine = open_database(settings)
        hashing: _Hashing | None = None
        size = _file_size(fp)
        if size is not None and (force or engine is None or not _size_seen(engine, size)):
            hashing, sha = _Hashing(fp.fileno()), ""  # cannot be a duplicate until hashed: see _Hashing
        else:
            sha, size = _digest(fp)
            if engine is not None and not force:
                with engine.connect() as conn:
                    previous = _previous_import(conn, sha)
                if previous is not None:
                    return _duplicate(display, sha, size, previous)
        result = ImportResult(file=display, sha256=sha, size=size or 0)
        try:
            ctx = ImportContext(
                file=display,
                account=account or None,
                keep_all=settings.import_keep_all_services if keep_all is None else keep_all,
                ai_services=frozenset(s.strip().lower() for s in settings.import_ai_services.split(",") if s.strip()),
            )
            try:
                csv_file = open_table(fp, display, limits(settings))
                chosen = get_importer(importer) if importer else detect(csv_file.header)
                if missing := chosen.missing(csv_file.header):
                    raise FileFormatError(
                        f"not a {chosen.name} file: missing required column(s) {', '.join(missing)}",
                        line=csv_file.header_line,
                    )
            except FileFormatError as exc:
                ctx.issue(exc.line, exc.column, exc.value, exc.rule)
                _settle(result, hashing)
                return _refuse(engine, result, ctx, "", account, who, dry_run)
            result.importer = chosen.name
            ctx.decimal_comma = csv_file.decimal_comma
            fresh = replace(ctx, issues=[], _dates={})
            attempt = _columnar_run(chosen, csv_file, fp, ctx, result) if columnar else None
            run: _Run | None = attempt
            if attempt is not None:
                try:
                    if dry_run:
                        return _dry_run(attempt, result, ctx, csv_file, engine, hashing)
                    assert engine is not None
                    result = _write(engine, attempt, result, ctx, csv_file, account, who, hashing, force)
                except ColumnarFallback:
                    attempt.reader.close()  # Arrow's reading thread lets go of the file before the row path reads it
                    run = None  # nothing was written: the attempt's transaction rolled back
                    result = ImportResult(file=display, sha256=sha, size=size or 0, importer=chosen.name)
                    ctx = fresh
                    csv_file = open_table(fp, display, limits(settings))
            if run is None:
                run = _Run(chosen, csv_file, ctx, result)
                if dry_run:
                    return _dry_run(run, result, ctx, csv_file, engine, hashing)
                assert engine is not None
                result = _write(engine, run, result, ctx, csv_file, account, who, hashing, force)
        finally:
            if hashing is not None:
                hashing.stop()  # before the descriptor it reads closes
    if result.status == IMPORTED:
        assert engine is not None
        hooks.ingested(engine, settings)
    return result


def _duplicate(display: str, sha: str, size: int, previous: dict[str, Any]) -> ImportResult:
    """The result for bytes imported before: nothing was written."""
    result = ImportResult(file=display, sha256=sha, size=size, status=DUPLICATE, import_id=previous["id"])
    result.importer, result.records = previous["importer"], previous["rows"]
    result.message = (
        f"{display}: already imported as import #{previous['id']} on "
        f"{previous['imported_at']:%Y-%m-%d %H:%M} UTC ({previous['rows']:,} rows); nothing to do"
    )
    return result


def _dry_run(
    run: _Run,
    result: ImportResult,
    ctx: ImportContext,
    csv_file: TableFile,
    engine: Engine | None,
    hashing: _Hashing | None,
) -> ImportResult:
    try:
        run.dry()
    except FileFormatError as exc:
        ctx.issue(exc.line, exc.column, exc.value, exc.rule)
    _settle(result, hashing)
    _check_not_empty(result, ctx, csv_file)
    if ctx.issues:
        return _refuse(None, result, ctx, result.importer, None, None, True)
    if engine is not None:
        with engine.connect() as conn:
            result.overlaps = _file_overlaps(conn, result, written=False)
    result.status = DRY_RUN
    result.message = f"{result.file}: dry run, nothing written — {_headline(result)}"
    return result


def _write(
    engine: Engine,
    run: _Run,
    result: ImportResult,
    ctx: ImportContext,
    csv_file: TableFile,
    account: str | None,
    who: str | None,
    hashing: _Hashing | None = None,
    force: bool = False,
) -> ImportResult:
    """Write the run in one transaction, or nothing: a file with problems is rolled back and refused.

    A file hashed beside the import (:class:`_Hashing`) is checked against earlier imports
    here, before the commit, and rolled back as a duplicate if it matches one.
    """
    try:
        with engine.begin() as conn:
            pk = conn.execute(
                insert(IMPORT_FILES).values(_file_row(result, result.importer, account, who, IMPORTED, ""))
            ).inserted_primary_key
            assert pk is not None
            file_id = int(pk[0])
            ctx.source_ref = f"file:{file_id}"
            try:
                written = run.write(conn)
                result.unchanged = written.records - written.changed
            except FileFormatError as exc:
                ctx.issue(exc.line, exc.column, exc.value, exc.rule)
            except AmountOverflow as exc:
                ctx.issue(0, "cost", "", str(exc))
            _check_not_empty(result, ctx, csv_file)
            _settle(result, hashing)
            if ctx.issues:
                raise _Rollback
            if hashing is not None and not force and (previous := _previous_import(conn, result.sha256)):
                raise _Duplicate(previous)
            result.overlaps = _file_overlaps(conn, result, written=True)
            result.import_id = file_id
            result.status = IMPORTED
            result.message = f"{result.file}: imported as import #{file_id} — {_headline(result)}"
            if result.overlaps:
                result.message += "\n" + "\n".join(f"overlap: {o.describe()}" for o in result.overlaps)
            conn.execute(
                update(IMPORT_FILES)
                .where(IMPORT_FILES.c.id == file_id)
                .values(
                    sha256=result.sha256,
                    size=result.size,
                    rows=result.records,
                    rows_read=result.rows_read,
                    period_start=result.period_start,
                    period_end=result.period_end,
                    account=_accounts(result, account),
                    message=result.message,
                )
            )
    except _Rollback:
        result.records = 0
        return _refuse(engine, result, ctx, result.importer, account, who, False)
    except _Duplicate as dup:
        return _duplicate(result.file, result.sha256, result.size, dup.previous)
    return result


def _accounts(result: ImportResult, account: str | None) -> str:
    """``import_files.account``: the ``--account`` label, else the billing accounts of the rows.

    ``llm-usage status`` lists the newest imported period per importer and account from it
    (:data:`importers.log.ACCOUNT_SEPARATOR` separates several accounts of one file).
    """
    if account:
        return account[:255]
    return ACCOUNT_SEPARATOR.join(sorted(a for a in result.accounts if a))[:255]


def _check_not_empty(result: ImportResult, ctx: ImportContext, csv_file: TableFile) -> None:
    if result.rows_read == 0 and not ctx.issues:
        ctx.issue(csv_file.header_line, "", "", "the file has a header but no data rows")


def _headline(result: ImportResult) -> str:
    text = f"{result.rows_read:,} rows read, {result.records:,} usage records ({result.importer})"
    if result.unchanged and result.unchanged == result.records:
        text += "; every record was already stored with the same values: nothing added"
    elif result.unchanged:
        text += f"; {result.unchanged:,} of them were already stored with the same values"
    if result.skipped:
        text += f", {result.skipped:,} rows of non-AI services skipped (--all-services keeps them)"
    return text


def _refuse(
    engine: Engine | None,
    result: ImportResult,
    ctx: ImportContext,
    importer: str,
    account: str | None,
    who: str | None,
    dry_run: bool,
) -> ImportResult:
    """Mark the result failed and, unless dry-running, record the refusal (no usage rows)."""
    result.status = FAILED
    result.issues = list(ctx.issues)
    more = " (stopped after 50)" if len(result.issues) >= 50 else ""
    result.message = f"{result.file}: refused, nothing imported — {len(result.issues)} problem(s){more}"
    result.totals = {}
    result.records = 0
    if engine is not None and not dry_run:
        text = "\n".join([result.message, *(str(i) for i in result.issues[:20])])
        with engine.begin() as conn:
            conn.execute(insert(IMPORT_FILES).values(_file_row(result, importer, account, who, FAILED, text)))
    return result


def _file_row(
    result: ImportResult, importer: str, account: str | None, who: str | None, status: str, message: str
) -> dict[str, Any]:
    return {
        "name": result.file[:512],
        "sha256": result.sha256,
        "size": result.size,
        "importer": importer or "",
        "rows": 0,
        "rows_read": result.rows_read,
        "account": (account or "")[:255],
        "imported_by": (who if who is not None else _who())[:255],
        "imported_at": datetime.now(UTC),
        "status": status,
        "message": message,
    }


def _previous_import(conn: Connection, sha: str) -> dict[str, Any] | None:
    """The first successful import of these bytes, if any."""
    row = conn.execute(
        select(IMPORT_FILES.c.id, IMPORT_FILES.c.imported_at, IMPORT_FILES.c.rows, IMPORT_FILES.c.importer)
        .where(IMPORT_FILES.c.sha256 == sha, IMPORT_FILES.c.status == IMPORTED)
        .order_by(IMPORT_FILES.c.id)
        .limit(1)
    ).first()
    return dict(row._mapping) if row is not None else None


def _size_seen(engine: Engine, size: int) -> bool:
    """Whether an earlier successful import had exactly this many bytes (it may be the same file)."""
    with engine.connect() as conn:
        query = select(IMPORT_FILES.c.id).where(IMPORT_FILES.c.size == size, IMPORT_FILES.c.status == IMPORTED)
        return conn.execute(query.limit(1)).first() is not None


__all__ = ["DRY_RUN", "DUPLICATE", "ImportResult", "Totals", "import_file"]


def _file_overlaps(conn: Connection, result: ImportResult, *, written: bool) -> list[Overlap]:
    """Account-days the file bills that another billed source bills too, and which one counts.

    After a write the database holds the file's rows, so coverage is read as it now is; in a dry
    run the file's money stands in for its own sources' (it would replace or join their rows).
    """
    if not result.bills:
        return []
    days = [day for _, _, day in result.bills]
    since = datetime(min(days).year, min(days).month, min(days).day, tzinfo=UTC)
    until = datetime(max(days).year, max(days).month, max(days).day, tzinfo=UTC) + timedelta(days=1)
    providers = {p for p, _, _ in result.bills}
    accounts = {a for _, a, _ in result.bills}
    prefs = preferences(conn)
    coverage = read_coverage(conn, since, until, providers=providers, accounts=accounts, prefs=prefs)
    if not written:
        for key, bill in result.bills.items():
            target = coverage.setdefault(key, DayBill(bill.provider, bill.account, bill.day))
            for src, money in bill.money.items():
                target.money[src] = dict(money)
        coverage = decide(coverage.values(), prefs)
    mine = {src for bill in result.bills.values() for src in bill.money}
    return [o for o in overlaps(coverage) if o.counted in mine or mine.intersection(o.others)]
