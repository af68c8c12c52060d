"""Imports every table module so ``SQLModel.metadata`` is complete (for Alembic and tests).

A feature that adds tables adds its module here and a numbered migration under
``collector/migrations/versions``.
"""

from collector import budget_tables, imports, schema, sync_tables, users
from collector.proxy import models as proxy_models

__all__ = ["budget_tables", "imports", "proxy_models", "schema", "sync_tables", "users"]
