"""Proxy enforcement: per-token rate limits, enforced budgets, and the refusals they cause.

* ``monitor_tokens.rpm_limit`` / ``tpm_limit``: requests and tokens (input + output) per minute
  a token may use through the proxy; 0 = no limit (the default: limits are opt-in).
* ``budgets.enforce``: the proxy refuses calls in the budget's scope once its period's spend
  reaches the amount; ``budgets.lifted_until``: an admin lifted the cap until then.
* ``proxy_refusals``: one row per call the proxy refused (rate limit or budget cap); refusals
  are never usage rows.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("monitor_tokens", sa.Column("rpm_limit", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("monitor_tokens", sa.Column("tpm_limit", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("budgets", sa.Column("enforce", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("budgets", sa.Column("lifted_until", UTCDateTime(), nullable=True))
    op.create_table(
        "proxy_refusals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("upstream", sa.String(64), nullable=False, server_default=""),
        sa.Column("token_id", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("team", sa.String(255), nullable=False, server_default=""),
        sa.Column("project", sa.String(255), nullable=False, server_default=""),
        sa.Column("budget_id", sa.Integer(), nullable=True),
        sa.Column("budget_name", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("ix_proxy_refusals_ts", "proxy_refusals", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_proxy_refusals_ts", table_name="proxy_refusals")
    op.drop_table("proxy_refusals")
    with op.batch_alter_table("budgets") as batch:
        batch.drop_column("lifted_until")
        batch.drop_column("enforce")
    with op.batch_alter_table("monitor_tokens") as batch:
        batch.drop_column("tpm_limit")
        batch.drop_column("rpm_limit")
