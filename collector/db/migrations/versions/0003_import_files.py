"""import_files: one row per imported (or refused) CSV billing export.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from collector.core.sqltypes import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_files",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("importer", sa.String(64), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_read", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("period_start", UTCDateTime(), nullable=True),
        sa.Column("period_end", UTCDateTime(), nullable=True),
        sa.Column("account", sa.String(255), nullable=False, server_default=""),
        sa.Column("imported_by", sa.String(255), nullable=False, server_default=""),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_import_files_sha256", "import_files", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_import_files_sha256", table_name="import_files")
    op.drop_table("import_files")
