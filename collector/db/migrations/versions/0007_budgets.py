"""budgets: budgets, alert_events, team_rules (versioned) and fx_rates.

Revision ID: 0007
Revises: 0005 (0001 on main; the lead re-chains the migrations when merging branches)
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime

revision = "0007"
# This branch already holds 0005 (users), chained on 0001; chaining there keeps one head here.
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_value", sa.String(255), nullable=False, server_default=""),
        sa.Column("amount", ScaledDecimal(MONEY_SCALE), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False, server_default="USD"),
        sa.Column("period", sa.String(16), nullable=False, server_default="month"),
        sa.Column("starts_at", UTCDateTime(), nullable=True),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("thresholds", sa.String(64), nullable=False, server_default=""),
        sa.Column("forecast_threshold", sa.Integer(), nullable=False, server_default="100"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("budget_id", sa.Integer(), nullable=True),
        sa.Column("period_start", UTCDateTime(), nullable=True),
        sa.Column("threshold", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(255), nullable=False, server_default=""),
        sa.Column("body", sa.Text(), nullable=False, server_default=""),
        sa.Column("link", sa.String(1024), nullable=False, server_default=""),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ux_alert_events_key", "alert_events", ["alert_key"], unique=True)
    op.create_table(
        "team_rules",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False, server_default=""),
        sa.Column("match_field", sa.String(32), nullable=False),
        sa.Column("pattern", sa.String(255), nullable=False),
        sa.Column("team", sa.String(255), nullable=False),
        sa.Column("cost_centre", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("note", sa.String(255), nullable=False, server_default=""),
        sa.Column("is_rule", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_team_rules_version", "team_rules", ["version"])
    op.create_table(
        "fx_rates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("day", UTCDateTime(), nullable=False),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("quote", sa.String(3), nullable=False),
        sa.Column("rate", ScaledDecimal(MONEY_SCALE), nullable=False),
        sa.Column("source", sa.String(255), nullable=False, server_default="manual"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ux_fx_rates_day_pair", "fx_rates", ["day", "base", "quote"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_fx_rates_day_pair", table_name="fx_rates")
    op.drop_table("fx_rates")
    op.drop_index("ix_team_rules_version", table_name="team_rules")
    op.drop_table("team_rules")
    op.drop_index("ux_alert_events_key", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_table("budgets")
