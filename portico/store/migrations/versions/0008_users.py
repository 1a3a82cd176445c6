"""people of the identity provider: users, delegated grants (device codes, authorization codes,
refresh tokens), and public clients (apps without a secret, with redirect URIs)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("public_client", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("redirect_uris", sa.JSON(), nullable=True))
    op.create_table(
        "users",
        sa.Column("oid", sa.String(64), nullable=False),
        sa.Column("upn_key", sa.String(256), nullable=False),
        sa.Column("upn", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("failed_sign_ins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("oid", name="pk_users"),
        sa.UniqueConstraint("upn_key", name="uq_users_upn_key"),
    )
    op.create_table(
        "auth_grants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_code", sa.String(16), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_oid", sa.String(64), nullable=True),
        sa.Column("family", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_grants"),
        sa.UniqueConstraint("user_code", name="uq_auth_grants_user_code"),
    )
    op.create_index("ix_auth_grants_user_oid", "auth_grants", ["user_oid"])
    op.create_index("ix_auth_grants_family", "auth_grants", ["family"])
    op.create_index("ix_auth_grants_expires_at", "auth_grants", ["expires_at"])


def downgrade() -> None:
    op.drop_table("auth_grants")
    op.drop_table("users")
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("redirect_uris")
        batch.drop_column("public_client")
