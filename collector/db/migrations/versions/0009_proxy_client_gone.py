"""proxy_events.client_gone: the caller disconnected before the upstream finished.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("proxy_events", sa.Column("client_gone", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("proxy_events") as batch:
        batch.drop_column("client_gone")
