"""The lifecycle of stores (the `stores` table): every write to it goes through this module.

A store is one generation of a service's entities. Its states move one way:
`staging` (being loaded by a restore) → `active` (the one the service reads and writes) →
`retired` (no longer read; its rows are deleted by `collect`, then the store row itself).
A staging store that is abandoned goes straight to `retired`. The active store of a soft-deleted
service is `deleted` (kept, unserved) until the service is restored (`active` again) or purged. A store is always retired before
any of its rows are deleted, so nothing reads a half-deleted store.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.store import quotas
from portico.store.db import Database
from portico.store.schema import credential_tokens, entities, stores

log = logging.getLogger("portico.store")

STAGING, ACTIVE, RETIRED = "staging", "active", "retired"
DELETED = "deleted"  # the active store of a soft-deleted service, kept for its restore
GC_BATCH = 20000


async def create_active(conn: AsyncConnection) -> int:
    """The first store of a new service (its owner is set by `assign` once the service row exists)."""
    return int(
        (
            await conn.execute(
                insert(stores).values(state=ACTIVE, created_at=datetime.now(UTC)).returning(stores.c.id)
            )
        ).scalar_one()
    )


async def assign(conn: AsyncConnection, store_id: int, service_id: int) -> None:
    await conn.execute(update(stores).where(stores.c.id == store_id).values(service_id=service_id))


async def create_staging(conn: AsyncConnection, service_id: int, operation_id: str) -> int:
    """A new, empty staging store of `service_id`, owned by the operation that loads it."""
    return int(
        (
            await conn.execute(
                insert(stores)
                .values(
                    service_id=service_id,
                    state=STAGING,
                    operation_id=operation_id,
                    created_at=datetime.now(UTC),
                )
                .returning(stores.c.id)
            )
        ).scalar_one()
    )


async def state(conn: AsyncConnection, store_id: int) -> str | None:
    return (await conn.execute(select(stores.c.state).where(stores.c.id == store_id))).scalar_one_or_none()


async def switch_active(conn: AsyncConnection, retiring: int, staging: int) -> bool:
    """Make the (fully loaded, verified) staging store active and retire the store it replaces.
    Call it in the transaction that points the service at `staging`, and roll that back on False:
    `staging` was no longer a staging store (it was abandoned meanwhile) and nothing changed."""
    res = await conn.execute(
        update(stores).where(stores.c.id == staging, stores.c.state == STAGING).values(state=ACTIVE)
    )
    if not res.rowcount:
        return False
    await conn.execute(update(stores).where(stores.c.id == retiring).values(state=RETIRED))
    await quotas.move(conn, retiring, staging)  # runtime data: the service keeps its quota counters
    return True


async def retire_staging(conn: AsyncConnection, store_id: int) -> bool:
    """Abandon a staging store (never an active one); True when it was staging."""
    res = await conn.execute(
        update(stores).where(stores.c.id == store_id, stores.c.state == STAGING).values(state=RETIRED)
    )
    return bool(res.rowcount)


async def drop(conn: AsyncConnection, ids: list[int]) -> None:
    """Delete these stores with their rows, in this transaction."""
    if ids:
        # Retire first: the gateway's change-log triggers track active stores only, and one
        # change-log bump per deleted row is quadratic within a transaction on PostgreSQL.
        await conn.execute(update(stores).where(stores.c.id.in_(ids)).values(state=RETIRED))
        await conn.execute(delete(entities).where(entities.c.store_id.in_(ids)))
        await quotas.delete_of_stores(conn, ids)
        await conn.execute(delete(credential_tokens).where(credential_tokens.c.store_id.in_(ids)))
        await conn.execute(delete(stores).where(stores.c.id.in_(ids)))


async def delete_of_service(conn: AsyncConnection, service_id: int, *, keep: int | None = None) -> None:
    """Delete every store of a service (but `keep`) with their rows, in this transaction."""
    q = select(stores.c.id).where(stores.c.service_id == service_id)
    if keep is not None:
        q = q.where(stores.c.id != keep)
    await drop(conn, [r.id for r in (await conn.execute(q)).all()])


async def mark_deleted(conn: AsyncConnection, store_id: int) -> None:
    """Keep the active store of a service being soft-deleted, unserved."""
    await conn.execute(update(stores).where(stores.c.id == store_id).values(state=DELETED))


async def reactivate(conn: AsyncConnection, store_id: int, service_id: int) -> None:
    """The kept store of a restored soft-deleted service becomes its active store."""
    await conn.execute(
        update(stores).where(stores.c.id == store_id).values(service_id=service_id, state=ACTIVE)
    )


async def retired(conn: AsyncConnection) -> list[int]:
    return [r.id for r in (await conn.execute(select(stores.c.id).where(stores.c.state == RETIRED))).all()]


async def collect(db: Database, store_id: int) -> None:
    """Delete a retired store's rows, then the store. On SQLite in batches, so other writers wait at
    most briefly. A store that is not retired is left alone."""
    try:
        while True:
            async with db.write() as conn:
                if await state(conn, store_id) != RETIRED:
                    return
                if db.sqlite:
                    res = await conn.exec_driver_sql(
                        "DELETE FROM entities WHERE store_id = ? AND (kind, parent, name) IN"
                        f" (SELECT kind, parent, name FROM entities WHERE store_id = ? LIMIT {GC_BATCH})",
                        (store_id, store_id),
                    )
                    done = res.rowcount < GC_BATCH
                else:
                    await conn.execute(delete(entities).where(entities.c.store_id == store_id))
                    done = True
                if done:
                    await quotas.delete_of_stores(conn, [store_id])
                    await conn.execute(
                        delete(credential_tokens).where(credential_tokens.c.store_id == store_id)
                    )
                    await conn.execute(delete(stores).where(stores.c.id == store_id))
                    return
            await asyncio.sleep(0.01)
    except Exception:
        log.exception("garbage collection of store %s failed; it is retried at the next start", store_id)


async def abandon(db: Database, store_id: int) -> None:
    """Retire a staging store and delete it (a restore that did not switch)."""
    async with db.write() as conn:
        await retire_staging(conn, store_id)
    await collect(db, store_id)


async def collect_retired(db: Database) -> None:
    """Delete every retired store (those a stopped process left behind)."""
    async with db.read() as conn:
        ids = await retired(conn)
    for store_id in ids:
        await collect(db, store_id)
