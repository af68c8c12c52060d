"""connections.options and connections.facts: plain settings and provider-reported levels.

* ``options``: a connection's non-secret settings as JSON (an Azure scope, a BigQuery table, an
  AWS region or role ...). Secrets stay in ``key_encrypted``, which for cloud billing providers
  holds the whole multi-part credential.
* ``facts``: what the provider last said about the account that is not usage (a prepaid
  balance, an invoice preview), as JSON with the time it was read.

Revision ID: 0013
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("options", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("facts", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("facts")
        batch.drop_column("options")
