"""credential tokens: access and refresh tokens that authorizations of credential providers
obtained, sealed; runtime state kept apart from `entities` so that backups never carry them

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credential_tokens",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("provider_key", sa.String(768), nullable=False),
        sa.Column("authorization_key", sa.String(768), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("refresh_at", sa.Float(), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "provider_key", "authorization_key", name="pk_credential_tokens"),
    )


def downgrade() -> None:
    op.drop_table("credential_tokens")
