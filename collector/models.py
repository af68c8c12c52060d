"""Imports every table module so ``SQLModel.metadata`` is complete (for Alembic and tests).

A feature that adds tables adds its module here and a numbered migration under
``collector/migrations/versions``.
"""

from collector import budget_tables, schema, users

__all__ = ["budget_tables", "schema", "users"]
