"""Backup and restore workers. One snapshot read for a backup; stage-verify-switch for a restore."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from portico import __version__
from portico.arm.errors import ArmError
from portico.dr.access import BackupRequest, check_identity
from portico.dr.archive import BackupFormatError, Record, open_backup, write_backup
from portico.dr.containers import open_request_container
from portico.dr.promotion import RestoreOptions, apply_override
from portico.dr.storage import (
    AccountNotFound,
    AuthenticationFailed,
    BlobNotFound,
    ContainerNotFound,
    InvalidName,
    StorageError,
)
from portico.faults import failpoint, pausepoint
from portico.jobs import store as J
from portico.jobs.runner import OperationFailed, Progress
from portico.resources.keyvault_refresh import without_read_secrets
from portico.resources.kind_builtins import builtins
from portico.resources.service import TARGET_OWNED_PROPERTIES
from portico.runtime import Runtime
from portico.store import entities as E
from portico.store import services as S
from portico.store import stores as ST

INSERT_BATCH = 5000


async def start(
    rt: Runtime, svc: S.Service, kind: str, req: BackupRequest, started_by: dict[str, str] | None = None
) -> J.Operation:
    """Start a backup or restore of `svc` that a client asked for (the checks `begin` leaves to
    its callers: the tier, and the identity the request uses)."""
    check_tier(svc, kind)
    check_identity(req, svc.identity, svc.name)
    return await begin(rt, svc, kind, req, started_by)


async def begin(
    rt: Runtime, svc: S.Service, kind: str, req: BackupRequest, started_by: dict[str, str] | None = None
) -> J.Operation:
    """Record the operation and mark the service busy in one transaction, then start the worker.
    `started_by` ({principalId, name, type}) records who asked for it."""
    op_id = J.new_id()
    async with rt.db.write() as conn:
        if not await S.set_busy(conn, svc.id, f"{kind}:{op_id}"):
            current = await S.get_service_by_id(conn, svc.id)
            what = (current.busy or "").split(":") if current else ["", ""]
            raise ArmError(
                409,
                "ServiceBusy",
                f"Service '{svc.name}' is already running a {what[0]} (operation {what[-1]}); wait for it to complete.",
            )
        op = await J.create(
            conn,
            op_id=op_id,
            kind=kind,
            service_id=svc.id,
            service_path=svc.arm_id,
            params={**req.public(), **({"startedBy": started_by} if started_by else {})},
            owner=rt.jobs.node_id,
            lease=rt.jobs.lease,
        )

    async def release() -> None:
        async with rt.db.write() as conn:
            await S.set_busy(conn, svc.id, None, expect=f"{kind}:{op_id}")

    async def work(progress: Progress) -> dict[str, Any] | None:
        if kind == "backup":
            return await run_backup(rt, op, svc.id, req, progress)
        return await run_restore(rt, op, svc.id, req, progress)

    rt.jobs.run(op, work, release)
    return op


NO_BACKUP_TIERS = ("Consumption", "BasicV2", "StandardV2")


def check_tier(svc: S.Service, kind: str) -> None:
    """Backup and restore exist in the classic tiers only."""
    if svc.sku_name in NO_BACKUP_TIERS:
        raise ArmError(
            400,
            "MethodNotAllowedInPricingTier",
            f"{kind.capitalize()} is not supported in the {svc.sku_name} tier; it is available in the Developer, Basic, Standard and Premium tiers.",
        )


def storage_message(exc: Exception, req: BackupRequest, verb: str) -> str:
    where = f"container '{req.container}' of storage account '{req.storage_account}'"
    if isinstance(exc, ContainerNotFound):
        return f"Cannot {verb}: container '{req.container}' does not exist in storage account '{req.storage_account}'. The container must exist; create it first."
    if isinstance(exc, AuthenticationFailed):
        return f"Cannot {verb}: access to storage account '{req.storage_account}' was denied; the access key (or the service identity's credential) is wrong."
    if isinstance(exc, AccountNotFound):
        return f"Cannot {verb}: storage account '{req.storage_account}' was not found or is unreachable."
    if isinstance(exc, BlobNotFound):
        return f"Cannot {verb}: backup '{req.backup_name}' was not found in {where}."
    if isinstance(exc, InvalidName):
        return f"Cannot {verb}: {exc}"
    return f"Cannot {verb}: storage error in {where}: {exc}"


def service_record_data(svc: S.Service) -> bytes:
    props = {k: v for k, v in svc.properties.items() if k not in TARGET_OWNED_PROPERTIES}
    return orjson.dumps(
        {
            "name": svc.name,
            "location": svc.location,
            "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
            "properties": props,
        }
    )


async def run_backup(
    rt: Runtime, op: J.Operation, service_id: int, req: BackupRequest, progress: Progress
) -> dict[str, Any]:
    settings = rt.settings
    try:
        async with open_request_container(settings, req, "BackupFailed") as container:
            await progress.update(phase=J.Phase.CHECKING_STORAGE)
            if not await container.exists():
                raise ContainerNotFound(req.container)
            # One snapshot: every row read below is as of this instant; writers carry on meanwhile.
            async with rt.db.read() as conn:
                svc = await S.get_service_by_id(conn, service_id)
                if svc is None:
                    raise OperationFailed("BackupFailed", "Cannot back up: the service was deleted.")
                counts = await E.counts(conn, svc.active_store_id)
                total = sum(counts.values()) + 1
                now = datetime.now(UTC)
                manifest = {
                    "portico_version": __version__,
                    "source_service_id": svc.arm_id,
                    "source_service_name": svc.name,
                    "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
                    "location": svc.location,
                    "snapshot_time": now.isoformat().replace("+00:00", "Z"),
                    "expires_at": (now + timedelta(days=settings.backup_validity_days))
                    .isoformat()
                    .replace("+00:00", "Z"),
                }
                progress.counters = {"total": total, "written": 0}
                await progress.update(phase=J.Phase.WRITING, percent=1.0)

                async def records() -> Any:
                    yield [Record("service", "", svc.name, None, svc.etag, service_record_data(svc))]
                    # Driver rows go to the encoder as they are (same field order as a Record):
                    # building an object per row cost more than the whole encoding.
                    async for batch in without_read_secrets(E.stream_tuples(conn, svc.active_store_id)):
                        failpoint("backup.mid_write")
                        await pausepoint("backup.mid_write")
                        yield batch

                def on_progress(done: int, nbytes: int) -> None:
                    progress.counters["written"] = done
                    progress.bytes = nbytes
                    progress.percent = 1 + 98 * done / total

                writer = await container.open_writer(req.backup_name, {})
                # write_backup commits with catalog metadata, or aborts: never a half-written blob.
                written = await _with_progress(
                    write_backup(
                        writer,
                        manifest=manifest,
                        records=records(),
                        encryption_key=req.encryption_key,
                        on_progress=on_progress,
                    ),
                    progress,
                )
            progress.bytes = int(written.blob_size or written.payload_size)
            progress.counters["written"] = written.record_count
            return {}
    except StorageError as exc:
        raise OperationFailed("BackupFailed", storage_message(exc, req, "back up")) from None


async def _with_progress(coro: Any, progress: Progress) -> Any:
    """Run `coro` while flushing progress to the operation record every 0.25 s."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        if not task.done():
            await progress.update(force=True)
    return task.result()


async def run_restore(
    rt: Runtime, op: J.Operation, service_id: int, req: BackupRequest, progress: Progress
) -> dict[str, Any]:
    settings = rt.settings
    try:
        async with open_request_container(settings, req, "RestoreFailed") as container:
            await progress.update(phase=J.Phase.VALIDATING)
            try:
                reader = await open_backup(container, req.backup_name, encryption_key=req.encryption_key)
            except BackupFormatError as exc:
                raise OperationFailed("RestoreFailed", f"Cannot restore: {exc}") from None
            manifest = reader.manifest
            if manifest.is_expired():
                raise OperationFailed(
                    "RestoreFailed",
                    f"Cannot restore: backup expired (it expired on {manifest.expires_at.isoformat()}; backups are restorable "
                    f"for {settings.backup_validity_days:g} days).",
                )
            async with rt.db.read() as conn:
                svc = await S.get_service_by_id(conn, service_id)
            if svc is None:
                raise OperationFailed("RestoreFailed", "Cannot restore: the target service was deleted.")
            backup_sku = manifest.sku.name
            if svc.sku_name.lower() != backup_sku.lower():
                raise OperationFailed(
                    "RestoreFailed",
                    f"Cannot restore: current SKU is '{svc.sku_name}', backup SKU is '{backup_sku}'.",
                )

            failpoint("restore.after_validate")
            staging = await _create_staging(rt, op.id, service_id)
            total = max(manifest.record_count, 1)
            progress.counters = {"total": total, "loaded": 0}
            await progress.update(phase=J.Phase.LOADING, percent=1.0)
            service_data: dict[str, Any] | None = None
            loaded = 0
            opts = req.options
            partial = opts.partial
            inserting: asyncio.Future[None] | None = None
            # Contract with the gateway's read-ahead (portico/gateway/config.py): the staging store
            # only ever receives inserts (backup rows in key order, then kept target rows), never
            # updates or deletes of subscriptions and users; the gateway checks the rest by counting.
            try:
                async for batch in reader.records(batch_size=INSERT_BATCH):
                    rows = []
                    for r in batch:
                        if r.kind == "service":
                            service_data = orjson.loads(r.data)
                            continue
                        if partial and not opts.from_backup(r.kind, r.parent, r.name):
                            continue
                        rows.append(
                            (staging, r.kind, r.parent, r.name, r.display_name, r.etag, r.data.decode())
                        )
                    if inserting is not None:
                        await inserting
                        inserting = None
                    if rows:
                        # Inserted (in the driver's thread) while the next batch is decoded.
                        inserting = asyncio.ensure_future(E.bulk_insert(rt.db, rows))
                    loaded += len(batch)
                    if loaded * 2 >= total:
                        failpoint("restore.mid_load")
                    await pausepoint("restore.load")
                    progress.counters["loaded"] = loaded
                    progress.percent = 1 + 95 * loaded / max(total, 1)
                    await progress.update()
                if inserting is not None:
                    await inserting
                    inserting = None
            except BackupFormatError as exc:
                await _settle(inserting)
                await _drop_store(rt, staging)
                raise OperationFailed(
                    "RestoreFailed", f"Cannot restore: {exc} The target was not changed."
                ) from None
            except BaseException:
                await _settle(inserting)
                await _drop_store(rt, staging)
                raise
            if service_data is None:
                await _drop_store(rt, staging)
                raise OperationFailed(
                    "RestoreFailed",
                    "Cannot restore: the backup has no service record. The target was not changed.",
                )
            try:
                await _promote(rt, svc.active_store_id, staging, opts, progress)
                await _ensure_builtins(rt, staging)
            except BaseException:
                await _drop_store(rt, staging)
                raise
            await progress.update(phase=J.Phase.SWITCHING, percent=97.0)
            failpoint("restore.before_switch")
            old_store = await _switch(rt, op.id, service_id, staging, service_data)
            failpoint("restore.after_switch")
            asyncio.get_running_loop().create_task(ST.collect(rt.db, old_store))
            return {}
    except StorageError as exc:
        raise OperationFailed("RestoreFailed", storage_message(exc, req, "restore")) from None


async def _ensure_builtins(rt: Runtime, staging: int) -> None:
    """A backup made before a kind had built-in entities lacks them: add what is missing, as a
    new service has them (inserts only, per the staging contract above)."""
    async with rt.db.write() as conn:
        for kind, parent, name, data in builtins():
            if not await E.exists(conn, staging, kind, parent, name):
                await E.put(conn, staging, kind, parent, name, None, data, exists=False)


async def _promote(
    rt: Runtime, target_store: int, staging: int, opts: RestoreOptions, progress: Progress
) -> None:
    """Promotion options: keep the target's rows the backup does not provide, then apply the
    named-value overrides. The target is busy (restoring), so its rows cannot change meanwhile."""
    if opts.partial:
        await progress.update(phase=J.Phase.KEEPING_TARGET_ENTITIES)
        kept = 0
        async with rt.db.read() as conn:
            async for batch in E.stream_tuples(conn, target_store):
                rows = [
                    (staging, k, p, n, d, e, data.decode())
                    for k, p, n, d, e, data in batch
                    if opts.kept_from_target(k, p, n)
                ]
                if rows:
                    await E.bulk_insert(rt.db, rows)
                    kept += len(rows)
        progress.counters["keptFromTarget"] = kept
    if opts.overrides:
        async with rt.db.write() as conn:
            for nv_id, spec in opts.overrides.items():
                row = await E.get(conn, staging, "namedValue", "", nv_id)
                data = apply_override(row.data if row else None, nv_id, spec)
                await E.put(conn, staging, "namedValue", "", nv_id, data.get("displayName"), data)
        progress.counters["overriddenNamedValues"] = len(opts.overrides)


async def _settle(task: asyncio.Future[None] | None) -> None:
    """Let an in-flight staging insert finish or fail before the staging store is dropped."""
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def _create_staging(rt: Runtime, op_id: str, service_id: int) -> int:
    async with rt.db.write() as conn:
        store_id = await ST.create_staging(conn, service_id, op_id)
        await J.link_staging(conn, op_id, store_id)
    return store_id


async def _switch(
    rt: Runtime, op_id: str, service_id: int, staging: int, service_data: dict[str, Any]
) -> int:
    """The all-or-nothing step: one transaction points the service at the restored store."""
    async with rt.db.write() as conn:
        svc = await S.get_service_by_id(conn, service_id, lock=True)
        owner = await J.lease_holder(conn, op_id)
        if svc is None or svc.busy != f"restore:{op_id}" or owner != rt.jobs.node_id:
            # Another node judged this operation orphaned (our lease lapsed) and closed it.
            raise OperationFailed(
                "RestoreFailed",
                "Cannot restore: this node lost its lease on the operation before the switch. The target was not changed.",
            )
        props = {
            k: v
            for k, v in (service_data.get("properties") or {}).items()
            if k not in TARGET_OWNED_PROPERTIES
        }
        for key in TARGET_OWNED_PROPERTIES:
            if key in svc.properties:
                props[key] = svc.properties[key]
        await S.update_service(conn, service_id, {"properties": props, "active_store_id": staging})
        if not await ST.switch_active(conn, svc.active_store_id, staging):
            raise OperationFailed(
                "RestoreFailed",
                "Cannot restore: the staging store was abandoned before the switch. The target was not changed.",
            )
    return svc.active_store_id


async def _drop_store(rt: Runtime, store_id: int) -> None:
    await ST.abandon(rt.db, store_id)
