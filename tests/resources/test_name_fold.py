"""Names ignore case by one rule (`portico.names.fold_name`) on SQLite and PostgreSQL alike: in the
store's look-ups, in a restore's bulk insert, and for rows written before migration 0006."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection

from portico.store import deployments as D
from portico.store import entities as E
from portico.store import services as S
from portico.store.db import Database, _alembic_config
from portico.store.schema import config_changes, entities, stores
from tests.support.postgres import create_database

pytestmark = pytest.mark.slow  # PostgreSQL

_n = itertools.count(1)

# Pairs that differ only by case, beyond ASCII: umlaut, Greek final sigma (which lower() keeps apart
# from the medial one), sharp s (upper case 'SS').
PAIRS = [("Ärger", "äRGER"), ("ΟΔΟΣ", "οδοσ"), ("Straße", "STRASSE")]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fold.db'}"
    return create_database(request.getfixturevalue("pg_url"), f"fold_{next(_n)}")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    d = Database(db_url)
    await d.start()
    yield d
    await d.close()


async def _store(db: Database, state: str = "active") -> int:
    async with db.write() as conn:
        res = await conn.execute(insert(stores).values(state=state, created_at=datetime.now(UTC)))
        return int(res.inserted_primary_key[0])


async def test_names_match_ignoring_case_beyond_ascii(db: Database) -> None:
    store = await _store(db)
    async with db.write() as conn:
        for name, _other in PAIRS:
            await E.put(conn, store, "api", "", name, None, {"path": name})
    async with db.read() as conn:
        for name, other in PAIRS:
            assert await E.find_name(conn, store, "api", "", other) == name
            assert await E.names_by_kind(conn, store, "api", name) == [("", name)]
        assert await E.find_name(conn, store, "api", "", "Arger") is None


async def test_bulk_insert_fills_the_name_key(db: Database) -> None:
    store = await _store(db, "staging")
    await E.bulk_insert(db, [(store, "product", "", name, None, "e", "{}") for name, _ in PAIRS])
    async with db.read() as conn:
        for name, other in PAIRS:
            assert await E.find_name(conn, store, "product", "", other) == name


def _before_fold(sync: Connection) -> None:
    """Upgrade to the revision migration 0006 follows."""
    cfg = _alembic_config(sync)
    previous = ScriptDirectory.from_config(cfg).get_revision("0009").down_revision
    assert isinstance(previous, str)
    command.upgrade(cfg, previous)


async def test_migration_keys_rows_stored_before_it(db_url: str) -> None:
    """Rows written before migration 0006 (no name key; resource group and deployment keys by
    lower()) are found ignoring case after the upgrade, and filling the keys logs no configuration
    change (gateways have nothing to reload)."""
    db = Database(db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_before_fold)
        async with db.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO stores (state, created_at, config_version) VALUES ('active', :t, 0)"),
                {"t": datetime.now(UTC)},
            )
            store = (await conn.execute(text("SELECT max(id) FROM stores"))).scalar_one()
            for name in ("Ärger", "ΟΔΟΣ", "Plain"):
                await conn.execute(
                    text(
                        "INSERT INTO entities (store_id, kind, parent, name, etag, data)"
                        " VALUES (:s, 'api', '', :n, 'e', '{}')"
                    ),
                    {"s": store, "n": name},
                )
            await conn.execute(
                text(
                    "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags, created_at)"
                    " VALUES ('sub', :k, :n, 'westeurope', '{}', :t)"
                ),
                {"k": "οδος", "n": "ΟΔΟΣ", "t": datetime.now(UTC)},
            )
            await conn.execute(
                text(
                    "INSERT INTO deployments (subscription_id, group_key, name_key, name, state, run_id,"
                    " node, cancel_requested, body, template, operations, created_at, updated_at)"
                    " VALUES ('sub', 'οδος', 'σος', 'ΣΟΣ', 'Succeeded', 'r', 'n', :f, '{}', '{}', '[]', :t, :t)"
                ),
                {"f": False, "t": datetime.now(UTC)},
            )
            before = (
                await conn.execute(select(stores.c.config_version).where(stores.c.id == store))
            ).scalar()
            logged = len((await conn.execute(select(config_changes))).all())
        await db.start()  # upgrade to head
        async with db.read() as conn:
            assert await E.find_name(conn, store, "api", "", "äRGER") == "Ärger"
            assert await E.find_name(conn, store, "api", "", "οδοσ") == "ΟΔΟΣ"
            assert await E.find_name(conn, store, "api", "", "PLAIN") == "Plain"
            keys = dict((await conn.execute(select(entities.c.name, entities.c.name_key))).all())
            assert keys == {"Ärger": "ärger", "ΟΔΟΣ": "οδοσ", "Plain": "plain"}
            assert (await S.get_group(conn, "sub", "οδοσ")) is not None
            assert (await D.get(conn, "sub", "ΟΔΟΣ", "σοσ")) is not None  # noqa: RUF001
            after = (await conn.execute(select(stores.c.config_version).where(stores.c.id == store))).scalar()
            assert after == before
            assert len((await conn.execute(select(config_changes))).all()) == logged
    finally:
        await db.close()
