"""connections, sync_state, sync_runs: registered admin keys and the API sync's state and log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _str(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def _text(name: str) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=False, server_default="")


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _str("provider", 64),
        _str("label"),
        _text("key_encrypted"),
        _str("key_hint", 64),
        _str("base_url", 512),
        _str("account"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()),
        _str("status", 32),
        _text("last_error"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_tested_at", UTCDateTime(), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("label", name="uq_connections_label"),
    )
    op.create_table(
        "sync_state",
        sa.Column("connection_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("endpoint", sa.String(64), primary_key=True),
        sa.Column("high_water", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        _str("provider", 64),
        _str("endpoint", 64),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("through", UTCDateTime(), nullable=True),
        sa.Column("pages", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("duration_seconds", sa.Float(), nullable=False, server_default="0"),
        _str("status", 16),
        _text("error"),
        _str("runner", 128),
    )
    op.create_index("ix_sync_runs_connection_id", "sync_runs", ["connection_id"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_connection_id", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("sync_state")
    op.drop_table("connections")
