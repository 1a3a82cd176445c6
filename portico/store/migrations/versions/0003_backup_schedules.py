"""backup schedules (issue 5): one row per schedule of a service

Revision ID: 0003
Revises: 0002

See `portico.store.schema.backup_schedules` and `portico/dr/scheduler.py`. No foreign key to
`services` (like the other tables): the scheduler removes the schedules of a deleted service
(`service_id` + `service_created_at` name one service instance: SQLite may reuse an id).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("service_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name_key", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=True),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("running", sa.String(length=120), nullable=True),
        sa.Column("last_run", sa.JSON(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_schedules")),
        sa.UniqueConstraint("service_id", "name_key", name="uq_backup_schedules_service_name"),
    )
    op.create_index("ix_backup_schedules_next_run_at", "backup_schedules", ["next_run_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_backup_schedules_next_run_at", table_name="backup_schedules")
    op.drop_table("backup_schedules")
