"""Off-the-request-path recording: bounded queue, batch writer thread, JSONL spool, replay.

The request path only calls :meth:`Recorder.record`, which puts a small dict of primitives on a
bounded queue (about a microsecond). A writer thread takes batches (``proxy_batch_size`` events
or ``proxy_batch_interval_seconds``), prices them and inserts them into ``proxy_events``.

When the database is down or slow, traffic is never delayed (market-anchors §12.12):

* a failed batch is appended to the spool (``<data_dir>/proxy-spool/current.jsonl``, one JSON
  event per line, fsynced) and the writer stops trying the database for new batches (they go to
  the spool) until a probe succeeds;
* when the queue is full because a write hangs, :meth:`record` appends the event to the spool
  itself;
* the probe is the replay: ``current.jsonl`` is renamed to ``replay-<id>.jsonl`` and its events
  inserted in batches; the file is deleted only after every batch committed.

Exactly once: every event carries the id the proxy minted before forwarding, and inserts are
``ON CONFLICT (id) DO NOTHING``. A batch that committed but was also spooled (the commit's
acknowledgement was lost), or a replay interrupted half-way and repeated, cannot count twice
(market-anchors §12.13). On shutdown the queue is drained to the database, or to the spool.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import uuid_utils
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine

from collector.core.pricing import PRICE_VERSION, estimate_request
from collector.core.sqltypes import MONEY_SCALE
from collector.proxy.models import PROXY_EVENTS

log = logging.getLogger(__name__)

Event = dict[str, Any]
#: Keys of an event as the request path builds it (primitives only: it may go to JSON as is).
EVENT_KEYS = (
    "id",
    "ts",
    "provider",
    "upstream",
    "endpoint",
    "method",
    "model",
    "status",
    "stream",
    "partial",
    "usage_known",
    "error",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "latency_ms",
    "ttfb_ms",
    "team",
    "project",
    "token_id",
    "api_key_fp",
    "service_tier",
    "response_id",
)


def new_event_id() -> str:
    """A time-ordered unique id (UUIDv7) minted before a request is forwarded."""
    return str(uuid_utils.uuid7())


def price_event(event: Event) -> tuple[Any, str, str]:
    """``(cost, basis, price_version)`` of one request, with long-context tiers (design.md "Pricing").

    A model missing from the price table, or a call whose usage is unknown, is ``unpriced``
    with no cost (never $0); :func:`collector.core.pricing.estimate_request` applies tiers.
    """
    if not event.get("usage_known") or not event.get("model"):
        return None, "unpriced", ""
    at = datetime.fromtimestamp(event["ts"], UTC)
    tokens = {
        "input_tokens": event["input_tokens"],
        "cache_read_tokens": event["cache_read_tokens"],
        "cache_write_5m_tokens": event["cache_write_5m_tokens"],
        "cache_write_1h_tokens": event["cache_write_1h_tokens"],
        "output_tokens": event["output_tokens"],
    }
    try:
        cost = estimate_request(event["provider"], event["model"], at, **tokens)
    except Exception:  # noqa: BLE001  (a pricing bug must not lose the event)
        log.warning("pricing failed for model %r; event recorded unpriced", event.get("model"))
        cost = None
    if cost is None:
        return None, "unpriced", ""
    return cost, "estimated", PRICE_VERSION


#: Column order of the compiled insert.
_COLUMNS = (*EVENT_KEYS, "hour", "cost", "basis", "price_version", "rolled_up", "ingested_at")


class _Inserter:
    """``INSERT ... ON CONFLICT (id) DO NOTHING`` compiled once per dialect.

    It runs through the driver's ``executemany`` on plain tuples: SQLAlchemy's per-row processing
    costs several times more, and this runs in the sidecar's process, where every microsecond
    competes with the request path.
    """

    def __init__(self, dialect: Dialect) -> None:
        insert = sqlite.insert if dialect.name == "sqlite" else postgresql.insert
        stmt = insert(PROXY_EVENTS).values({c: bindparam(c) for c in _COLUMNS})
        compiled = stmt.on_conflict_do_nothing(index_elements=["id"]).compile(dialect=dialect)
        self.sql = str(compiled)
        names = [str(p) for p in (compiled.positiontup or [])] if compiled.positional else list(_COLUMNS)
        self.order = [_COLUMNS.index(n) for n in names]
        self.positional = compiled.positional
        self.sqlite = dialect.name == "sqlite"

    def params(self, events: list[Event], now: datetime) -> list[Any]:
        """Driver parameters, converted here as :mod:`collector.core.sqltypes` would.

        Epoch seconds and scaled integers on SQLite, aware datetimes and decimals on PostgreSQL,
        without the per-value call overhead of the type decorators.
        """
        rows: list[Any] = []
        stamp: Any = int(now.timestamp()) if self.sqlite else now
        for e in events:
            cost, basis, version = price_event(e)
            row = [e[k] for k in EVENT_KEYS]
            hour: Any
            if self.sqlite:
                ts = int(e["ts"])
                row[1], hour = ts, ts - ts % 3600
                if cost is not None:
                    cost = int(cost.scaleb(MONEY_SCALE).to_integral_value())
            else:
                row[1] = when = datetime.fromtimestamp(e["ts"], UTC)
                hour = when.replace(minute=0, second=0, microsecond=0)
            row += [hour, cost, basis, version, False, stamp]
            rows.append(tuple(row[i] for i in self.order) if self.positional else dict(zip(_COLUMNS, row, strict=True)))
        return rows


_INSERTERS: dict[str, _Inserter] = {}


def insert_events(engine: Engine, events: list[Event]) -> int:
    """Insert events, ignoring ids already present; returns how many were new."""
    if not events:
        return 0
    dialect = engine.dialect
    inserter = _INSERTERS.get(dialect.name)
    if inserter is None:
        inserter = _INSERTERS[dialect.name] = _Inserter(dialect)
    params = inserter.params(events, datetime.now(UTC))
    with engine.begin() as conn:
        result = conn.exec_driver_sql(inserter.sql, params)
        # Both drivers sum the rows each execution changed; conflicts change none.
        return max(result.rowcount or 0, 0)


def _batches(items: Iterable[Event], size: int) -> Iterator[list[Event]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class Spool:
    """Append-only JSONL files of events that could not be written yet.

    The writer thread appends to ``current.jsonl`` (fsynced); the request path, when the queue is
    full, appends to ``overflow.jsonl`` (not fsynced). Two files with a lock each, so a request
    never waits for the writer's fsync.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.current = self.folder / "current.jsonl"
        self.overflow = self.folder / "overflow.jsonl"
        self._locks = {self.current: threading.Lock(), self.overflow: threading.Lock()}

    def append(self, events: Iterable[Event], *, sync: bool = True, overflow: bool = False) -> int:
        """Append events as JSON lines (fsynced unless ``sync`` is False); returns how many."""
        lines = [json.dumps(e, separators=(",", ":")) + "\n" for e in events]
        if not lines:
            return 0
        path = self.overflow if overflow else self.current
        with self._locks[path], open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        return len(lines)

    def size_bytes(self) -> int:
        """Bytes waiting in the spool (for ``/metrics``)."""
        total = 0
        for path in self.folder.glob("*.jsonl"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def pending(self) -> bool:
        """True when any spooled event waits for replay."""
        return self.size_bytes() > 0

    def _read(self, path: Path) -> list[Event]:
        events: list[Event] = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError:
                    # Only a line torn by a crash mid-write can be malformed; its event is lost.
                    log.warning("spool %s line %d is not valid JSON (torn write); skipped", path.name, number)
        return events

    def replay(self, write: Callable[[list[Event]], int], batch_size: int) -> int:
        """Write every spooled event with ``write``; files are deleted only once fully written.

        Raises whatever ``write`` raises; the files that were not finished stay for the next try.

        Returns:
            The number of events ``write`` reported as new.
        """
        for path, lock in self._locks.items():
            with lock:
                if path.exists() and path.stat().st_size > 0:
                    path.rename(self.folder / f"replay-{new_event_id()}.jsonl")
        written = 0
        for path in sorted(self.folder.glob("replay-*.jsonl")):
            for batch in _batches(self._read(path), batch_size):
                written += write(batch)
            path.unlink()
        return written


_STOP = object()


@dataclass
class _Job:
    every: float
    fn: Callable[[Engine], Any]
    last: float = float("-inf")


class Recorder:
    """The bounded queue and its writer thread.

    Args:
        engine: where ``proxy_events`` lives (None: spool only, e.g. when the database was
            unreachable at start; a later ``engine_factory`` call may supply it).
        spool: the spool for events the database could not take.
        queue_size: events held in memory before :meth:`record` spills to the spool.
        batch_size: events per insert.
        interval: seconds the writer waits for a batch to fill.
        retry_seconds: seconds between probes of a database that failed.
        periodic: ``(every_seconds, fn(engine))`` jobs run by the writer while the database is
            up (rollup, purge, token reload); a failing job is logged and retried next period.
    """

    def __init__(
        self,
        engine: Engine | None,
        spool: Spool,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        interval: float = 0.5,
        retry_seconds: float = 5.0,
        periodic: list[tuple[float, Callable[[Engine], Any]]] | None = None,
        engine_factory: Callable[[], Engine] | None = None,
    ) -> None:
        self.engine = engine
        self.spool = spool
        self.batch_size = batch_size
        self.interval = interval
        self.retry_seconds = retry_seconds
        self.periodic = [_Job(every, fn) for every, fn in (periodic or [])]
        self.engine_factory = engine_factory
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._db_ok = engine is not None
        self._next_probe = 0.0 if engine is None else time.monotonic()
        self._next_replay = 0.0
        self.received = 0
        self.written = 0
        self.spooled = 0
        self.spilled = 0

    # -- request path ---------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Queue an event; never blocks: a full queue spills the event to the spool."""
        self.received += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.spilled += 1
            try:
                self.spool.append((event,), sync=False, overflow=True)
            except OSError:
                log.error("proxy event lost: queue full and spool not writable")

    @property
    def db_ok(self) -> bool:
        """False while the database is failing (events go to the spool)."""
        return self._db_ok

    def depth(self) -> int:
        """Events waiting in memory."""
        return self._queue.qsize()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (replays any spool left by an earlier run first)."""
        self._thread = threading.Thread(target=self._run, name="proxy-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Drain the queue to the database (or the spool) and stop the writer."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, expected: int = 0, timeout: float = 10.0) -> bool:
        """Wait until ``expected`` events were received and every queued one written or spooled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received >= expected and self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    # -- writer thread --------------------------------------------------------------------------

    def _take(self) -> tuple[list[Event], bool]:
        batch: list[Event] = []
        stop = False
        deadline = time.monotonic() + self.interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(remaining, 0.0)) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.task_done()
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            batch, stop = self._take()
            if stop:
                batch += self._drain()
            if batch:
                self._write_or_spool(batch)
                for _ in batch:
                    self._queue.task_done()
            now = time.monotonic()
            if not self._db_ok:
                if now >= self._next_probe:
                    self._probe()
            else:
                # Events spilled while the database was slow (or left by an earlier run) are
                # replayed as soon as it answers; on shutdown one last time.
                if (stop or now >= self._next_replay) and self.spool.pending():
                    self._probe()
                self._next_replay = now + self.retry_seconds
                self._run_periodic()
            if stop:
                return

    def _drain(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is _STOP:
                self._queue.task_done()
            else:
                out.append(item)

    def _write_or_spool(self, batch: list[Event]) -> None:
        if self._db_ok and self.engine is not None:
            try:
                self.written += insert_events(self.engine, batch)
                return
            except Exception as exc:  # noqa: BLE001  (any database failure means: spool)
                self._mark_down(exc)
        try:
            self.spooled += self.spool.append(batch)
        except OSError as exc:
            log.error("proxy events lost: database down and spool not writable (%s)", type(exc).__name__)

    def _mark_down(self, exc: BaseException) -> None:
        if self._db_ok:
            log.warning("proxy database unavailable (%s); spooling events", type(exc).__name__)
        self._db_ok = False
        self._next_probe = time.monotonic() + self.retry_seconds

    def _probe(self) -> None:
        """Try the database again by replaying the spool; on success resume direct writes."""
        try:
            if self.engine is None and self.engine_factory is not None:
                self.engine = self.engine_factory()
            if self.engine is None:
                raise RuntimeError("no database engine")
            replayed = self.spool.replay(lambda b: insert_events(self.engine, b), self.batch_size)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            self._mark_down(exc)
            return
        self.written += replayed
        if not self._db_ok:
            log.info("proxy database back; replayed %d spooled event(s)", replayed)
        self._db_ok = True

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for job in self.periodic:
            if now - job.last < job.every or self.engine is None:
                continue
            job.last = now
            try:
                job.fn(self.engine)
            except Exception as exc:  # noqa: BLE001  (a failing job must not stop recording)
                log.warning("proxy background job %s failed: %s", getattr(job.fn, "__name__", "?"), type(exc).__name__)
