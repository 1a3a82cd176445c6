"""The store lifecycle (portico/store/stores.py) without a server: staging → active → retired → gone."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from portico.store import entities as E
from portico.store import services as S
from portico.store import stores as ST
from portico.store.db import Database
from portico.store.schema import entities, stores


async def _service(db: Database) -> S.Service:
    async with db.write() as conn:
        await S.put_group(conn, "sub", "rg", "westeurope", {})
        sid = await S.create_service(
            conn,
            subscription_id="sub",
            group="rg",
            name=f"svc{uuid.uuid4().hex[:8]}",
            values={
                "location": "westeurope",
                "sku_name": "Developer",
                "sku_capacity": 1,
                "properties": {},
                "tags": {},
            },
        )
        svc = await S.get_service_by_id(conn, sid)
    assert svc is not None
    return svc


async def _fill(db: Database, store_id: int, n: int) -> None:
    rows = [(store_id, "namedValue", "", f"nv{i}", f"nv{i}", "etag", '{"value": "x"}') for i in range(n)]
    await E.bulk_insert(db, rows)


async def _rows(db: Database, store_id: int) -> int:
    async with db.read() as conn:
        q = select(func.count()).select_from(entities).where(entities.c.store_id == store_id)
        return int((await conn.execute(q)).scalar_one())


async def _state(db: Database, store_id: int) -> str | None:
    async with db.read() as conn:
        return await ST.state(conn, store_id)


async def test_a_new_service_has_one_active_store_it_owns(db: Database) -> None:
    svc = await _service(db)
    async with db.read() as conn:
        row = (await conn.execute(select(stores).where(stores.c.id == svc.active_store_id))).one()
    assert (row.state, row.service_id) == (ST.ACTIVE, svc.id)


async def test_switch_activates_staging_and_retires_the_old_store(db: Database) -> None:
    svc = await _service(db)
    old = svc.active_store_id
    await _fill(db, old, 3)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-1")
        operation_id = (
            await conn.execute(select(stores.c.operation_id).where(stores.c.id == staging))
        ).scalar_one()
    assert operation_id == "op-1"
    assert await _state(db, staging) == ST.STAGING
    await _fill(db, staging, 5)
    async with db.write() as conn:
        assert await ST.switch_active(conn, old, staging)
    assert await _state(db, staging) == ST.ACTIVE
    assert await _state(db, old) == ST.RETIRED
    await ST.collect(db, old)
    assert await _state(db, old) is None and await _rows(db, old) == 0
    assert await _rows(db, staging) == 5


async def test_an_abandoned_staging_store_never_becomes_active(db: Database) -> None:
    svc = await _service(db)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-6")
        assert await ST.retire_staging(conn, staging)
        assert not await ST.switch_active(conn, svc.active_store_id, staging)
    assert await _state(db, staging) == ST.RETIRED
    assert await _state(db, svc.active_store_id) == ST.ACTIVE


async def test_retire_staging_never_retires_an_active_store(db: Database) -> None:
    svc = await _service(db)
    async with db.write() as conn:
        assert not await ST.retire_staging(conn, svc.active_store_id)
    assert await _state(db, svc.active_store_id) == ST.ACTIVE


async def test_collect_leaves_stores_that_are_not_retired(db: Database) -> None:
    svc = await _service(db)
    await _fill(db, svc.active_store_id, 2)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-2")
    await _fill(db, staging, 2)
    await ST.collect(db, svc.active_store_id)
    await ST.collect(db, staging)
    assert await _rows(db, svc.active_store_id) == 2 and await _rows(db, staging) == 2


async def test_abandon_deletes_a_staging_store_in_batches(db: Database) -> None:
    svc = await _service(db)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-3")
    await _fill(db, staging, ST.GC_BATCH + 7)  # more than one batch
    await ST.abandon(db, staging)
    assert await _state(db, staging) is None and await _rows(db, staging) == 0


async def test_collect_retired_deletes_every_retired_store(db: Database) -> None:
    svc = await _service(db)
    staged = []
    for i in range(2):
        async with db.write() as conn:
            staging = await ST.create_staging(conn, svc.id, f"op-4{i}")
            await ST.retire_staging(conn, staging)
        await _fill(db, staging, 3)
        staged.append(staging)
    await ST.collect_retired(db)
    for staging in staged:
        assert await _state(db, staging) is None and await _rows(db, staging) == 0
    assert await _state(db, svc.active_store_id) == ST.ACTIVE


async def test_deleting_a_service_deletes_all_its_stores(db: Database) -> None:
    svc = await _service(db)
    await _fill(db, svc.active_store_id, 2)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-5")
    await _fill(db, staging, 2)
    async with db.write() as conn:
        await S.delete_service(conn, svc.id)
    for store_id in (svc.active_store_id, staging):
        assert await _state(db, store_id) is None and await _rows(db, store_id) == 0


async def test_a_soft_deleted_service_keeps_only_its_active_store_until_restored(db: Database) -> None:
    svc = await _service(db)
    await _fill(db, svc.active_store_id, 2)
    async with db.write() as conn:
        staging = await ST.create_staging(conn, svc.id, "op-7")
        await ST.delete_of_service(conn, svc.id, keep=svc.active_store_id)
        await ST.mark_deleted(conn, svc.active_store_id)
    assert await _state(db, staging) is None
    assert await _state(db, svc.active_store_id) == ST.DELETED
    assert await _rows(db, svc.active_store_id) == 2
    async with db.write() as conn:
        await ST.reactivate(conn, svc.active_store_id, svc.id)
    assert await _state(db, svc.active_store_id) == ST.ACTIVE
