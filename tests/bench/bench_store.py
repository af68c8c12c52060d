"""Store benchmark: upsert 1M generated rows into SQLite and PostgreSQL, then re-upsert them.

Baseline, same run, same rows: the database driver's own ``executemany`` of the same
``INSERT ... ON CONFLICT DO UPDATE`` statement on already-converted tuples (the practical
ceiling), batch by batch right beside ours into a database of its own. Our path additionally
hashes keys, converts values and keeps the daily rollup current. Records are generated batch
by batch outside the timed sections, so neither side holds a million objects and the figures
are the store's alone.

Environment: ``BENCH_ROWS`` (default 1,000,000), ``LLM_USAGE_TEST_DATABASE_URL`` for PostgreSQL
(skipped with a note when unset).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from collector.core.schema import UsageRecord
from collector.core.store import _writer, upsert
from collector.db.migrate import open_database
from collector.demo.synthetic import GeneratorConfig, generate, rows_per_hour_for

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
BATCH = 5000


def batches() -> Iterator[list[UsageRecord]]:
    """The same 1M records every run, in batches."""
    cfg = GeneratorConfig(days=365, rows_per_hour=rows_per_hour_for(ROWS) + 2, seed=2026)
    batch: list[UsageRecord] = []
    for rec in generate(cfg, limit=ROWS):
        batch.append(rec)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Timing:
    seconds: float = 0.0
    rows: int = 0
    rollup: float = 0.0
    #: Process CPU time of the same section: what another session's load disturbs less than wall time.
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class Baseline:
    """The driver's own ``executemany`` of each batch, run right beside ours (see :class:`TimedRecords`).

    Each batch goes to the baseline's database just after ours has written it, so both meet the
    same moment of a shared machine: run one after the other, a whole first write apart, the two had
    swung by a third against each other. Converting the records to tuples is not timed.
    """

    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.cursor = self.raw.cursor()
        self.writer = _writer(engine.dialect)
        self.now = datetime.now(UTC)
        self.timing = Timing()

    def write(self, batch: list[UsageRecord]) -> None:
        params = self.writer.rows(batch, self.now, set())  # conversion happens outside the timer
        started, started_cpu = time.perf_counter(), time.process_time()
        self.cursor.executemany(self.writer.sql, params)
        self.timing.seconds += time.perf_counter() - started
        self.timing.cpu += time.process_time() - started_cpu
        self.timing.rows += len(batch)

    def finish(self) -> Timing:
        try:
            self.raw.commit()
        finally:
            self.raw.close()
        return self.timing


class TimedRecords:
    """Yields the benchmark's records and keeps the time spent outside ours, to subtract.

    That is making and freeing the records, and the baseline's write of each batch. The
    baseline neither builds nor frees records in its timed sections, so neither does ours:
    each batch is held here until the store has let go of it (it asks for the next one), and
    freed in the subtracted section that generates the batch after (0.3 µs a row, timed as ours
    before).
    """

    def __init__(self, beside: Baseline) -> None:
        self.beside = beside
        self.excluded = 0.0
        self.excluded_cpu = 0.0
        self.rows = 0

    def __iter__(self) -> Iterator[UsageRecord]:
        source = batches()
        held: list[list[UsageRecord]] = []
        while True:
            started, started_cpu = time.perf_counter(), time.process_time()
            held = held[-1:]  # the batch before last: the store holds only the last one now
            if held:
                # The batch ours has just written (it asks for the next record only then). Written
                # to the baseline before ours instead, the batch's records came to ours warm and
                # ours ran 10-30 % faster (300k-row runs): this order favours the baseline.
                self.beside.write(held[-1])
            batch = next(source, None)
            self.excluded += time.perf_counter() - started
            self.excluded_cpu += time.process_time() - started_cpu
            if batch is None:
                return
            self.rows += len(batch)
            held.append(batch)
            yield from batch


def run_pair(engine: Engine, base_engine: Engine) -> tuple[Timing, Timing]:
    """Timed: one ``store.upsert`` call over the stream, as an import or a sync makes it
    (conversion, hashing, executemany in batches, one rollup rebuild at the end), minus the
    time spent generating the records and writing each batch to the baseline beside it."""
    baseline = Baseline(base_engine)
    stream = TimedRecords(baseline)
    try:
        with engine.begin() as conn:
            started, started_cpu = time.perf_counter(), time.process_time()
            result = upsert(conn, stream, batch_size=BATCH)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    finally:
        base = baseline.finish()
    ours = Timing(
        seconds=elapsed - stream.excluded,
        rows=stream.rows,
        rollup=result.rollup_seconds,
        cpu=cpu - stream.excluded_cpu,
    )
    return ours, base


def fresh_sqlite() -> Engine:
    path = os.path.join(tempfile.mkdtemp(prefix="bench-store-"), "usage.db")
    return open_database(url=f"sqlite:///{path}")


def fresh_postgres(base: str) -> tuple[Engine, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    sep = "&" if "?" in base else "?"
    return open_database(url=f"{base}{sep}options={quote(f'-csearch_path={schema}')}"), schema


def drop_schema(base: str, schema: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def report(backend: str, label: str, ours: Timing, base: Timing) -> None:
    ratio = ours.seconds / base.seconds if base.seconds else float("nan")
    cpu_ratio = ours.cpu / base.cpu if base.cpu else float("nan")
    print(
        f"{backend:<10} {label:<9} ours {ours.rate:>9,.0f} rows/s ({ours.seconds:6.1f} s)   "
        f"baseline executemany {base.rate:>9,.0f} rows/s ({base.seconds:6.1f} s)   ratio {ratio:4.2f}x   "
        f"(of ours: daily-rollup rebuild {ours.rollup:5.1f} s)\n"
        f"{'':<20} CPU: ours {ours.cpu:6.1f} s, baseline {base.cpu:6.1f} s, ratio {cpu_ratio:4.2f}x "
        "(process CPU time; PostgreSQL's own is in the server, not counted)",
        flush=True,
    )


def bench_backend(backend: str, make: object) -> None:
    engines = []
    ours_engine = make()  # type: ignore[operator]
    base_engine = make()  # type: ignore[operator]
    engines += [ours_engine, base_engine]
    report(backend, "first", *run_pair(ours_engine, base_engine))
    report(backend, "re-write", *run_pair(ours_engine, base_engine))
    for eng in engines:
        eng.dispose()


def main() -> None:
    print(f"upserting {ROWS:,} generated rows in batches of {BATCH} (generation not timed)")
    bench_backend("sqlite", fresh_sqlite)
    base = os.environ.get("LLM_USAGE_TEST_DATABASE_URL")
    if base:
        schemas: list[str] = []

        def make_pg() -> Engine:
            eng, schema = fresh_postgres(base)
            schemas.append(schema)
            return eng

        try:
            bench_backend("postgresql", make_pg)
        finally:
            for schema in schemas:
                drop_schema(base, schema)
    else:
        print("postgresql skipped: set LLM_USAGE_TEST_DATABASE_URL")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole benchmark process: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
