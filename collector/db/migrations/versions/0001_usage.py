"""usage and usage_daily: the normalised usage record and its daily rollup.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import ScaledDecimal, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _key(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def _dimensions() -> list[sa.Column]:
    return [
        _key("provider", 64),
        _key("account"),
        _key("source", 16),
        _key("kind", 64),
    ]


def _measures() -> list[sa.Column]:
    counts = [
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "requests",
    ]
    return [_count(c) for c in counts] + [
        sa.Column("quantity", ScaledDecimal(6), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("record_key", sa.LargeBinary(16), nullable=False),
        *_dimensions(),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("bucket_end", UTCDateTime(), nullable=False),
        _key("project"),
        _key("api_key_id"),
        _key("user_id"),
        _key("model"),
        _key("service_tier", 64),
        sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()),
        _key("line_item", 512),
        _key("variant"),
        _key("team"),
        *_measures(),
        _key("quantity_unit", 32),
        sa.Column("cost", ScaledDecimal(10), nullable=True),
        _key("currency", 3),
        _key("basis", 16),
        _key("price_version", 64),
        _key("source_ref"),
        sa.Column("details", sa.Text(), nullable=False, server_default=""),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_start", "record_key", name="pk_usage"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "usage_daily",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("day", UTCDateTime(), nullable=False),
        *_dimensions(),
        _key("project"),
        _key("api_key_id"),
        _key("user_id"),
        _key("model"),
        _key("service_tier", 64),
        sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()),
        _key("line_item", 512),
        _key("team"),
        _key("basis", 16),
        _key("currency", 3),
        _key("quantity_unit", 32),
        *_measures(),
        sa.Column("cost", ScaledDecimal(10), nullable=True),
        _count("rows"),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"])


def downgrade() -> None:
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_table("usage_daily")
    op.drop_table("usage")
