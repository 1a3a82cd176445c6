"""Portico extensions beside backup/restore: the backup catalog, verify, and the restore preview.

Each takes a parsed request (`dr/access.py`, the same body as backup/restore) and answers a JSON
document; every failure is an ARM error (400 with the cause) — storage and format errors included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from portico.arm.errors import ArmError
from portico.dr.access import BackupRequest
from portico.dr.archive import BackupFormatError, catalog_entry, mark_verified, open_backup, verify_backup
from portico.dr.containers import open_request_container
from portico.dr.operations import storage_message
from portico.dr.storage import StorageError
from portico.jobs.runner import OperationFailed
from portico.resources.service import TARGET_OWNED_PROPERTIES
from portico.settings import Settings
from portico.store import entities as E
from portico.store import services as S
from portico.store.db import Database

PREVIEW_LIST_LIMIT = 1000


@contextmanager
def _as_arm_errors(req: BackupRequest, code: str) -> Iterator[None]:
    try:
        yield
    except OperationFailed as exc:
        raise ArmError(400, exc.code, exc.message) from None
    except StorageError as exc:
        raise ArmError(400, code, storage_message(exc, req, "read backups")) from None
    except BackupFormatError as exc:
        raise ArmError(400, code, f"Backup '{req.backup_name}' cannot be used: {exc}") from None


async def list_backups(settings: Settings, req: BackupRequest, prefix: str) -> list[dict[str, Any]]:
    """Backups in the container, newest first; blobs that are not Portico backups are skipped."""
    out = []
    with _as_arm_errors(req, "BackupFailed"):
        async with open_request_container(settings, req, "BackupFailed") as container:
            async for info in container.list(prefix):
                entry = catalog_entry(info)
                if entry is not None:
                    out.append(entry.to_dict())
    out.sort(key=lambda e: e["created"] or "", reverse=True)
    return out


async def verify(settings: Settings, req: BackupRequest) -> dict[str, Any]:
    """Read the whole backup and check every checksum (and decrypt it, when encrypted)."""
    with _as_arm_errors(req, "BackupFailed"):
        async with open_request_container(settings, req, "BackupFailed") as container:
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


async def preview(db: Database, settings: Settings, req: BackupRequest, svc: S.Service) -> dict[str, Any]:
    """What a restore of the backup into `svc` would add, change and remove (nothing is changed)."""
    with _as_arm_errors(req, "RestoreFailed"):
        return await _preview(db, settings, req, svc)


async def _preview(db: Database, settings: Settings, req: BackupRequest, svc: S.Service) -> dict[str, Any]:
    current: dict[tuple[str, str, str], bytes] = {}
    async with db.read() as conn:
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
    async with open_request_container(settings, req, "RestoreFailed") as container:
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
