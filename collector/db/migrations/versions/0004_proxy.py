"""proxy_events and monitor_tokens: the proxy sidecar's raw events and attribution tokens.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import ScaledDecimal, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _str(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def _flag(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())


def upgrade() -> None:
    op.create_table(
        "proxy_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        _str("provider", 64),
        _str("upstream", 64),
        _str("endpoint", 64),
        _str("method", 8),
        _str("model"),
        sa.Column("status", sa.Integer(), nullable=False, server_default="0"),
        _flag("stream"),
        _flag("partial"),
        _flag("usage_known"),
        _str("error", 64),
        _count("input_tokens"),
        _count("cache_read_tokens"),
        _count("cache_write_5m_tokens"),
        _count("cache_write_1h_tokens"),
        _count("output_tokens"),
        _count("reasoning_tokens"),
        sa.Column("latency_ms", sa.Float(), nullable=False, server_default="0"),
        sa.Column("ttfb_ms", sa.Float(), nullable=False, server_default="0"),
        _str("team"),
        _str("project"),
        sa.Column("token_id", sa.Integer(), nullable=False, server_default="0"),
        _str("api_key_fp", 64),
        _str("service_tier", 64),
        _str("response_id", 128),
        sa.Column("cost", ScaledDecimal(10), nullable=True),
        _str("basis", 16),
        _str("price_version", 64),
        _flag("rolled_up"),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_proxy_events_ts", "proxy_events", ["ts"])
    op.create_index("ix_proxy_events_rollup", "proxy_events", ["rolled_up", "hour"])
    op.create_table(
        "monitor_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        _str("hint", 32),
        _str("team"),
        _str("project"),
        _str("label"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("monitor_tokens")
    op.drop_index("ix_proxy_events_rollup", table_name="proxy_events")
    op.drop_index("ix_proxy_events_ts", table_name="proxy_events")
    op.drop_table("proxy_events")
