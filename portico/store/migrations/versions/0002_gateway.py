"""gateway: configuration change log (triggers), usage report columns

Revision ID: 0002
Revises: 0001

Live configuration (issue 4): every gateway node keeps compiled tables in memory and must see any
management change within a second without scanning `entities`. Row triggers on `entities` keep,
for each *active* store only, a version counter (`stores.config_version`) and a change log
(`config_changes`: which entity keys changed at which version). A node polls one tiny query
(services joined to their active store) and then reads only the changed keys. Writes to staging
or retired stores (restore loads, garbage collection) log nothing: the trigger's condition is one
primary-key look-up in `stores`. The log is bounded by the trigger itself (it keeps the last
`KEEP` versions per store) and cleared with its store.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KEEP = 10000  # change-log rows kept per store; a node further behind reloads the service fully

_SQLITE = [
    # One trigger per event: SQLite has no multi-event triggers. NEW/OLD row keys are logged.
    *(
        f"""CREATE TRIGGER trg_entities_cfg_{event.lower()} AFTER {event} ON entities
        WHEN (SELECT state FROM stores WHERE id = {row}.store_id) = 'active'
        BEGIN
            UPDATE stores SET config_version = config_version + 1 WHERE id = {row}.store_id;
            INSERT INTO config_changes (store_id, version, kind, parent, name)
                SELECT {row}.store_id, config_version, {row}.kind, {row}.parent, {row}.name
                FROM stores WHERE id = {row}.store_id;
            DELETE FROM config_changes WHERE store_id = {row}.store_id
                AND version <= (SELECT config_version FROM stores WHERE id = {row}.store_id) - {KEEP};
        END"""
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD"))
    ),
    """CREATE TRIGGER trg_stores_cfg_delete AFTER DELETE ON stores
    BEGIN DELETE FROM config_changes WHERE store_id = OLD.id; END""",
]

_POSTGRES = [
    f"""CREATE FUNCTION portico_entities_cfg() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        r record;
        v bigint;
    BEGIN
        IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
        UPDATE stores SET config_version = config_version + 1
            WHERE id = r.store_id AND state = 'active' RETURNING config_version INTO v;
        IF FOUND THEN
            INSERT INTO config_changes (store_id, version, kind, parent, name)
                VALUES (r.store_id, v, r.kind, r.parent, r.name);
            DELETE FROM config_changes WHERE store_id = r.store_id AND version <= v - {KEEP};
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_entities_cfg AFTER INSERT OR UPDATE OR DELETE ON entities
    FOR EACH ROW EXECUTE FUNCTION portico_entities_cfg()""",
    """CREATE FUNCTION portico_stores_cfg_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN DELETE FROM config_changes WHERE store_id = OLD.id; RETURN NULL; END $$""",
    """CREATE TRIGGER trg_stores_cfg_delete AFTER DELETE ON stores
    FOR EACH ROW EXECUTE FUNCTION portico_stores_cfg_delete()""",
]


def upgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "config_changes",
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parent", sa.String(length=600), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "version", name=op.f("pk_config_changes")),
    )
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ts_epoch", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("url", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("backend_status", sa.Integer(), nullable=True))
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES if dialect == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_entities_cfg ON entities")
        op.execute("DROP TRIGGER IF EXISTS trg_stores_cfg_delete ON stores")
        op.execute("DROP FUNCTION IF EXISTS portico_entities_cfg()")
        op.execute("DROP FUNCTION IF EXISTS portico_stores_cfg_delete()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_entities_cfg_{name}")
        op.execute("DROP TRIGGER IF EXISTS trg_stores_cfg_delete")
    with op.batch_alter_table("usage", schema=None) as batch_op:
        batch_op.drop_column("backend_status")
        batch_op.drop_column("url")
        batch_op.drop_column("request_id")
        batch_op.drop_column("ts_epoch")
    op.drop_table("config_changes")
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("config_version")
