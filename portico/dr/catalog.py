"""Portico extensions beside backup/restore: the backup catalog, verify, and the restore preview.

Routes (POST, same body as backup/restore): `.../service/{name}/listBackups`, `/verifyBackup`,
`/restorePreview`. They authorise as backup (list, verify) or restore (preview) of that service.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from fastapi import Response

from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.dr.access import BackupRequest, parse_request
from portico.dr.containers import open_request_container
from portico.jobs.runner import OperationFailed
from portico.resources.service import TARGET_OWNED_PROPERTIES
from portico.store import entities as E
from portico.store import services as S

if TYPE_CHECKING:
    from portico.arm.call import Call

PREVIEW_LIST_LIMIT = 1000


async def handle(call: Call, sub: str, rg: str, name: str, action: str) -> Response:
    if call.method != "POST":
        raise ArmError(405, "MethodNotAllowed", f"Use POST for {action}.")
    svc_path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
    await call.authorize(
        f"Microsoft.ApiManagement/service/{'restore' if action == 'restorepreview' else 'backup'}/action",
        svc_path,
    )
    body = await call.body()
    req = parse_request(body, call.api_version, call.rt.settings, need_name=action != "listbackups")
    async with call.rt.db.read() as conn:
        svc = await S.get_service(conn, sub, rg, name)
    if svc is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.ApiManagement/service/{name}' under resource group '{rg}' was not found.",
        )
    code = "RestoreFailed" if action == "restorepreview" else "BackupFailed"
    try:
        if action == "listbackups":
            prefix = body.get("prefix") or "" if isinstance(body, dict) else ""
            return json_response({"value": await list_backups(call, req, str(prefix))})
        if action == "verifybackup":
            return json_response(await verify(call, req))
        return json_response(await preview(call, req, svc))
    except OperationFailed as exc:
        raise ArmError(400, exc.code, exc.message) from None
    except Exception as exc:
        from portico.dr.archive import BackupFormatError
        from portico.dr.operations import storage_message
        from portico.dr.storage import StorageError

        if isinstance(exc, StorageError):
            raise ArmError(400, code, storage_message(exc, req, "read backups")) from None
        if isinstance(exc, BackupFormatError):
            raise ArmError(400, code, f"Backup '{req.backup_name}' cannot be used: {exc}") from None
        raise


async def list_backups(call: Call, req: BackupRequest, prefix: str) -> list[dict[str, Any]]:
    """Backups in the container, newest first; blobs that are not Portico backups are skipped."""
    from portico.dr.archive import catalog_entry

    out = []
    async with open_request_container(call.rt.settings, req, "BackupFailed") as container:
        async for info in container.list(prefix):
            entry = catalog_entry(info)
            if entry is not None:
                out.append(entry.to_dict())
    out.sort(key=lambda e: e["created"] or "", reverse=True)
    return out


async def verify(call: Call, req: BackupRequest) -> dict[str, Any]:
    from portico.dr.archive import mark_verified, verify_backup

    async with open_request_container(call.rt.settings, req, "BackupFailed") as container:
        report = await verify_backup(container, req.backup_name, encryption_key=req.encryption_key)
        if report.ok and report.contents_verified:
            await mark_verified(container, req.backup_name)
    out = report.to_dict()
    if report.manifest is not None:
        out.update(
            size=report.manifest.blob_size,
            payloadSha256=report.manifest.payload_sha256,
            encrypted=report.manifest.encrypted,
        )
    if not report.ok:
        raise ArmError(
            400,
            "BackupVerificationFailed",
            f"Backup '{req.backup_name}' failed verification: {report.message}",
        )
    return out


async def preview(call: Call, req: BackupRequest, svc: S.Service) -> dict[str, Any]:
    """What a restore of the backup into `svc` would add, change and remove (nothing is changed)."""
    import orjson

    from portico.dr.archive import open_backup

    current: dict[tuple[str, str, str], bytes] = {}
    async with call.rt.db.read() as conn:
        async for batch in E.stream_raw(conn, svc.active_store_id):
            for r in batch:
                current[(r.kind, r.parent, r.name)] = hashlib.sha256(r.data.encode()).digest()
    by_kind: dict[str, dict[str, int]] = {}
    lists: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}

    def count(kind: str, verb: str, key: tuple[str, str, str]) -> None:
        c = by_kind.setdefault(kind, {"added": 0, "changed": 0, "removed": 0, "unchanged": 0})
        c[verb] += 1
        if verb != "unchanged" and len(lists[verb]) < PREVIEW_LIST_LIMIT:
            lists[verb].append(f"{key[0]}:{key[1] + '/' if key[1] else ''}{key[2]}")

    service_changes: list[str] = []
    async with open_request_container(call.rt.settings, req, "RestoreFailed") as container:
        reader = await open_backup(container, req.backup_name, encryption_key=req.encryption_key)
        manifest = reader.manifest
        opts = req.options
        async for batch in reader.records(batch_size=5000):
            for r in batch:
                if r.kind == "service":
                    props = orjson.loads(r.data).get("properties", {})
                    for k in sorted(set(props) | set(svc.properties)):
                        if k not in TARGET_OWNED_PROPERTIES and props.get(k) != svc.properties.get(k):
                            service_changes.append(k)
                    continue
                key = (r.kind, r.parent, r.name)
                if not opts.from_backup(*key):
                    continue  # the target keeps its own row (promotion options)
                old = current.pop(key, None)
                if old is None:
                    count(r.kind, "added", key)
                elif old != hashlib.sha256(r.data).digest():
                    count(r.kind, "changed", key)
                else:
                    count(r.kind, "unchanged", key)
    for key in current:
        count(key[0], "unchanged" if opts.kept_from_target(*key) else "removed", key)
    problems = []
    if manifest.sku.name.lower() != svc.sku_name.lower():
        problems.append(
            f"Cannot restore: current SKU is '{svc.sku_name}', backup SKU is '{manifest.sku.name}'"
        )
    if manifest.is_expired():
        problems.append("Cannot restore: backup expired")
    return {
        "backup": req.backup_name,
        "source": manifest.source_service_id,
        "byKind": by_kind,
        **lists,
        "service": service_changes,
        "overriddenNamedValues": sorted(opts.overrides),
        "blockers": problems,
    }
