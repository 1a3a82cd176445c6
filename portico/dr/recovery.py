"""Closing operations whose node died: never stuck InProgress, never a half-restored service."""

from __future__ import annotations

from sqlalchemy import update

from portico.jobs import store as J
from portico.runtime import Runtime
from portico.store import services as S
from portico.store.schema import stores


async def recover_operation(rt: Runtime, op: J.Operation) -> tuple[str, str | None, str | None]:
    """Decide the outcome of an orphaned operation and undo what it left behind."""
    from portico.dr.operations import gc_store

    marker = f"{op.kind}:{op.id}"
    async with rt.db.write() as conn:
        svc = await S.get_service_by_id(conn, op.service_id, lock=True)
        switched = (
            svc is not None and op.staging_store_id is not None and svc.active_store_id == op.staging_store_id
        )
        if op.staging_store_id is not None and not switched:
            await conn.execute(
                update(stores)
                .where(stores.c.id == op.staging_store_id, stores.c.state == "staging")
                .values(state="retired")
            )
        if svc is not None:
            await S.set_busy(conn, svc.id, None, expect=marker)
    if op.staging_store_id is not None and not switched:
        await gc_store(rt, op.staging_store_id)
    if switched:
        return J.SUCCEEDED, None, None
    code = f"{op.kind.capitalize()}Failed"
    if op.kind == "restore":
        return (
            J.FAILED,
            code,
            "The restore was interrupted (the server running it stopped) before it completed; the target service was not changed. Start the restore again.",
        )
    return (
        J.FAILED,
        code,
        "The backup was interrupted (the server running it stopped) before it completed; no backup blob was written. Start the backup again.",
    )
