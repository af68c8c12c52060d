"""Scheduler wiring of the sync: per-connection jobs kept in step, and two schedulers on one database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import text

from collector.app import SCHEDULER_JOBS, build_scheduler
from collector.core.windows import HOUR, floor
from collector.db.migrate import open_database
from collector.sync.connections import add_connection, mark_status, remove_connection, set_active
from collector.sync.engine import sync_connection
from collector.sync.jobs import REFRESH_JOB_ID, install_sync_jobs, job_id, refresh_sync_jobs, run_sync_job
from collector.sync.vault import load_vault
from tests.sync.sync_helpers import ANTHROPIC_KEY, OPENAI_KEY, make_settings, totals


def test_installer_is_registered_and_jobs_follow_the_connections_table(sqlite_engine, tmp_path, fake_api):
    assert any(getattr(job, "func", job) is install_sync_jobs for job in SCHEDULER_JOBS)
    settings = make_settings(tmp_path, sync_interval_minutes=60, sync_jitter_seconds=120)
    vault = load_vault(settings)
    a = add_connection(sqlite_engine, settings, vault, provider="openai", label="a", key=OPENAI_KEY, test=False)
    sched = build_scheduler(sqlite_engine, settings, BackgroundScheduler(timezone="UTC"))
    job = sched.get_job(job_id(a.id))
    assert sched.get_job(REFRESH_JOB_ID) is not None
    assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, settings.sync_misfire_grace_seconds)
    assert job.trigger.interval.total_seconds() == 3600 and job.trigger.jitter == 120
    b = add_connection(sqlite_engine, settings, vault, provider="anthropic", label="b", key=ANTHROPIC_KEY, test=False)
    assert refresh_sync_jobs(sched, sqlite_engine, settings) == {job_id(a.id), job_id(b.id)}  # picked up
    set_active(sqlite_engine, a.id, False)
    mark_status(sqlite_engine, b.id, "auth_failed", "HTTP 401: invalid x-api-key")
    assert refresh_sync_jobs(sched, sqlite_engine, settings) == set()
    assert sched.get_job(job_id(a.id)) is None and sched.get_job(job_id(b.id)) is None
    mark_status(sqlite_engine, b.id, "ok")  # re-tested: the job comes back
    set_active(sqlite_engine, a.id, True)
    remove_connection(sqlite_engine, a.id)
    assert refresh_sync_jobs(sched, sqlite_engine, settings) == {job_id(b.id)}
    assert [j.id for j in sched.get_jobs() if j.id.startswith("sync:conn:")] == [job_id(b.id)]
    assert run_sync_job(sqlite_engine, settings, a.id).skipped == "removed"  # a job that fired after removal


def test_a_running_scheduler_syncs_new_connections(sqlite_engine, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=1, scheduler_refresh_seconds=1, sync_jitter_seconds=0)
    sched = build_scheduler(sqlite_engine, settings, BackgroundScheduler(timezone="UTC"))
    done = threading.Event()
    sched.add_listener(lambda ev: ev.job_id.startswith("sync:conn:") and done.set(), EVENT_JOB_EXECUTED)
    sched.start()
    try:
        add_connection(
            sqlite_engine,
            settings,
            load_vault(settings),
            provider="anthropic",
            label="late",
            key=ANTHROPIC_KEY,
            base_url=fake_api.base_url,
        )
        assert done.wait(30), "the refresh job did not pick up the connection added while running"
    finally:
        sched.shutdown(wait=True)
    assert totals(sqlite_engine)[0] > 0


def test_two_schedulers_on_one_postgresql_never_sync_a_connection_at_once(pg_url, tmp_path, fake_api):
    settings = make_settings(tmp_path, backfill_days=2, sync_jitter_seconds=0, scheduler_refresh_seconds=3600)
    cut = floor(datetime.now(UTC), HOUR)  # compare buckets before this: both databases have all of them
    first, second = open_database(url=pg_url), open_database(url=pg_url)
    vault = load_vault(settings)
    add_connection(first, settings, vault, provider="openai", label="prod", key=OPENAI_KEY, base_url=fake_api.base_url)
    fake_api.api.faults.latency = 0.05  # long enough that both fire while the first still runs
    results, lock = [], threading.Lock()

    def collect(event):
        if event.job_id.startswith("sync:conn:"):
            with lock:
                results.append(event.retval if event.code == EVENT_JOB_EXECUTED else event.exception)

    schedulers = [build_scheduler(e, settings, BackgroundScheduler(timezone="UTC")) for e in (first, second)]
    for sched in schedulers:
        sched.add_listener(collect, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        sched.start()
    try:
        deadline = time.monotonic() + 60
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for sched in schedulers:
            sched.shutdown(wait=True)
    assert len(results) == 2, results
    assert sorted(r.skipped for r in results) == ["", "locked"]  # one ran, the other found the lock held
    ran = next(r for r in results if not r.skipped)
    assert ran.ok, ran.error
    with first.connect() as db:
        runs = dict(db.execute(text("SELECT status = 'skipped', COUNT(*) FROM sync_runs GROUP BY 1")).all())
    assert runs == {False: 11, True: 1}  # one run per endpoint, not two; the other logged as skipped

    fake_api.api.faults.latency = 0
    clean = open_database(url=f"sqlite:///{tmp_path / 'clean.db'}")
    clean_conn = add_connection(
        clean, settings, vault, provider="openai", label="prod", key=OPENAI_KEY, base_url=fake_api.base_url
    )
    assert sync_connection(clean, settings, clean_conn.id, now=datetime.now(UTC)).ok
    before_cut = {"postgresql": f"bucket_end <= '{cut.isoformat()}'", "sqlite": f"bucket_end <= {int(cut.timestamp())}"}
    # and nothing counted twice
    assert totals(first, before_cut["postgresql"]) == totals(clean, before_cut["sqlite"])
    assert totals(first, before_cut["postgresql"])[0] > 0
    first.dispose()
    second.dispose()
