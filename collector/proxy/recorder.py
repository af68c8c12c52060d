"""Recording off the request path: the journal, the writer thread, the database insert.

The request path only calls :meth:`Recorder.record`, which appends the event to the spool's
active segment with one ``write()`` (:mod:`collector.proxy.spool`): a few microseconds, no
database, no fsync. So an event is on local disk before its response completes and survives the
process being killed.

The writer thread wakes every ``proxy_batch_interval_seconds``, seals the active segment, prices
the sealed segments' events, inserts them into ``proxy_events`` in batches and deletes each
segment once its rows are committed. When the database is down or slow, traffic is never
delayed (market-anchors §12.12): segments simply wait, and every ``retry_seconds`` the writer
tries again (the probe is the replay). On start it replays what an earlier run left; on a
graceful stop it commits everything written so far (or leaves it on disk for the next start).

Exactly once: every event carries the id the proxy minted before forwarding, and inserts are
``ON CONFLICT (id) DO NOTHING``. A segment that committed but whose deletion was cut short by a
crash, or a replay interrupted half-way and repeated, cannot count twice (market-anchors §12.13).

If the spool cannot be written at all (disk full, folder removed), events are held in memory,
``queue_size`` at most, and written straight to the database; beyond that they are counted as lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import uuid_utils
from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from collector.core.pricing import PRICE_VERSION, estimate_request
from collector.core.private import private_opener
from collector.core.sqltypes import MONEY_SCALE
from collector.proxy.committer import CommitFailed, WriterProcess
from collector.proxy.models import PROXY_EVENTS
from collector.proxy.spool import Spool, SpoolBusyError, encode

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
    "client_gone",
)
#: Values of keys an event may lack: spool lines written by an earlier version of the sidecar.
_DEFAULTS: dict[str, Any] = {"client_gone": False}


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
        tier = str(event.get("service_tier") or "")
        cost = estimate_request(event["provider"], event["model"], at, service_tier=tier, **tokens)
    except Exception:  # noqa: BLE001  (a pricing bug must not lose the event)
        log.warning("pricing failed for model %r; event recorded unpriced", event.get("model"))
        cost = None
    if cost is None:
        return None, "unpriced", ""
    return cost, "estimated", PRICE_VERSION


#: Who an event's estimated cost is charged to by the budget caps:
#: (token id, team, project, provider, key fingerprint).
CostScope = tuple[Any, Any, Any, Any, Any]
_ZERO = Decimal(0)


def event_costs(events: Iterable[Event], into: dict[CostScope, Decimal] | None = None) -> dict[CostScope, Decimal]:
    """Estimated cost of ``events`` summed per :data:`CostScope` (added to ``into`` when given).

    What the budget caps need from a committed batch, in a form that crosses a pipe cheaply: the
    writer's child returns these sums, so the serving process never holds or re-reads the events.
    Unpriced events add nothing; an event too malformed to price (it was set aside, not stored)
    is skipped rather than failing the whole segment.
    """
    sums: dict[CostScope, Decimal] = {} if into is None else into
    for event in events:
        try:
            cost, _, _ = price_event(event)
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if cost is None:
            continue
        get = event.get
        scope = (get("token_id"), get("team"), get("project"), get("provider"), get("api_key_fp"))
        sums[scope] = sums.get(scope, _ZERO) + cost
    return sums


#: Column order of the compiled insert.
_COLUMNS = (*EVENT_KEYS, "hour", "cost", "basis", "price_version", "rolled_up", "ingested_at")
_EVENT_VALUES = itemgetter(*EVENT_KEYS)


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
        self.pick = itemgetter(*self.order)  # a row's values in the driver's order, in C
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
            if len(e) < len(EVENT_KEYS):
                e = {**_DEFAULTS, **e}
            cost, basis, version = price_event(e)
            row = list(_EVENT_VALUES(e))
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
            rows.append(self.pick(row) if self.positional else dict(zip(_COLUMNS, row, strict=True)))
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


def _reason(exc: BaseException) -> str:
    """What a log line may say of a failure: its type's name, or what the writer's child named."""
    return exc.reason if isinstance(exc, CommitFailed) else type(exc).__name__


#: Failures that mean "the database is unavailable" (try again later), not "this event is bad".
_UNAVAILABLE = (OperationalError, InterfaceError)


def insert_batch(engine: Engine, batch: list[Event], rejected: list[Event]) -> int:
    """Insert a batch; an event the database refuses (not an outage) is set aside, not retried forever.

    Returns the rows newly inserted; refused events are appended to ``rejected``.
    """
    try:
        return insert_events(engine, batch)
    except _UNAVAILABLE:
        raise
    except (StatementError, LookupError, TypeError, ValueError):
        pass
    new = 0
    for event in batch:
        try:
            new += insert_events(engine, [event])
        except _UNAVAILABLE:
            raise
        except (StatementError, LookupError, TypeError, ValueError):
            rejected.append(event)
    return new


def rejected_path(segment: Path) -> Path:
    """Where a segment's refused events are kept, beside it in the spool folder."""
    return segment.with_name(f"rejected-{segment.stem}.json")


def store_batches(
    engine: Engine,
    batches: Iterable[list[Event]],
    set_aside: Path,
    on_batch: Callable[[list[Event]], Any] | None = None,
) -> tuple[int, int]:
    """Insert a segment's batches; returns ``(rows newly inserted, events set aside)``.

    Shared by the writer thread and the writer's child process (:mod:`collector.proxy.committer`),
    so both store, refuse and set aside events the same way. ``on_batch`` sees each committed batch.
    """
    rejected: list[Event] = []
    new = 0
    for batch in batches:
        new += insert_batch(engine, batch, rejected)
        if on_batch is not None:
            on_batch(batch)
    if rejected:
        with open(set_aside, "wb", opener=private_opener) as fh:  # 0600, like the journal it came from
            fh.write(b"".join(encode(e) for e in rejected))
    return new, len(rejected)


@dataclass
class _Job:
    every: float
    fn: Callable[[Engine], Any]
    last: float = float("-inf")


class Recorder:
    """The journal's writer thread, and :meth:`record` for the request path.

    Args:
        engine: where ``proxy_events`` lives (None: journal only, e.g. when the database was
            unreachable at start; a later ``engine_factory`` call may supply it).
        spool: the journal (opened by :meth:`start`, closed by :meth:`stop`).
        queue_size: events held in memory when the spool cannot be written.
        batch_size: events per insert.
        interval: seconds between the writer's rounds (how long an event waits for the database).
        retry_seconds: seconds between probes of a database that failed.
        periodic: ``(every_seconds, fn(engine))`` jobs run by the writer while the database is
            up (rollup, purge, token reload); a failing job is logged and retried next period.
        engine_factory: opens the database when ``engine`` is None.
        on_costs: called in the writer thread with the estimated cost of committed events per
            :data:`CostScope` (the budget caps add it up; a failure is logged, never stops recording).
        committer: commits sealed segments in a child process (:mod:`collector.proxy.committer`),
            which also sums their costs; None: the writer thread does both itself, from the events
            the request path left in memory. Closed by :meth:`stop`.
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
        on_costs: Callable[[dict[CostScope, Decimal]], Any] | None = None,
        committer: WriterProcess | None = None,
    ) -> None:
        self.engine = engine
        self.committer = committer
        self.on_costs = on_costs
        #: Whether the request path leaves each event's dict for the writer. Only the thread reads
        #: them (no JSON parse of the segment it sealed); with a child they would only be freed
        #: later, thousands at once, by the writer thread holding the interpreter lock.
        self._keep_events = committer is None
        self.spool = spool
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.interval = interval
        self.retry_seconds = retry_seconds
        self.periodic = [_Job(every, fn) for every, fn in (periodic or [])]
        self.engine_factory = engine_factory
        self._memory: deque[Event] = deque()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._settled_cond = threading.Condition()
        self._stopping = False
        self._db_ok = engine is not None
        self._next_probe = 0.0
        #: Events recorded (this run); journaled ones this run whose rows are committed.
        self.received = 0
        self.committed = 0
        #: Rows newly inserted (replays of rows already there do not count).
        self.written = 0
        #: Events the spool could not take: held in memory, or lost when memory was full too.
        self.spilled = 0
        self.lost = 0
        #: ``received`` as of the writer's last round: all of those are committed or on disk.
        self._settled = 0

    # -- request path ---------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Journal an event (one ``write()``); never blocks on the database, never raises."""
        try:
            self.spool.write(encode(event), event if self._keep_events else None)
        except OSError as exc:
            self._spill(event, exc)
        # Counted once written: the writer's round takes ``received`` as "all of these are in the
        # active segment (or in memory)" before it seals the segment.
        self.received += 1

    def _spill(self, event: Event, exc: OSError) -> None:
        if len(self._memory) >= self.queue_size:
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                log.error("proxy events lost (%d so far): spool not writable and memory full", self.lost)
            return
        if self.spilled == 0:
            log.error("proxy spool not writable (%s); holding events in memory", type(exc).__name__)
        self.spilled += 1
        self._memory.append(event)

    @property
    def db_ok(self) -> bool:
        """False while the database is failing (events wait in the spool)."""
        return self._db_ok

    def depth(self) -> int:
        """Events recorded by this run and not yet committed to the database."""
        return max(self.received - self.committed - self.lost, 0)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool and start the writer, whose first round replays what earlier runs left.

        Raises:
            SpoolBusyError: another process uses the spool folder.
        """
        self.spool.open()
        self._stopping = False
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="proxy-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit every recorded event (or leave it in the spool if the database is down) and stop."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        if self.committer is not None:
            self.committer.close()
        self.spool.close()

    def flush(self, expected: int = 0, timeout: float = 10.0) -> bool:
        """Wait until ``expected`` events were recorded and the writer has handled all of them.

        Handled: committed, or on disk waiting for the database to come back.
        """
        deadline = time.monotonic() + timeout
        with self._settled_cond:
            while not (self.received >= expected and self._settled >= self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()  # a round now instead of at the next interval
                self._settled_cond.wait(min(remaining, 0.05))
        return True

    # -- writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._next_wait())
            self._wake.clear()
            stopping = self._stopping
            self._round(final=stopping)
            if stopping:
                return

    def _next_wait(self) -> float:
        fsync = self.spool.fsync_seconds
        return min(self.interval, fsync) if fsync > 0 else self.interval

    def _round(self, *, final: bool = False) -> None:
        target = self.received  # every event recorded before this line is in the active segment
        now = time.monotonic()
        if self._db_ok or final or now >= self._next_probe:
            self._commit()
        if self._memory and not self._db_ok:
            self._memory_to_spool()
        self.spool.tick(now)
        with self._settled_cond:
            self._settled = max(self._settled, target)
            self._settled_cond.notify_all()
        if self._db_ok:
            self._run_periodic()

    def _commit(self) -> None:
        """Seal the active segment and commit every sealed one, then the in-memory events."""
        recovering = not self._db_ok
        before = self.written
        try:
            engine = self._engine()
            self.spool.rotate()
            for path in self.spool.sealed():
                self._commit_segment(engine, path)
            self._commit_memory(engine)
        except Exception as exc:  # noqa: BLE001  (any database failure means: keep the spool, retry)
            self._mark_down(exc)
            return
        if recovering:
            log.info("proxy database available; replayed %d spooled event(s)", self.written - before)
        self._db_ok = True

    def _engine(self) -> Engine:
        if self.engine is None and self.engine_factory is not None:
            self.engine = self.engine_factory()
        if self.engine is None:
            raise RuntimeError("no database engine")
        return self.engine

    def _commit_segment(self, engine: Engine, path: Path) -> None:
        if self.committer is not None:
            outcome = self.committer.commit(path, costs=self.on_costs is not None)
            new, rejected = outcome.new, outcome.rejected
            self._notify(outcome.costs)
        else:
            batches = self.spool.batches(path, self.batch_size)
            on_batch = (lambda batch: self._notify(event_costs(batch))) if self.on_costs is not None else None
            new, rejected = store_batches(engine, batches, rejected_path(path), on_batch)
        self.written += new
        if rejected:
            log.error(
                "%d proxy event(s) of %s could not be stored; set aside in %s",
                rejected,
                path.name,
                rejected_path(path).name,
            )
        self.committed += self.spool.done(path)

    def _commit_memory(self, engine: Engine) -> None:
        while self._memory:
            batch = [self._memory.popleft() for _ in range(min(self.batch_size, len(self._memory)))]
            try:
                self.written += insert_events(engine, batch)
            except Exception:
                self._memory.extendleft(reversed(batch))
                raise
            self.committed += len(batch)
            if self.on_costs is not None:
                self._notify(event_costs(batch))

    def _notify(self, costs: dict[CostScope, Decimal]) -> None:
        if self.on_costs is None or not costs:
            return
        try:
            self.on_costs(costs)
        except Exception as exc:  # noqa: BLE001  (a hook must not stop recording)
            log.warning("proxy cost hook failed: %s", type(exc).__name__)

    def _memory_to_spool(self) -> None:
        """While the database is down, move events held in memory to disk once the spool takes them."""
        batch = list(self._memory)
        try:
            self.spool.append(batch)
        except OSError:
            return
        for _ in batch:
            self._memory.popleft()

    def _mark_down(self, exc: BaseException) -> None:
        if self._db_ok:
            log.warning("proxy database unavailable (%s); spooling events", _reason(exc))
        self._db_ok = False
        self._next_probe = time.monotonic() + self.retry_seconds

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for job in self.periodic:
            if now - job.last < job.every or self.engine is None:
                continue
            job.last = now
            try:
                job.fn(self.engine)
            except Exception as exc:  # noqa: BLE001  (a failing job must not stop recording)
                log.warning("proxy background job %s failed: %s", getattr(job.fn, "__name__", "?"), _reason(exc))


__all__ = [
    "EVENT_KEYS",
    "CostScope",
    "Recorder",
    "Spool",
    "SpoolBusyError",
    "event_costs",
    "insert_events",
    "new_event_id",
    "price_event",
]
