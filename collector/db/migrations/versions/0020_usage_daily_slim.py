"""usage_daily_slim: usage_daily summed per UTC day without project, key, user, team, tier, line item.

A report grouped by provider and model (and the money rule's keys) reads one row per group it
returns instead of one per project, key and user; the table is rebuilt lazily per written day
from ``usage_daily`` (``collector.core.rollups``). Every day that has usage starts marked, so the
first read of a day builds it.

Revision ID: 0020
Revises: 0018
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import ScaledDecimal, UTCDateTime

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None

COUNTS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
)


def _key(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def upgrade() -> None:
    op.create_table(
        "usage_daily_slim",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("day", UTCDateTime(), nullable=False),
        _key("provider", 64),
        _key("account"),
        _key("source", 16),
        _key("kind", 64),
        _key("model"),
        _key("basis", 16),
        _key("currency", 3),
        _key("quantity_unit", 32),
        *(sa.Column(c, sa.BigInteger(), nullable=False, server_default="0") for c in COUNTS),
        sa.Column("quantity", ScaledDecimal(6), nullable=False, server_default="0"),
        sa.Column("cost", ScaledDecimal(10), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_usage_daily_slim_day", "usage_daily_slim", ["day"])
    op.create_table(
        "usage_daily_slim_dirty",
        sa.Column("day", UTCDateTime(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default="1"),
    )
    op.execute("INSERT INTO usage_daily_slim_dirty (day, seq) SELECT DISTINCT day, 1 FROM usage_daily")


def downgrade() -> None:
    op.drop_table("usage_daily_slim_dirty")
    op.drop_index("ix_usage_daily_slim_day", table_name="usage_daily_slim")
    op.drop_table("usage_daily_slim")
