"""The table registry: every module that defines tables, imported so ``SQLModel.metadata`` is complete.

Alembic's autogenerate check and the tests create the schema from this metadata. A feature that
adds tables defines them in its own module, lists that module here, and adds a numbered migration
under ``collector/db/migrations/versions``.
"""

from collector.auth import sessions, users
from collector.core import schema
from collector.finance import alerts, budgets, chargeback, fx
from collector.otel import models as otel_models
from collector.proxy import models as proxy_models
from collector.query import billing
from collector.sync import tables as sync_tables
from importers import log as import_log

__all__ = [
    "alerts",
    "billing",
    "budgets",
    "chargeback",
    "fx",
    "import_log",
    "otel_models",
    "proxy_models",
    "schema",
    "sessions",
    "sync_tables",
    "users",
]
