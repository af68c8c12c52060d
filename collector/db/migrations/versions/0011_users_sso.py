"""users.sso: only accounts marked for single sign-on may be signed in through OpenID Connect.

Before, any account whose name matched the identity provider's e-mail could be reached through
SSO, password accounts (``admin``) included. Accounts without a password could only ever sign in
through SSO, so they are marked; password accounts are not.

Revision ID: 0011
Revises: 0013
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sso", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(sa.text("UPDATE users SET sso = :yes WHERE password_hash = ''").bindparams(yes=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sso")
