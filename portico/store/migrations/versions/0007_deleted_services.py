"""deleted_services: soft-deleted API Management services, restorable until their purge date

Revision ID: 0007
Revises: 0006

Deleting a service (api-version 2020-12-01 and later, or its resource group) moves its row here and
keeps its active store (state "deleted") until it is purged or its purge date passes; a PUT with
`properties.restore: true` brings both back. See `portico.store.services.soft_delete_service`.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_services",
        sa.Column("name_key", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("resource_group", sa.String(length=90), nullable=False),
        sa.Column("location", sa.String(length=64), nullable=False),
        sa.Column("sku_name", sa.String(length=32), nullable=False),
        sa.Column("sku_capacity", sa.Integer(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("identity", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purge_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name_key", name=op.f("pk_deleted_services")),
    )
    op.create_index("ix_deleted_services_subscription", "deleted_services", ["subscription_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deleted_services_subscription", table_name="deleted_services")
    op.drop_table("deleted_services")
