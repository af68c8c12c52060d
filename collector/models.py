"""Imports every table module so ``SQLModel.metadata`` is complete (for Alembic and tests).

A feature that adds tables adds its module here and a numbered migration under
``collector/migrations/versions``.
"""

from collector import imports, schema, sync_tables
from collector.proxy import models as proxy_models

__all__ = ["imports", "proxy_models", "schema", "sync_tables"]
