"""Migration 0005 on a database made before it: role assignments become the local issuer's, and
an outside principal with the same id gets none of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from portico.arm.errors import ArmError
from portico.identity.rbac import assign_role, authorize, list_assignments
from portico.identity.validation import Principal
from portico.store.db import Database, _alembic_config
from portico.store.schema import metadata
from tests.support.postgres import create_database

SVC = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/svc1"
IDP = "https://idp.example/tenant-x/v2.0"
WRITE = "Microsoft.ApiManagement/service/write"


def _migrate_to(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        (command.downgrade if down else command.upgrade)(_alembic_config(connection), revision)

    return run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    return create_database(request.getfixturevalue("pg_url"), f"migration_{uuid.uuid4().hex[:12]}")


async def test_existing_assignments_become_local(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to("0004"))
            await conn.execute(
                text(
                    "INSERT INTO role_assignments (id, principal_id, role, scope, created_at) "
                    "VALUES ('a1', 'app-1', 'Owner', '/', :t), ('a2', 'app-2', 'Reader', :s, :t)"
                ),
                {"t": datetime.now(UTC), "s": SVC},
            )
        await db.start()  # what a server does on start: migrate to head
        async with db.engine.connect() as conn:
            changes = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert [c for c in changes if "role_assignments" in str(c)] == []  # head == store.schema

        listed = await list_assignments(db)
        assert [(a.id, a.principal_id, a.issuer) for a in listed] == [
            ("a1", "app-1", "local"),
            ("a2", "app-2", "local"),
        ]
        local = Principal("app-1", "https://portico.test/t/v2.0", "t", {}, local=True)
        outside = Principal("app-1", IDP, None, {})
        await authorize(db, local, WRITE, SVC)
        with pytest.raises(ArmError) as info:
            await authorize(db, outside, WRITE, SVC)
        assert info.value.status == 403
        # The same principal id, role and scope may now exist once per issuer, and only once.
        await assign_role(db, "app-1", "Owner", "/", issuer=IDP)
        await authorize(db, outside, WRITE, SVC)
        with pytest.raises(IntegrityError):
            async with db.write() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO role_assignments (id, principal_id, issuer, role, scope, created_at) "
                        "VALUES ('a3', 'app-1', 'local', 'Owner', '/', :t)"
                    ),
                    {"t": datetime.now(UTC)},
                )

        # Down again: the outside principal's assignment cannot be kept without its issuer.
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate_to("0004", down=True))
            rows = (await conn.execute(text("SELECT id FROM role_assignments ORDER BY id"))).all()
        assert [r.id for r in rows] == ["a1", "a2"]
    finally:
        await db.close()
