"""The sync engine: one connection, every endpoint, page by page (design.md, "Sync engine").

For each endpoint of a connection's provider the engine plans a window
(:func:`plan`: high-water mark minus the lookback, or the back-fill on the first
sync), walks the provider's pages, and for every page, in **one transaction**, ingests the rows,
advances the high-water mark to the end of the buckets the pages so far complete, and updates the
``sync_runs`` row's progress. A crash at any instant therefore leaves the mark behind or at the
stored data, never ahead of it, and the next run re-fetches from there (upserts make that free).

A database lock keeps two collectors from syncing one connection at once: a PostgreSQL session
advisory lock (released by the server if the process dies), or on the embedded SQLite file an
OS file lock beside the database (released by the kernel if the process dies).

A 401/403 marks the connection ``auth_failed`` with the provider's message and stops at once;
the scheduler pauses it until the key is replaced or re-tested.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.engine import Connection as DBConnection
from sqlalchemy.engine import Engine, make_url

from collector.core.http import APIError, FatalAPIError, InsecureURLError, redact, trim_error
from collector.core.ingest import NO_HOOKS, Hooks, ingest
from collector.core.private import private_dir
from collector.core.schema import InvariantError
from collector.core.settings import Settings
from collector.core.store import AmountOverflow
from collector.core.windows import Window, floor
from collector.query.billing import Overlap, overlaps, read_coverage
from collector.sync.connections import (
    CONNECTIONS,
    STATUS_AUTH_FAILED,
    STATUS_FAILING,
    STATUS_OK,
    Connection,
    ConnectionsError,
    get_connection,
    mark_status,
    record_facts,
)
from collector.sync.tables import SyncRun, SyncState
from collector.sync.vault import Vault, VaultError, load_vault
from providers import get_provider
from providers.base import Context, Endpoint, Provider, ProviderError

log = logging.getLogger(__name__)
SYNC_STATE = SyncState.__table__  # type: ignore[attr-defined]
SYNC_RUNS = SyncRun.__table__  # type: ignore[attr-defined]
#: First half of the two-key PostgreSQL advisory lock: this name hashed with the schema, because
#: advisory locks are database-wide and connection ids repeat in every schema (two deployments,
#: or parallel test runs, in schemas of one database must not block each other). The second half
#: is the connection id.
_LOCK_SPACE = "llm-usage sync "
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext(:space || current_schema()), :id)")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtext(:space || current_schema()), :id)")
RUNNER = f"{socket.gethostname()}:{os.getpid()}"

#: ``progress(endpoint, window, through, pages, rows)`` after every stored page.
Progress = Callable[[str, Window, datetime | None, int, int], None]


@dataclass
class EndpointResult:
    """What one endpoint's part of a sync did."""

    endpoint: str
    run_id: int
    window: Window
    pages: int = 0
    rows: int = 0
    status: str = "running"
    error: str = ""


@dataclass
class SyncSummary:
    """What :func:`sync_connection` did; ``skipped`` says why nothing ran ('' when it ran)."""

    connection_id: int
    skipped: str = ""
    error: str = ""
    auth_failed: bool = False
    endpoints: list[EndpointResult] = field(default_factory=list)
    #: Account-days this connection's billed rows share with another billed source (design rule 5).
    overlaps: list[Overlap] = field(default_factory=list)

    @property
    def note(self) -> str:
        """Why nothing ran, in words ('' when it ran)."""
        if self.skipped == "locked":
            return f"skipped: another process is syncing connection {self.connection_id}"
        return f"skipped: {self.skipped}" if self.skipped else ""

    @property
    def ok(self) -> bool:
        """True when it ran and every endpoint succeeded."""
        return not self.skipped and not self.error and all(e.status == "ok" for e in self.endpoints)

    @property
    def rows(self) -> int:
        """Records stored by this sync (re-fetched ones included)."""
        return sum(e.rows for e in self.endpoints)


# -- locking ------------------------------------------------------------------------------------


def _lock_path(engine: Engine, settings: Settings, connection_id: int) -> Path:
    database = make_url(str(engine.url)).database
    if database and database != ":memory:":
        return Path(f"{database}.sync-{connection_id}.lock")
    return settings.data_dir / f"sync-{connection_id}.lock"


@contextmanager
def connection_lock(engine: Engine, settings: Settings, connection_id: int) -> Iterator[bool]:
    """Try to take the per-connection sync lock; yields whether it was taken (never waits)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as db:
            got = bool(db.execute(_TRY_LOCK, {"space": _LOCK_SPACE, "id": connection_id}).scalar())
            db.commit()
            try:
                yield got
            finally:
                if got:
                    db.execute(_UNLOCK, {"space": _LOCK_SPACE, "id": connection_id})
                    db.commit()
        return
    path = _lock_path(engine, settings, connection_id)
    private_dir(path.parent)
    fh: IO[str] = open(path, "a")  # noqa: SIM115  (held open for the lock's lifetime)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


# -- state and run log ----------------------------------------------------------------------------


def high_water(db: DBConnection, connection_id: int, endpoint: str) -> datetime | None:
    """The endpoint's high-water mark: every bucket before it is complete and stored."""
    return db.execute(
        select(SYNC_STATE.c.high_water).where(
            SYNC_STATE.c.connection_id == connection_id, SYNC_STATE.c.endpoint == endpoint
        )
    ).scalar()


def _advance(db: DBConnection, connection_id: int, endpoint: str, through: datetime, now: datetime) -> None:
    """Move the mark forward to ``through`` (never back), in the caller's transaction."""
    current = high_water(db, connection_id, endpoint)
    if current is None:
        db.execute(
            insert(SYNC_STATE).values(
                connection_id=connection_id, endpoint=endpoint, high_water=through, updated_at=now
            )
        )
    elif through > current:
        db.execute(
            update(SYNC_STATE)
            .where(SYNC_STATE.c.connection_id == connection_id, SYNC_STATE.c.endpoint == endpoint)
            .values(high_water=through, updated_at=now)
        )


def _start_run(engine: Engine, conn: Connection, endpoint: str, window: Window) -> int:
    with engine.begin() as db:
        result = db.execute(
            insert(SYNC_RUNS).values(
                connection_id=conn.id,
                provider=conn.provider,
                endpoint=endpoint,
                window_start=window.start,
                window_end=window.end,
                started_at=datetime.now(UTC),
                status="running",
                runner=RUNNER,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def _scrub(text: str, *, secrets: tuple[str, ...]) -> str:
    return redact(text, *secrets)


def _finish_run(engine: Engine, res: EndpointResult, started: float) -> None:
    with engine.begin() as db:
        db.execute(
            update(SYNC_RUNS)
            .where(SYNC_RUNS.c.id == res.run_id)
            .values(
                status=res.status,
                error=redact(res.error)[:4000],
                pages=res.pages,
                rows=res.rows,
                finished_at=datetime.now(UTC),
                duration_seconds=round(time.perf_counter() - started, 3),
            )
        )


def _log_skipped(engine: Engine, summary: SyncSummary) -> None:
    """A sync that found the connection locked is logged as ``skipped``, not as a failure.

    One row with an empty endpoint: the run never got as far as an endpoint, and the status
    page's "newest run per endpoint" must keep showing the runs that did.
    """
    now = datetime.now(UTC)
    try:
        provider = get_connection(engine, summary.connection_id).provider
    except ConnectionsError:
        provider = ""
    with engine.begin() as db:
        db.execute(
            insert(SYNC_RUNS).values(
                connection_id=summary.connection_id,
                provider=provider,
                endpoint="",
                window_start=now,
                window_end=now,
                started_at=now,
                finished_at=now,
                status="skipped",
                error=summary.note.removeprefix("skipped: "),
                runner=RUNNER,
            )
        )


def _abandon_stale_runs(engine: Engine, connection_id: int) -> None:
    """Runs still 'running' while we hold the lock belong to a process that died."""
    with engine.begin() as db:
        db.execute(
            update(SYNC_RUNS)
            .where(SYNC_RUNS.c.connection_id == connection_id, SYNC_RUNS.c.status == "running")
            .values(status="abandoned", error="the process running this sync stopped before it finished")
        )


# -- the sync -----------------------------------------------------------------------------------


def plan(
    *,
    now: datetime,
    width: timedelta,
    lookback: timedelta,
    backfill: timedelta,
    high_water: datetime | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Window | None:
    """The window one sync of one endpoint fetches, or None when nothing is complete yet.

    * end: ``until`` (or ``now``) floored to the bucket, so the incomplete current bucket is
      never fetched and never counted as done;
    * start: ``since`` when given (a CLI back-fill); else the high-water mark minus the lookback
      (providers revise recent buckets, provider-apis.md §1.7.7 and §2.8.1); else, on the first
      sync, ``backfill`` before the end.
    """
    end = floor(min(until, now) if until is not None else now, width)
    if since is not None:
        start = floor(since, width)
    elif high_water is not None:
        start = floor(min(high_water, end) - lookback, width)
    else:
        start = floor(end - backfill, width)
    if start >= end:
        return None
    return Window(start, end)


@dataclass
class _Plan:
    endpoint: Endpoint
    window: Window


def _backfill_progress(db: DBConnection, connection_id: int, endpoint: str, start: datetime) -> datetime | None:
    """How far earlier runs of a back-fill from ``start`` got, following resumed runs link by link.

    A run stores the window it asked for and, page by page, ``through``: the end of the buckets it
    completed. A resumed run starts where the previous one got to, so the chain of windows is
    followed from ``start`` to the newest ``through``; None when no run started there.
    """
    r = SYNC_RUNS.c
    stmt = select(func.max(r.through)).where(
        r.connection_id == connection_id, r.endpoint == endpoint, r.window_start == bindparam("start")
    )
    cursor: datetime | None = None
    point = start
    while True:
        reached: datetime | None = db.execute(stmt, {"start": point}).scalar()
        if reached is None or reached <= point:
            return cursor
        cursor = point = reached


def _ran_recently(db: DBConnection, connection_id: int, api: Provider, ep: Endpoint, now: datetime) -> bool:
    """True when a scheduled sync should skip ``ep``: it succeeded less than its min_interval ago."""
    interval = api.min_interval(ep)
    if interval is None:
        return False
    last = db.execute(
        select(func.max(SYNC_RUNS.c.started_at)).where(
            SYNC_RUNS.c.connection_id == connection_id, SYNC_RUNS.c.endpoint == ep.name, SYNC_RUNS.c.status == "ok"
        )
    ).scalar()
    return last is not None and now - last < interval


def _plans(
    engine: Engine,
    api: Provider,
    conn: Connection,
    settings: Settings,
    *,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    only: set[str] | None,
    refetch: bool = False,
    scheduled: bool = False,
) -> list[_Plan]:
    out = []
    with engine.connect() as db:
        for ep in api.endpoints:
            if only and ep.name not in only:
                continue
            assert conn.id is not None
            start = since
            if since is not None and not refetch:
                # A back-fill that was interrupted (killed, a failed page) resumes where its runs
                # got to, instead of re-fetching what it already stored.
                done = _backfill_progress(db, conn.id, ep.name, floor(since, ep.width))
                if done is not None and done > since:
                    log.info("%s %s: resuming the back-fill from %s (--refetch starts over)", conn.label, ep.name, done)
                    start = done
            if scheduled and since is None and _ran_recently(db, conn.id, api, ep, now):
                continue  # a charged API (Cost Explorer) is asked at most every min_interval
            window = plan(
                now=now,
                width=ep.width,
                lookback=api.lookback(ep),
                backfill=timedelta(days=settings.backfill_days),
                high_water=high_water(db, conn.id, ep.name),
                since=start,
                until=until,
            )
            if window is not None:
                out.append(_Plan(ep, window))
    return out


def _sync_endpoint(
    engine: Engine,
    settings: Settings,
    api: Provider,
    conn: Connection,
    item: _Plan,
    progress: Progress | None,
    scrub: Callable[[str], str] = redact,
) -> EndpointResult:
    """Fetch, parse and store one endpoint's window page by page; raises only auth failures."""
    assert conn.id is not None
    ep, window = item.endpoint, item.window
    res = EndpointResult(ep.name, _start_run(engine, conn, ep.name, window), window)
    ctx = Context(account=conn.account or conn.label, source_ref=f"conn:{conn.id}/run:{res.run_id}")
    started = time.perf_counter()
    try:
        for page in api.pages(ep, window):
            records = ep.parse(page.payload, ctx)
            now = datetime.now(UTC)
            with engine.begin() as db:  # rows, mark and progress commit together
                ingest(db, records, batch_size=settings.upsert_batch_size, now=now)
                if page.through is not None:
                    _advance(db, conn.id, ep.name, min(page.through, window.end), now)
                res.pages += 1
                res.rows += len(records)
                db.execute(
                    update(SYNC_RUNS)
                    .where(SYNC_RUNS.c.id == res.run_id)
                    .values(pages=res.pages, rows=res.rows, through=page.through)
                )
            if progress is not None:
                progress(ep.name, window, page.through, res.pages, res.rows)
        res.status = "ok"
    except FatalAPIError as exc:
        res.status, res.error = "failed", scrub(str(exc))
        if exc.is_auth:
            _finish_run(engine, res, started)
            raise
    except (APIError, ProviderError, InvariantError, AmountOverflow) as exc:
        res.status, res.error = "failed", scrub(f"{type(exc).__name__}: {exc}")
    except BaseException as exc:  # unexpected: record it in sync_runs, then fail loudly
        res.status, res.error = "failed", scrub(f"{type(exc).__name__}: {trim_error(str(exc))}")
        _finish_run(engine, res, started)
        raise
    _finish_run(engine, res, started)
    log.info("%s %s %s: %s, %d page(s), %d row(s)", conn.label, ep.name, window, res.status, res.pages, res.rows)
    return res


def sync_connection(
    engine: Engine,
    settings: Settings,
    connection_id: int,
    *,
    vault: Vault | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    endpoints: set[str] | None = None,
    now: datetime | None = None,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    scheduled: bool = False,
    hooks: Hooks = NO_HOOKS,
    refetch: bool = False,
) -> SyncSummary:
    """Sync one connection's endpoints (the scheduler's job and ``connections sync ID``).

    Args:
        engine: the migrated database.
        settings: back-fill, lookbacks, HTTP policy.
        connection_id: which connection.
        vault: decrypts the key (default: :func:`collector.sync.vault.load_vault`).
        since: fetch from here instead of the high-water mark (a back-fill).
        until: fetch up to here instead of now.
        endpoints: restrict to these endpoint names.
        now: the clock (tests).
        transport: an httpx transport (tests).
        progress: called after every stored page.
        scheduled: True from the scheduler: inactive or auth-paused connections are skipped.
        hooks: what the application runs after new rows were stored (budget evaluation).
        refetch: with ``since``, fetch the whole window again instead of resuming an interrupted
            back-fill of the same start where its runs got to.

    Returns:
        A summary; errors are reported in it (and in ``sync_runs``), except unexpected ones.
        After a successful sync, ``hooks.after_ingest`` runs (the application's budget evaluation).
    """
    summary = SyncSummary(connection_id)
    with connection_lock(engine, settings, connection_id) as locked:
        if not locked:
            summary.skipped = "locked"
            log.info("connection %d is being synced by another process; skipping", connection_id)
            _log_skipped(engine, summary)
            return summary
        try:
            conn = get_connection(engine, connection_id)
        except ConnectionsError:
            if not scheduled:
                raise
            summary.skipped = "removed"  # removed after its job was scheduled; the refresh drops the job
            return summary
        if scheduled and (not conn.active or conn.paused):
            summary.skipped = "inactive" if not conn.active else "paused"
            return summary
        _abandon_stale_runs(engine, connection_id)
        try:
            key = (vault or load_vault(settings, create=False)).decrypt(conn.key_encrypted)
        except VaultError as exc:
            summary.error = str(exc)
            mark_status(engine, connection_id, STATUS_FAILING, str(exc))
            return summary
        provider = get_provider(conn.provider)
        try:
            api = provider.connect(
                settings, key, base_url=conn.base_url, transport=transport, options=conn.option_values
            )
        except InsecureURLError as exc:
            summary.error = f"base URL refused: {exc}"
            mark_status(engine, connection_id, STATUS_FAILING, summary.error)
            return summary
        # Every error text stored or shown from here on masks the exact credential, in any spelling.
        scrub = functools.partial(_scrub, secrets=provider.secrets_in(key))
        del key
        try:
            _run(
                engine,
                settings,
                api,
                conn,
                summary,
                now or datetime.now(UTC),
                since,
                until,
                endpoints,
                progress,
                scrub,
                refetch=refetch,
                scheduled=scheduled,
            )
            if summary.ok:
                _read_facts(engine, api, connection_id, scrub)
        finally:
            api.close()
        summary.overlaps = _overlaps(engine, conn, summary)
        for overlap in summary.overlaps:
            log.info("connection %d: %s", connection_id, overlap.describe())
    if summary.ok:
        hooks.ingested(engine, settings)
    return summary


def _read_facts(engine: Engine, api: Provider, connection_id: int, scrub: Callable[[str], str] = redact) -> None:
    """Store the provider's account levels (balance ...); a failure here never fails the sync."""
    try:
        facts = api.account_facts()
    except (APIError, ProviderError) as exc:
        log.info("connection %d: account facts not read: %s", connection_id, scrub(str(exc)))
        return
    if facts:
        record_facts(engine, connection_id, {**facts, "as_of": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")})


def _overlaps(engine: Engine, conn: Connection, summary: SyncSummary) -> list[Overlap]:
    """Days this sync's billed endpoints cover that another billed source covers too."""
    windows = [e.window for e in summary.endpoints if e.rows]
    if not windows:
        return []
    mine = {f"api:{e.endpoint}" for e in summary.endpoints}
    coverage = read_coverage(
        engine,
        min(w.start for w in windows),
        max(w.end for w in windows),
        providers=(conn.provider,),
        accounts=(conn.account or conn.label,),
    )
    return [o for o in overlaps(coverage) if mine.intersection(s.label for s in (o.counted, *o.others))]


def _run(
    engine: Engine,
    settings: Settings,
    api: Provider,
    conn: Connection,
    summary: SyncSummary,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    endpoints: set[str] | None,
    progress: Progress | None,
    scrub: Callable[[str], str],
    *,
    refetch: bool = False,
    scheduled: bool = False,
) -> None:
    assert conn.id is not None
    plans = _plans(
        engine, api, conn, settings, now=now, since=since, until=until, only=endpoints, refetch=refetch,
        scheduled=scheduled,
    )  # fmt: skip
    for item in plans:
        try:
            summary.endpoints.append(_sync_endpoint(engine, settings, api, conn, item, progress, scrub))
        except FatalAPIError as exc:  # 401/403: stop at once, pause the job (is_auth only)
            summary.auth_failed, summary.error = True, scrub(str(exc))
            mark_status(engine, conn.id, STATUS_AUTH_FAILED, summary.error)
            log.warning("connection %d (%s): key refused, syncing paused: %s", conn.id, conn.label, summary.error)
            return
    failed = [e for e in summary.endpoints if e.status != "ok"]
    if failed:
        summary.error = "; ".join(f"{e.endpoint}: {e.error}" for e in failed)
        mark_status(engine, conn.id, STATUS_FAILING, summary.error)
    else:
        with engine.begin() as db:
            db.execute(
                update(CONNECTIONS)
                .where(CONNECTIONS.c.id == conn.id)
                .values(status=STATUS_OK, last_error="", last_synced_at=datetime.now(UTC))
            )


__all__ = ["EndpointResult", "Progress", "SyncSummary", "connection_lock", "high_water", "sync_connection"]
