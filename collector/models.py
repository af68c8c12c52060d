"""Imports every table module so ``SQLModel.metadata`` is complete (for Alembic and tests).

A feature that adds tables adds its module here and a numbered migration under
``collector/migrations/versions``.
"""

import collector.imports  # noqa: F401  (issue 4: import_files)
from collector import schema

__all__ = ["schema"]
