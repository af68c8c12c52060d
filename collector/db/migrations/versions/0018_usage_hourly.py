"""usage_hourly: usage summed per UTC hour for hourly charts, rebuilt lazily per written day.

``usage_hourly`` keeps provider, account, source, kind, model and the money keys per hour;
``usage_hourly_dirty`` holds the days written since their hourly rows were rebuilt. Every day
that has usage starts dirty here, so the first hourly read of a day builds it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import ScaledDecimal, UTCDateTime

revision = "0018"
down_revision = "0017"
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
        "usage_hourly",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hour", UTCDateTime(), nullable=False),
        sa.Column("daily", sa.Boolean(), nullable=False, server_default=sa.false()),
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
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"])
    op.create_table(
        "usage_hourly_dirty",
        sa.Column("day", UTCDateTime(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, server_default="1"),
    )
    op.execute("INSERT INTO usage_hourly_dirty (day, seq) SELECT DISTINCT day, 1 FROM usage_daily")


def downgrade() -> None:
    op.drop_table("usage_hourly_dirty")
    op.drop_index("ix_usage_hourly_hour", table_name="usage_hourly")
    op.drop_table("usage_hourly")
