"""Closing operations whose node died: never stuck InProgress, never a half-restored service."""

from __future__ import annotations

from portico.jobs import store as J
from portico.jobs.runner import Outcome
from portico.store import services as S
from portico.store import stores as ST
from portico.store.db import Database


async def recover_operation(db: Database, op: J.Operation) -> Outcome:
    """Decide the outcome of an orphaned backup or restore and undo what it left behind."""
    marker = f"{op.kind}:{op.id}"
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, op.service_id, lock=True)
        switched = (
            svc is not None and op.staging_store_id is not None and svc.active_store_id == op.staging_store_id
        )
        if op.staging_store_id is not None and not switched:
            await ST.retire_staging(conn, op.staging_store_id)
        if svc is not None:
            await S.set_busy(conn, svc.id, None, expect=marker)
    if op.staging_store_id is not None and not switched:
        await ST.collect(db, op.staging_store_id)
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
