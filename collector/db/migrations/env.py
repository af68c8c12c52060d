"""Alembic environment: runs on the connection handed in by :mod:`collector.db.migrate`."""

from alembic import context
from sqlmodel import SQLModel

import collector.db.tables  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
