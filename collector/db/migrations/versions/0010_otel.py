"""otel_events and otel_series: the OTLP receiver's GenAI events and cumulative series.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import ScaledDecimal, UTCDateTime

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def _str(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=False, server_default="")


def _count(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "otel_events",
        sa.Column("id", sa.String(64), primary_key=True),
        _str("signal", 8),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False),
        _str("resource_fp", 32),
        _str("provider", 64),
        _str("operation", 64),
        _str("model"),
        _str("service"),
        _str("environment", 64),
        _str("team"),
        _str("project"),
        _count("input_tokens"),
        _count("cache_read_tokens"),
        _count("cache_write_5m_tokens"),
        _count("cache_write_1h_tokens"),
        _count("output_tokens"),
        _count("reasoning_tokens"),
        _count("requests"),
        _count("errors"),
        _str("response_id", 128),
        sa.Column("cost", ScaledDecimal(10), nullable=True),
        _str("basis", 16),
        _str("price_version", 64),
        sa.Column("state", sa.String(16), nullable=False, server_default="new"),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_otel_events_state", "otel_events", ["state", "hour"])
    op.create_index("ix_otel_events_match", "otel_events", ["resource_fp", "provider", "ts"])
    op.create_index("ix_otel_events_ts", "otel_events", ["ts"])
    op.create_table(
        "otel_series",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("last_time_ns", sa.BigInteger(), nullable=False),
        _count("total"),
        _count("calls"),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("otel_series")
    op.drop_index("ix_otel_events_ts", table_name="otel_events")
    op.drop_index("ix_otel_events_match", table_name="otel_events")
    op.drop_index("ix_otel_events_state", table_name="otel_events")
    op.drop_table("otel_events")
