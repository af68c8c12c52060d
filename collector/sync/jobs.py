"""Scheduler jobs of the API sync: one per active connection, kept in step with the table.

Installed by :data:`collector.app.SCHEDULER_JOBS`. A refresh job re-reads ``connections``
every ``LLM_USAGE_SCHEDULER_REFRESH_SECONDS`` and adds, keeps or drops the per-connection jobs,
so connections added, disabled, removed or paused (401/403) while the scheduler runs are picked
up without a restart. Each sync job has a stable id (``sync:conn:<id>``), ``coalesce``,
``max_instances=1``, a misfire grace and jitter (code-anchors §8, §11.12); across processes the
database lock in :func:`collector.sync.engine.sync_connection` keeps a connection to one sync at a time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from collector.core.ingest import NO_HOOKS, Hooks
from collector.core.settings import Settings
from collector.sync.connections import Connection, list_connections
from collector.sync.engine import SyncSummary, sync_connection

log = logging.getLogger(__name__)
JOB_PREFIX = "sync:conn:"
REFRESH_JOB_ID = "sync:refresh"


def job_id(connection_id: int) -> str:
    """The stable job id of a connection's sync."""
    return f"{JOB_PREFIX}{connection_id}"


def run_sync_job(
    engine: Engine,
    settings: Settings,
    connection_id: int,
    transport: httpx.BaseTransport | None = None,
    hooks: Hooks = NO_HOOKS,
) -> SyncSummary:
    """The job body: the same function the CLI calls, in scheduled mode (skips paused ones)."""
    summary = sync_connection(engine, settings, connection_id, scheduled=True, transport=transport, hooks=hooks)
    if summary.error:
        log.warning("sync of connection %d: %s", connection_id, summary.error)
    return summary


def _first_run(conn: Connection, settings: Settings, now: datetime) -> datetime:
    """Never-synced connections run now; others one interval after their last sync."""
    if conn.last_synced_at is None:
        return now
    return max(now, conn.last_synced_at + timedelta(minutes=settings.sync_interval_minutes))


def refresh_sync_jobs(
    scheduler: BaseScheduler,
    engine: Engine,
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    hooks: Hooks = NO_HOOKS,
) -> set[str]:
    """Make the scheduler's sync jobs match the active, un-paused connections; returns their ids."""
    wanted = {job_id(c.id): c for c in list_connections(engine, active_only=True) if not c.paused and c.id}
    for job in scheduler.get_jobs():
        if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
            log.info("dropping job %s (connection disabled, removed or paused)", job.id)
            job.remove()
    existing = {job.id for job in scheduler.get_jobs()}
    now = datetime.now(UTC)
    for jid, conn in wanted.items():
        if jid in existing:
            continue
        scheduler.add_job(
            run_sync_job,
            IntervalTrigger(minutes=settings.sync_interval_minutes, jitter=settings.sync_jitter_seconds or None),
            args=[engine, settings, conn.id],
            kwargs={"transport": transport, "hooks": hooks},
            id=jid,
            name=f"sync {conn.provider} {conn.label}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=settings.sync_misfire_grace_seconds,
            next_run_time=_first_run(conn, settings, now),
        )
        log.info("scheduled %s (%s %s)", jid, conn.provider, conn.label)
    return set(wanted)


def install_sync_jobs(
    scheduler: BaseScheduler,
    engine: Engine,
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    hooks: Hooks = NO_HOOKS,
) -> None:
    """Add the current connections' jobs and the refresh job that keeps them current."""
    refresh_sync_jobs(scheduler, engine, settings, transport, hooks)
    scheduler.add_job(
        refresh_sync_jobs,
        IntervalTrigger(seconds=settings.scheduler_refresh_seconds),
        args=[scheduler, engine, settings, transport, hooks],
        id=REFRESH_JOB_ID,
        name="re-read connections",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=settings.scheduler_refresh_seconds,
    )


__all__ = ["JOB_PREFIX", "REFRESH_JOB_ID", "install_sync_jobs", "job_id", "refresh_sync_jobs", "run_sync_job"]
