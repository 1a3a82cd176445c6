"""names: one case-folding rule (`portico.names.fold_name`, Unicode case folding done in Python)

Revision ID: 0009
Revises: 0008

Before this revision entity names were compared through the database's lower(): SQLite's folds
ASCII only (so 'Ärger' and 'ärger' were two APIs) and PostgreSQL's depends on the collation.
Entities get a `name_key` column filled by Python and indexed instead of lower(name); the keys of
resource groups and deployments (Python's lower() before) are re-folded, and widened since folding
may lengthen a name.

Existing rows: names are ASCII-lowered in SQL (that is what case folding does to ASCII), and only
rows with other characters are re-keyed by Python. The change-log triggers are suspended while
the keys are filled: no entity changes, so gateways have nothing to reload. Names stored before
this revision that differ only by case stay as they are, each reached by its exact name; a
resource group or deployment whose new key another one already holds keeps its old key.
"""

import string
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from portico.names import fold_name

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ASCII_LOWER = f"translate(name, '{string.ascii_uppercase}', '{string.ascii_lowercase}')"


def _non_ascii(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"octet_length({column}) <> char_length({column})"
    return f"length(CAST({column} AS BLOB)) <> length({column})"


def _fill_entity_keys(bind: Any, dialect: str) -> None:
    # SQLite's lower() is ASCII-only by definition; PostgreSQL's is not, so translate() there.
    op.execute(f"UPDATE entities SET name_key = {'lower(name)' if dialect == 'sqlite' else _ASCII_LOWER}")
    rows = bind.execute(
        sa.text(f"SELECT store_id, kind, parent, name FROM entities WHERE {_non_ascii(dialect, 'name')}")
    ).all()
    if rows:
        bind.execute(
            sa.text(
                "UPDATE entities SET name_key = :key"
                " WHERE store_id = :store_id AND kind = :kind AND parent = :parent AND name = :name"
            ),
            [{"key": fold_name(r.name), **r._asdict()} for r in rows],
        )


def _rekey_groups(bind: Any, dialect: str, fold: Callable[[str], str]) -> None:
    rows = bind.execute(
        sa.text(
            f"SELECT subscription_id, name_key, name FROM resource_groups WHERE {_non_ascii(dialect, 'name')}"
        )
    ).all()
    for r in rows:
        key = fold(r.name)
        if key == r.name_key:
            continue
        taken = bind.execute(
            sa.text("SELECT 1 FROM resource_groups WHERE subscription_id = :s AND name_key = :k"),
            {"s": r.subscription_id, "k": key},
        ).first()
        if taken:
            continue
        for statement in (
            "UPDATE resource_groups SET name_key = :new WHERE subscription_id = :s AND name_key = :old",
            "UPDATE services SET resource_group_key = :new WHERE subscription_id = :s AND resource_group_key = :old",
            "UPDATE deployments SET group_key = :new WHERE subscription_id = :s AND group_key = :old",
        ):
            bind.execute(sa.text(statement), {"s": r.subscription_id, "old": r.name_key, "new": key})


def _rekey_deployments(bind: Any, dialect: str, fold: Callable[[str], str]) -> None:
    rows = bind.execute(
        sa.text(
            "SELECT subscription_id, group_key, name_key, name FROM deployments"
            f" WHERE {_non_ascii(dialect, 'name')}"
        )
    ).all()
    for r in rows:
        key = fold(r.name)
        if key == r.name_key:
            continue
        where = "subscription_id = :s AND group_key = :g AND name_key = :k"
        if bind.execute(
            sa.text(f"SELECT 1 FROM deployments WHERE {where}"), {"s": r[0], "g": r[1], "k": key}
        ).first():
            continue
        bind.execute(
            sa.text(f"UPDATE deployments SET name_key = :new WHERE {where}"),
            {"s": r[0], "g": r[1], "k": r.name_key, "new": key},
        )


def _without_update_trigger(bind: Any, dialect: str, work: Callable[[], None]) -> None:
    if dialect == "postgresql":
        op.execute("ALTER TABLE entities DISABLE TRIGGER trg_entities_cfg")
        work()
        op.execute("ALTER TABLE entities ENABLE TRIGGER trg_entities_cfg")
        return
    found = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'trg_entities_cfg_update'")
    ).first()
    if found:
        op.execute("DROP TRIGGER trg_entities_cfg_update")
    work()
    if found:
        op.execute(found[0])


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect == "postgresql":
        op.add_column("entities", sa.Column("name_key", sa.String(length=768), nullable=True))
        op.alter_column("resource_groups", "name_key", type_=sa.String(length=270))
        op.alter_column("services", "resource_group_key", type_=sa.String(length=270))
        op.alter_column("deployments", "group_key", type_=sa.String(length=270))
        op.alter_column("deployments", "name_key", type_=sa.String(length=192))
    else:
        # SQLite adds a NOT NULL column only with a default; every insert sets the key anyway.
        op.execute("ALTER TABLE entities ADD COLUMN name_key VARCHAR(768) NOT NULL DEFAULT ''")
    _without_update_trigger(bind, dialect, lambda: _fill_entity_keys(bind, dialect))
    if dialect == "postgresql":
        op.alter_column("entities", "name_key", nullable=False)
    op.drop_index("ix_entities_kind_lower_name", table_name="entities")
    op.create_index("ix_entities_kind_name_key", "entities", ["store_id", "kind", "name_key"])
    _rekey_groups(bind, dialect, fold_name)
    _rekey_deployments(bind, dialect, fold_name)


def downgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    _rekey_groups(bind, dialect, str.lower)
    _rekey_deployments(bind, dialect, str.lower)
    op.drop_index("ix_entities_kind_name_key", table_name="entities")
    op.create_index("ix_entities_kind_lower_name", "entities", ["store_id", "kind", sa.text("lower(name)")])
    op.execute("ALTER TABLE entities DROP COLUMN name_key")
