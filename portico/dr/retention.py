"""Retention of a schedule's backups: keep the last N and/or N days, and prune expired backups.

Only blobs that are, at once, named as the schedule names its backups (`<prefix><service>-<stamp>`),
Portico backups (catalog metadata, `catalog_entry`), and backups of this very service (the catalog's
service id, or name for older backups) are ever considered; anything else in the container is left
alone. Both limits are upper bounds: a backup is deleted when it is beyond `keepLast` (newest first)
or older than `keepDays`; a backup past its validity period (it can no longer be restored) is always
deleted. The backups named in `protect` (the run's own backup) are never deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from portico.dr.archive import catalog_entry
from portico.dr.schedules_model import Retention, is_schedule_blob
from portico.dr.storage import BlobContainer, BlobNotFound, StorageError

log = logging.getLogger("portico.dr.retention")


@dataclass
class PruneResult:
    deleted: list[str] = field(default_factory=list)  # by keepLast / keepDays
    expired: list[str] = field(default_factory=list)  # past their validity
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deleted": len(self.deleted) + len(self.expired),
            "expired": len(self.expired),
            "kept": len(self.kept),
        }
        if self.errors:
            out["errors"] = self.errors[:5]
        return out


async def prune(
    container: BlobContainer,
    *,
    prefix: str,
    service_name: str,
    service_arm_id: str,
    retention: Retention,
    now: datetime,
    protect: set[str] | frozenset[str] = frozenset(),
) -> PruneResult:
    entries = []
    async for info in container.list(f"{prefix}{service_name}-"):
        if not is_schedule_blob(info.name, prefix, service_name):
            continue
        entry = catalog_entry(info)
        if entry is None:
            continue  # not a Portico backup: never touched
        if entry.service_id:
            if entry.service_id.lower() != service_arm_id.lower():
                continue  # another service's backup (e.g. of another instance) under the same name
        elif entry.service_name.lower() != service_name.lower():
            continue
        entries.append(entry)
    entries.sort(key=lambda e: e.created_at, reverse=True)  # newest first
    result = PruneResult()
    oldest_kept = now - timedelta(days=retention.keep_days) if retention.keep_days is not None else None
    valid_kept = 0
    for e in entries:
        name = e.blob_name
        if name in protect:
            result.kept.append(name)
            valid_kept += 1
            continue
        if e.is_expired(now):
            verdict = "expired"
        elif retention.keep_last is not None and valid_kept >= retention.keep_last:
            verdict = "deleted"
        elif oldest_kept is not None and e.created_at < oldest_kept:
            verdict = "deleted"
        else:
            result.kept.append(name)
            valid_kept += 1
            continue
        try:
            await container.delete(name)
        except BlobNotFound:
            pass  # deleted meanwhile (by hand, or by another run's retention)
        except StorageError as exc:
            result.errors.append(f"cannot delete '{name}': {exc.message}")
            continue
        (result.expired if verdict == "expired" else result.deleted).append(name)
        log.info("retention: deleted backup %s (%s)", name, verdict)
    return result
