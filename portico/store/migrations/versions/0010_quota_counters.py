"""quota counters: what the gateway's quota and quota-by-key policies counted, per store, counter
key and period, shared by every gateway process and read/reset by the quotas management API

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_counters",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("counter_key", sa.String(400), nullable=False),
        sa.Column("period_key", sa.String(200), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("kb", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "counter_key", "period_key", name="pk_quota_counters"),
    )
    op.create_index("ix_quota_counters_period_end", "quota_counters", ["period_end"])


def downgrade() -> None:
    op.drop_index("ix_quota_counters_period_end", table_name="quota_counters")
    op.drop_table("quota_counters")
