"""entities: names ignore case (ARM's rule) - the by-kind name index is on lower(name)

Revision ID: 0004
Revises: 0003

The engine resolves a name exactly, else ignoring case (`portico.store.entities.find_name`), and
the link clean-ups find links by the name they point at (`names_by_kind`, `remove_named`). Both
look up (store_id, kind, lower(name)); the index replaces `ix_entities_kind_name` on
(store_id, kind, name) rather than joining it, so a restore's bulk insert maintains as many
indexes as before. Names stored before this revision that differ only by case stay as they are:
each is still reached by its exact name.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_entities_kind_name", table_name="entities")
    op.create_index("ix_entities_kind_lower_name", "entities", ["store_id", "kind", sa.text("lower(name)")])


def downgrade() -> None:
    op.drop_index("ix_entities_kind_lower_name", table_name="entities")
    op.create_index("ix_entities_kind_name", "entities", ["store_id", "kind", "name"])
