"""role_assignments: a principal is named by object id AND issuer

Revision ID: 0005
Revises: 0004

An outside issuer trusted through PORTICO_TRUSTED_ISSUERS can put any `oid` in its tokens; keyed by
the id alone, such a token could borrow the roles of a local app whose client id it copied. Every
assignment stored before this revision was made for Portico's own apps or named an outside
principal by id only; all become assignments of the local issuer ("local"). An outside
principal's assignment must be made again with its issuer (`portico role assign --issuer`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("role_assignments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("issuer", sa.String(length=600), nullable=False, server_default="local")
        )
        batch_op.drop_constraint("uq_role_assignments_principal_role_scope", type_="unique")
        batch_op.create_unique_constraint(
            "uq_role_assignments_principal_issuer_role_scope", ["principal_id", "issuer", "role", "scope"]
        )


def downgrade() -> None:
    # Outside principals' assignments cannot be told apart without the issuer: they go.
    op.execute(sa.text("DELETE FROM role_assignments WHERE issuer <> 'local'"))
    with op.batch_alter_table("role_assignments", schema=None) as batch_op:
        batch_op.drop_constraint("uq_role_assignments_principal_issuer_role_scope", type_="unique")
        batch_op.create_unique_constraint(
            "uq_role_assignments_principal_role_scope", ["principal_id", "role", "scope"]
        )
        batch_op.drop_column("issuer")
