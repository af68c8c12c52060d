"""Scheduler wiring only (code-anchors §11.12): jobs are plain functions from other modules.

Features register *installers*: functions that add their jobs to the scheduler given the engine
and settings (the API sync adds one job per active connection). ``llm-usage scheduler`` runs it
in the foreground; ``llm-usage run`` runs it beside the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy.engine import Engine

from collector.settings import Settings

log = logging.getLogger(__name__)

Installer = Callable[[BaseScheduler, Engine, Settings], None]

#: Explicit list of job installers; a feature appends its own here.
INSTALLERS: list[Installer] = []


def build_scheduler(engine: Engine, settings: Settings, scheduler: BaseScheduler | None = None) -> BaseScheduler:
    """A UTC scheduler with every installer's jobs added (not started)."""
    scheduler = scheduler or BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
    )
    for install in INSTALLERS:
        install(scheduler, engine, settings)
    log.info("scheduler ready with %d job(s)", len(scheduler.get_jobs()))
    return scheduler


# --- feature installers (one import + one append per feature) ----------------------------------
from collector.sync_jobs import install_sync_jobs  # noqa: E402

INSTALLERS.append(install_sync_jobs)
