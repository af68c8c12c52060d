"""One number per account-day: usage.model_raw, billing_preferences, and a rebuilt daily rollup.

* ``usage.model_raw`` keeps the model id as the source sent it (the natural key hashes it, in the
  position ``model`` had, so every existing row keeps its key); ``model`` becomes the canonical id
  shared across sources.
* ``billing_preferences``: an admin's choice of the billed source that counts for a provider account.
* The daily rollup is rebuilt: it now groups by the canonical model and keeps the average of level
  units (bytes stored) instead of their sum.

Revision ID: 0008
Revises: 0010
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

from collector.core.model_ids import canonical_model
from collector.core.sqltypes import UTCDateTime
from collector.core.store import rebuild_all_daily

revision = "0008"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage", sa.Column("model_raw", sa.String(255), nullable=False, server_default=""))
    op.create_table(
        "billing_preferences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("set_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("set_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ux_billing_preferences", "billing_preferences", ["provider", "account"], unique=True)
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE usage SET model_raw = model"))
    pairs = conn.execute(sa.text("SELECT DISTINCT provider, model_raw FROM usage WHERE model_raw <> ''")).all()
    for provider, raw in pairs:
        canonical = canonical_model(provider, raw)
        if canonical != raw:
            conn.execute(
                sa.text("UPDATE usage SET model = :m WHERE provider = :p AND model_raw = :r"),
                {"m": canonical, "p": provider, "r": raw},
            )
    rebuild_all_daily(conn, count=False)  # data_version comes with 0015


def downgrade() -> None:
    op.execute("UPDATE usage SET model = model_raw WHERE model_raw <> ''")
    op.drop_index("ux_billing_preferences", table_name="billing_preferences")
    op.drop_table("billing_preferences")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("model_raw")
