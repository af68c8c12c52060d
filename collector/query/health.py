"""Operational health: how fresh each source is, and the state ``llm-usage status`` prints.

Freshness answers "how recent is the data we hold" per source, provider account and kind;
:func:`status` reads the connections and sync tables, the import log, the proxy's events and
spool, and the database's migration state, and :func:`problems` turns them into the lines
``status --check`` fails on. Every read selects only the columns shown (never
``connections.key_encrypted``) and aggregates in SQL, so a long run log is never read whole.
The listings at the end (connections, sync runs, imported files, the database) are the same
tables as rows for the admin pages, with anything key-shaped in their text masked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from collector.core import figures
from collector.core.http import redact
from collector.core.store import USAGE, USAGE_DAILY, data_version
from collector.core.windows import floor_day
from collector.proxy.models import PROXY_EVENTS
from collector.query.billing import overlaps, read_coverage
from collector.sync.tables import Connection, SyncRun, SyncState
from importers.log import ACCOUNT_SEPARATOR, IMPORT_FILES, IMPORTED
from providers import UnknownProviderError, get_provider


@dataclass(frozen=True)
class Freshness:
    """The newest data one source holds for one provider account and kind."""

    source: str
    provider: str
    account: str
    kind: str
    newest_bucket_end: datetime
    last_ingested: datetime


_FRESHNESS_TYPES = figures.type_map([Freshness])


def freshness(engine: Engine, since: datetime | None = None) -> list[Freshness]:
    """Newest bucket end and last write per (source, provider, account, kind), kept per data version.

    Both change only when usage rows do, and reading them scans from the oldest group's newest
    day on (seconds at tens of millions of rows when one group stopped long ago), so the
    answer is kept (:mod:`collector.core.figures`) until the next write.
    """

    def compute() -> list[Freshness]:
        return _freshness(engine, since)

    return figures.cached(engine, "freshness", (since,), data_version(engine), compute, types=_FRESHNESS_TYPES)


def usage_row_count(engine: Engine) -> int:
    """``COUNT(*)`` of ``usage`` (a full scan on SQLite), kept per data version."""

    def compute() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(USAGE)).scalar_one())

    return figures.cached(engine, "usage_rows", (), data_version(engine), compute, types={})


def _freshness(engine: Engine, since: datetime | None) -> list[Freshness]:
    """Newest bucket end and last write per (source, provider, account, kind).

    Finds each group's newest day in ``usage_daily`` first, then reads only ``usage`` rows from
    the oldest of those days on (an index range), so it stays fast on a large table. With
    ``since``, only groups with data on or after that day are read (pages that render on every
    visit need only the recent days; an absent group is older than ``since``).
    """
    d = USAGE_DAILY.c
    u = USAGE.c
    keys_d = (d.source, d.provider, d.account, d.kind)
    newest_stmt = select(*keys_d, func.max(d.day).label("day")).group_by(*keys_d)
    if since is not None:
        newest_stmt = newest_stmt.where(d.day >= floor_day(since.astimezone(UTC)))
    with engine.connect() as conn:
        newest_days = conn.execute(newest_stmt).all()
        if not newest_days:
            return []
        oldest = min(r.day for r in newest_days)
        keys_u = (u.source, u.provider, u.account, u.kind)
        stmt = (
            select(
                *keys_u,
                func.max(u.bucket_end).label("end"),
                func.max(u.updated_at).label("ingested"),
            )
            .where(u.bucket_start >= oldest)
            .group_by(*keys_u)
        )
        rows = conn.execute(stmt).all()
    out = [Freshness(r.source, r.provider, r.account, r.kind, r.end, r.ingested) for r in rows]
    out.sort(key=lambda f: (f.source, f.provider, f.account, f.kind))
    return out


# -- status ---------------------------------------------------------------------------------------
#
# The connections and sync tables (collector/sync/tables.py), the import log
# (importers/log.py) and the proxy's events (collector/proxy/models.py) are read
# through their own SQLModel tables: one small function per table, selecting only the columns
# ``status`` shows (never ``connections.key_encrypted``) and aggregating in SQL so a long run log
# or event table is never read whole.

#: Connection and run states that make ``status --check`` fail (collector/connections.py's
#: ``failing`` / ``auth_failed``, sync_runs' ``failed``).
FAILING_STATUSES = frozenset({"failing", "auth_failed", "failed"})
CONNECTIONS: Table = Connection.__table__  # type: ignore[attr-defined]
SYNC_STATE: Table = SyncState.__table__  # type: ignore[attr-defined]
SYNC_RUNS: Table = SyncRun.__table__  # type: ignore[attr-defined]


@dataclass
class EndpointState:
    """How far one endpoint of a connection has synced, and how its newest run ended."""

    endpoint: str
    newest_complete: datetime | None
    last_run_status: str = ""
    last_run_at: datetime | None = None
    last_run_error: str = ""


@dataclass
class ConnectionStatus:
    """One registered provider connection (admin key) and its sync health."""

    id: Any
    label: str
    provider: str
    key_hint: str
    active: bool
    status: str
    last_success: datetime | None
    last_error: str
    account: str = ""
    endpoints: list[EndpointState] = field(default_factory=list)
    #: When the key last passed ``connections test``: clears runs that failed before it.
    last_tested: datetime | None = None

    @property
    def newest_complete(self) -> datetime | None:
        """The newest complete bucket over all endpoints."""
        ends = [e.newest_complete for e in self.endpoints if e.newest_complete is not None]
        return max(ends) if ends else None


@dataclass
class ImportStatus:
    """The newest period imported for one (importer, account)."""

    importer: str
    account: str
    newest_period_end: datetime | None
    last_imported: datetime | None
    files: int
    failed: int


@dataclass
class ProxyStatus:
    """The proxy's recent traffic and its local spool (events waiting to be written).

    The in-memory queue lives in the running proxy process: its ``/healthz`` reports it.
    """

    events_last_hour: int | None
    newest_event: datetime | None
    spool_files: int
    spool_bytes: int
    not_rolled_up: int = 0


@dataclass
class DatabaseStatus:
    """Which database, how big, and whether its schema is current."""

    backend: str
    url: str
    usage_rows: int
    daily_rows: int
    size_bytes: int | None
    revision: str | None
    head: str | None


#: How far back ``status`` looks for account-days that several billed sources bill.
OVERLAP_DAYS = timedelta(days=90)


@dataclass
class StatusResult:
    """Everything ``llm-usage status`` shows; ``problems`` drives ``--check``."""

    now: datetime
    max_age: timedelta
    connections: list[ConnectionStatus] | None
    imports: list[ImportStatus] | None
    proxy: ProxyStatus | None
    database: DatabaseStatus
    freshness: list[Freshness]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Account-days of the last :data:`OVERLAP_DAYS` several billed sources bill, and which counts.
    billing_overlaps: list[str] = field(default_factory=list)


def _hint(value: Any) -> str:
    """A key hint as stored; anything long enough to be a key is masked again, to be safe."""
    from collector.core.http import mask_key

    text = str(value or "")
    return mask_key(text) if len(text) > 24 else text


def _read_connections(conn: Any) -> list[ConnectionStatus]:
    """``connections``: one row per registered admin key, oldest first."""
    c = CONNECTIONS.c
    stmt = select(
        c.id,
        c.label,
        c.provider,
        c.key_hint,
        c.account,
        c.active,
        c.status,
        c.last_error,
        c.last_synced_at,
        c.last_tested_at,
    ).order_by(c.id)
    return [
        ConnectionStatus(
            id=r.id,
            label=r.label,
            provider=r.provider,
            key_hint=_hint(r.key_hint),
            active=bool(r.active),
            status=r.status,
            last_success=r.last_synced_at,
            last_error=r.last_error,
            account=r.account,
            last_tested=r.last_tested_at,
        )
        for r in conn.execute(stmt)
    ]


def _read_endpoints(conn: Any) -> dict[int, dict[str, EndpointState]]:
    """``sync_state`` high-water marks, and each endpoint's newest ``sync_runs`` row."""
    s = SYNC_STATE.c
    runs = SYNC_RUNS
    out: dict[int, dict[str, EndpointState]] = defaultdict(dict)
    for r in conn.execute(select(s.connection_id, s.endpoint, s.high_water)):
        out[r.connection_id][r.endpoint] = EndpointState(r.endpoint, r.high_water)
    # A skipped run (another process held the lock) did nothing: the newest real run still stands.
    newest = (
        select(func.max(runs.c.id).label("id"))
        .where(runs.c.status != "skipped")
        .group_by(runs.c.connection_id, runs.c.endpoint)
        .subquery("newest")
    )
    stmt = select(
        runs.c.connection_id, runs.c.endpoint, runs.c.status, runs.c.error, runs.c.started_at, runs.c.finished_at
    ).join(newest, newest.c.id == runs.c.id)
    for r in conn.execute(stmt):
        state = out[r.connection_id].setdefault(r.endpoint, EndpointState(r.endpoint, None))
        state.last_run_status = r.status
        state.last_run_at = r.finished_at or r.started_at
        state.last_run_error = r.error
    return out


def _read_imports(conn: Any) -> list[ImportStatus]:
    """``import_files``: newest imported period per (importer, billing account).

    A file's ``account`` lists the billing accounts its rows were filed under (or the
    ``--account`` label); a refused file counts as failed under the account it was given.
    """
    f = IMPORT_FILES.c
    stmt = select(
        f.importer,
        f.account,
        f.status,
        func.count().label("files"),
        func.max(f.period_end).label("period_end"),
        func.max(f.imported_at).label("imported_at"),
    ).group_by(f.importer, f.account, f.status)
    groups: dict[tuple[str, str], ImportStatus] = {}
    for r in conn.execute(stmt):
        for account in (r.account or "").split(ACCOUNT_SEPARATOR):
            item = groups.setdefault((r.importer, account), ImportStatus(r.importer, account, None, None, 0, 0))
            item.files += int(r.files)
            if r.status != IMPORTED:
                item.failed += int(r.files)
                continue
            if r.period_end is not None and (item.newest_period_end is None or r.period_end > item.newest_period_end):
                item.newest_period_end = r.period_end
            if r.imported_at is not None and (item.last_imported is None or r.imported_at > item.last_imported):
                item.last_imported = r.imported_at
    return sorted(groups.values(), key=lambda i: (i.importer, i.account))


def _spool(settings: Any) -> tuple[int, int]:
    """Files and bytes of events not yet in the database, in the proxy's journal (collector/proxy/spool.py).

    A running sidecar always has an active segment; empty, it holds nothing waiting.
    """
    folder = settings.resolved_spool_dir() if settings is not None else None
    files = size = 0
    if folder is not None and folder.is_dir():
        for path in folder.glob("*.jsonl"):
            try:
                bytes_ = path.stat().st_size
            except FileNotFoundError:  # committed and removed meanwhile
                continue
            if bytes_:
                files, size = files + 1, size + bytes_
    return files, size


def _read_proxy(conn: Any, settings: Any, now: datetime) -> ProxyStatus | None:
    """``proxy_events`` of the last hour and the spool; None when the proxy never ran."""
    e = PROXY_EVENTS.c
    spool_files, spool_bytes = _spool(settings)
    newest = conn.execute(select(func.max(e.ts))).scalar_one()
    if newest is None and not spool_files:
        return None
    count = conn.execute(select(func.count()).select_from(PROXY_EVENTS).where(e.ts >= now - timedelta(hours=1)))
    pending = conn.execute(select(func.count()).select_from(PROXY_EVENTS).where(e.rolled_up.is_(False)))
    return ProxyStatus(int(count.scalar_one()), newest, spool_files, spool_bytes, int(pending.scalar_one()))


def _read_database(engine: Engine, conn: Any) -> DatabaseStatus:
    from collector.db.migrate import current_revision, head_revision

    usage_rows = usage_row_count(engine)
    daily_rows = conn.execute(select(func.count()).select_from(USAGE_DAILY)).scalar_one()
    size: int | None = None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            from pathlib import Path

            size = sum(p.stat().st_size for p in (Path(database), Path(database + "-wal")) if p.exists())
    else:
        size = int(conn.execute(select(func.pg_database_size(func.current_database()))).scalar_one())
    return DatabaseStatus(
        backend=engine.dialect.name,
        url=engine.url.render_as_string(hide_password=True),
        usage_rows=int(usage_rows),
        daily_rows=int(daily_rows),
        size_bytes=size,
        revision=current_revision(engine),
        head=head_revision(),
    )


def status(
    engine: Engine,
    settings: Any = None,
    *,
    max_age: timedelta = timedelta(hours=3),
    now: datetime | None = None,
) -> StatusResult:
    """Health of every connection, import, the proxy and the database.

    A problem (for ``status --check``) is an *active* connection that is failing (its status,
    or an endpoint's newest run failed after the last success), or whose last success (or,
    without one, newest complete bucket) is older than ``max_age``; also a database behind the
    newest migration.
    """
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        connections = _read_connections(conn)
        endpoints = _read_endpoints(conn)
        for c in connections:
            c.endpoints = sorted(endpoints.get(c.id, {}).values(), key=lambda e: e.endpoint)
            _apply_runs(c)
        imports = _read_imports(conn)
        proxy = _read_proxy(conn, settings, now)
        database = _read_database(engine, conn)
    result = StatusResult(
        now=now,
        max_age=max_age,
        connections=connections,
        imports=imports,
        proxy=proxy,
        database=database,
        freshness=freshness(engine),
        billing_overlaps=[o.describe() for o in overlaps(read_coverage(engine, now - OVERLAP_DAYS, now))],
    )
    result.problems = _problems(result)
    if not connections:
        result.notes.append("no connections configured")
    if not imports:
        result.notes.append("no CSV imports recorded")
    if proxy is None:
        result.notes.append("no proxy events recorded")
    return result


def _apply_runs(c: ConnectionStatus) -> None:
    """An endpoint whose newest run failed after the last success fails an ``ok`` connection.

    The sync marks the connection itself (collector/sync/engine.py); this catches a run that failed
    without reaching that step (its process died mid-way, or another collector's run). A key that
    passed ``connections test`` since (the key was replaced after a 401) clears the old failure.
    """
    if c.status in FAILING_STATUSES:
        return
    cleared = max((t for t in (c.last_success, c.last_tested if c.status == "ok" else None) if t), default=None)
    for e in c.endpoints:
        if e.last_run_status in FAILING_STATUSES and (
            cleared is None or e.last_run_at is None or e.last_run_at > cleared
        ):
            c.status = e.last_run_status
            c.last_error = e.last_run_error or c.last_error
            return


def _problems(result: StatusResult) -> list[str]:
    out: list[str] = []
    for c in result.connections or []:
        if not c.active:
            continue
        name = f"connection {c.label or c.id} ({c.provider})"
        if c.status in FAILING_STATUSES:
            out.append(f"{name}: failing: {c.last_error or c.status}")
            continue
        seen = c.last_success or c.newest_complete
        if seen is None:
            out.append(f"{name}: no successful sync yet")
        elif result.now - seen > result.max_age:
            age = human_age(result.now - seen)
            out.append(f"{name}: stale: last success {age} ago (max age {human_age(result.max_age)})")
        out += _stale_data(name, c, result)
    db = result.database
    if db.revision != db.head:
        out.append(f"database: schema at {db.revision}, newest is {db.head}: run `llm-usage db upgrade`")
    return out


def _stale_data(name: str, c: ConnectionStatus, result: StatusResult) -> list[str]:
    """Endpoints whose newest complete bucket is older than the provider publishes, plus ``max_age``.

    A sync that succeeds while the provider returns nothing new (a revoked scope, an empty
    organisation, a stuck high-water mark) keeps ``last success`` fresh while the data ages; the
    age of the data itself is what a finance reader cares about.
    """
    try:
        endpoints = {e.name: e for e in get_provider(c.provider).endpoints}
    except UnknownProviderError:
        return []
    out = []
    for state in c.endpoints:
        spec = endpoints.get(state.endpoint)
        if spec is None or state.newest_complete is None:
            continue
        allowed = spec.expected_lag + result.max_age
        age = result.now - state.newest_complete
        if age > allowed:
            out.append(
                f"{name}: {state.endpoint}: stale data: the newest complete bucket ended {human_age(age)} ago "
                f"(the provider publishes within {human_age(spec.expected_lag)}; max age {human_age(result.max_age)})"
            )
    return out


def human_age(delta: timedelta) -> str:
    """A short age for status lines: ``45m``, ``5h07m``, ``3d``."""
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86_400}d"


# -- listings for the admin pages -----------------------------------------------------------------

#: The ``connections`` columns listed: never ``key_encrypted``, only the masked ``key_hint``.
CONNECTION_COLUMNS = (
    "id",
    "provider",
    "label",
    "account",
    "key_hint",
    "base_url",
    "active",
    "status",
    "last_error",
    "last_synced_at",
    "last_tested_at",
    "created_at",
    "options",
    "facts",
)
SYNC_RUN_COLUMNS = (
    "id",
    "connection_id",
    "provider",
    "endpoint",
    "status",
    "started_at",
    "finished_at",
    "window_start",
    "window_end",
    "through",
    "pages",
    "rows",
    "duration_seconds",
    "error",
    "runner",
)
IMPORT_FILE_COLUMNS = (
    "id",
    "name",
    "importer",
    "status",
    "rows",
    "rows_read",
    "period_start",
    "period_end",
    "account",
    "imported_by",
    "imported_at",
    "size",
    "message",
)


@dataclass(frozen=True)
class Listing:
    """Rows of one table as shown to an admin: named columns, text masked."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def _masked(value: Any) -> Any:
    # A provider error can quote the key it was sent; mask anything key-shaped before it leaves.
    return redact(value) if isinstance(value, str) else value


def _listing(engine: Engine, table: Table, columns: tuple[str, ...], order: Any, limit: int) -> Listing:
    stmt = select(*(table.c[c] for c in columns)).order_by(order).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return Listing(columns, tuple(tuple(_masked(v) for v in r) for r in rows))


def connection_listing(engine: Engine, limit: int = 1000) -> Listing:
    """Registered provider connections, oldest first (key hint only, errors masked)."""
    return _listing(engine, CONNECTIONS, CONNECTION_COLUMNS, CONNECTIONS.c.id, limit)


def sync_run_listing(engine: Engine, limit: int = 200) -> Listing:
    """Newest sync runs first (one row per connection endpoint and sync)."""
    return _listing(engine, SYNC_RUNS, SYNC_RUN_COLUMNS, SYNC_RUNS.c.id.desc(), limit)


def import_file_listing(engine: Engine, limit: int = 200) -> Listing:
    """Newest imported (or refused) billing files first."""
    return _listing(engine, IMPORT_FILES, IMPORT_FILE_COLUMNS, IMPORT_FILES.c.id.desc(), limit)


@dataclass(frozen=True)
class DatabaseInfo:
    """The database at a glance: backend, URL without password, revision and row counts."""

    backend: str
    url: str
    revision: str | None
    usage_rows: int
    daily_rows: int


def database_info(engine: Engine) -> DatabaseInfo:
    """Backend, migration revision and row counts, from the daily rollup (no scan of ``usage``).

    ``usage_daily.rows`` counts the usage rows each rollup row sums, so their total is the
    usage row count; :func:`status` counts ``usage`` itself for the CLI.
    """
    from collector.db.migrate import current_revision

    with engine.connect() as conn:
        usage_rows, daily_rows = conn.execute(
            select(func.coalesce(func.sum(USAGE_DAILY.c.rows), 0), func.count()).select_from(USAGE_DAILY)
        ).one()
    return DatabaseInfo(
        backend=engine.dialect.name,
        url=engine.url.render_as_string(hide_password=True),
        revision=current_revision(engine),
        usage_rows=int(usage_rows),
        daily_rows=int(daily_rows),
    )


def newest_day(engine: Engine) -> datetime | None:
    """The newest UTC day with any usage (from the daily rollup's index)."""
    with engine.connect() as conn:
        value: datetime | None = conn.execute(select(func.max(USAGE_DAILY.c.day))).scalar_one_or_none()
    return value
