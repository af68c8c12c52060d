"""dashboard_sessions and users.must_change_password: sign-in that survives a refresh; first passwords changed.

* ``dashboard_sessions``: one row per signed-in browser, found by the SHA-256 of its cookie's token
  (:mod:`collector.auth.sessions`).
* ``users.must_change_password``: set for generated passwords (the first admin's, printed once
  to the console and so to its logs) and admin resets; the dashboard shows only a
  change-password form until the account's owner picks a new one. Existing accounts are not
  flagged: nobody knows which of their passwords were generated.

Revision ID: 0014
Revises: 0011
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import UTCDateTime

revision = "0014"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("ticket_hash", sa.String(64), nullable=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ux_dashboard_sessions_token", "dashboard_sessions", ["token_hash"], unique=True)
    op.create_index("ux_dashboard_sessions_ticket", "dashboard_sessions", ["ticket_hash"], unique=True)
    op.create_index("ix_dashboard_sessions_user", "dashboard_sessions", ["user_name"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("must_change_password")
    op.drop_table("dashboard_sessions")
