"""Key Vault secrets of certificates and named values read again: on demand (`refreshSecret`) and,
as Azure does every 4 hours, by a background task on each node (`KeyVaultRefresher`).

The secret is read outside any transaction; the result is written in a short one only if the
entity still names the same secret (a PUT meanwhile wins). Every `portico serve` node runs the
refresh: each checks that a secret is still due just before reading it and again before writing
(ticks are jittered), so one refresh lands per period and two nodes rarely read the same secret
(it costs one more read of the vault, nothing else). A failed read keeps the last secret read (the
gateway goes on serving it) and records the failure in `keyVault.lastStatus`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from portico.resources.keyvault import KeyVaultAccess, KeyVaultFailure, material, status
from portico.resources.keyvault_hostnames import hostnames_due, refresh_hostnames
from portico.settings import Settings
from portico.store import entities as E
from portico.store import services as S
from portico.store.db import Database

log = logging.getLogger("portico.keyvault")

KINDS = ("certificate", "namedValue")


def reference(data: dict[str, Any]) -> dict[str, Any] | None:
    """The entity's Key Vault reference, None when its secret is held by Portico itself."""
    kv = data.get("keyVault")
    return kv if isinstance(kv, dict) and kv.get("secretIdentifier") else None


def _stamp(data: dict[str, Any]) -> datetime | None:
    kv = reference(data) or {}
    raw = (kv.get("lastStatus") or {}).get("timeStampUtc")
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None
    except ValueError:
        return None


def is_due(data: dict[str, Any], period: float, now: datetime) -> bool:
    stamp = _stamp(data)
    return reference(data) is not None and (stamp is None or now - stamp >= timedelta(seconds=period))


# What a reference's read put in the entity: a backup carries the reference, never these (the secret
# stays the vault's); a restored entity has no lastStatus, so the refresh reads it at once.
_READ_FIELDS = {"certificate": ("data", "password"), "namedValue": ("value",)}


async def without_read_secrets(batches: AsyncIterator[list[Any]]) -> AsyncIterator[list[Any]]:
    """Backup record batches (driver tuples `(kind, parent, name, display_name, etag, JSON)`) with
    the secrets read from Key Vault left out; other rows pass untouched (the backup's hot path)."""
    async for rows in batches:
        for i, r in enumerate(rows):
            if r[0] in _READ_FIELDS and (b'"keyVault"' if isinstance(r[5], bytes) else '"keyVault"') in r[5]:
                data = orjson.loads(r[5])
                ref = reference(data)
                if ref is not None:
                    for f in _READ_FIELDS[r[0]]:
                        data.pop(f, None)
                    data["keyVault"] = {k: v for k, v in ref.items() if k != "lastStatus"}
                    rows[i] = (
                        *r[:5],
                        orjson.dumps(data) if isinstance(r[5], bytes) else orjson.dumps(data).decode(),
                    )
        yield rows


@dataclass(frozen=True)
class Refreshed:
    etag: str
    failure: KeyVaultFailure | None


async def refresh(
    db: Database,
    access: KeyVaultAccess,
    service_id: int,
    kind: str,
    name: str,
    *,
    due_after: float | None = None,
) -> Refreshed | None:
    """Read the secret of entity `kind`/`name` (top-level, its stored name) of the service again and
    store it with its `lastStatus`. `due_after`: only if still due after that many seconds (the
    background refresh). None when there was nothing to refresh (gone, not Key Vault, changed or
    no longer due meanwhile, the service restoring)."""
    async with db.read() as conn:
        svc = await S.get_service_by_id(conn, service_id)
        row = await E.get(conn, svc.active_store_id, kind, "", name) if svc else None
    ref = reference(row.data) if row else None
    if svc is None or row is None or ref is None:
        return None
    if due_after is not None and not is_due(row.data, due_after, datetime.now(UTC)):
        return None  # another node read it since this one listed what was due
    store = svc.active_store_id
    failure: KeyVaultFailure | None = None
    update: dict[str, Any] = {}
    try:
        update = material(kind, await access.fetch(ref["secretIdentifier"], ref.get("identityClientId")))
        last = status()
    except KeyVaultFailure as exc:
        failure, last = exc, status(exc.code, exc.message)
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, service_id, lock=True)
        if svc is None or svc.active_store_id != store or (svc.busy or "").startswith("restore:"):
            return None
        cur = await E.get(conn, store, kind, "", name, lock=True)
        cur_ref = reference(cur.data) if cur else None
        if cur is None or cur_ref is None or cur_ref["secretIdentifier"] != ref["secretIdentifier"]:
            return None
        if due_after is not None and not is_due(cur.data, due_after, datetime.now(UTC)):
            return None
        data = {**cur.data, **update, "keyVault": {**cur_ref, "lastStatus": last}}
        display = data.get("displayName")
        etag, _ = await E.put(
            conn,
            store,
            kind,
            "",
            name,
            display.replace("\x00", "")[:300] if isinstance(display, str) else None,
            data,
            exists=True,
        )
    log.info("keyvault: %s '%s' of service '%s' read again: %s", kind, name, svc.name, last["code"])
    return Refreshed(etag, failure)


class KeyVaultRefresher:
    """Reads every Key Vault secret again once `PORTICO_KEYVAULT_REFRESH_SECONDS` have passed since
    its last read (and at once for one never read, as after a restore of a backup without it)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.access = KeyVaultAccess(settings)
        self.period = settings.keyvault_refresh_seconds
        self.tick = max(0.5, min(60.0, self.period / 4))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self.access.check_configuration()
        except KeyVaultFailure as exc:  # said at start, and to each request that needs the vault
            log.error("keyvault: %s; Key Vault references cannot be read", exc.message)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.access.close)

    async def _run(self) -> None:
        while True:
            # jittered, so that nodes do not list the same due secrets at the same moment
            await asyncio.sleep(self.tick * random.uniform(0.75, 1.25))
            try:
                await self.refresh_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the refresh for good
                log.exception("keyvault: the periodic refresh failed; trying again in %.0f s", self.tick)

    async def refresh_due(self) -> int:
        """Refresh what is due now; the number refreshed."""
        now = datetime.now(UTC)
        due: list[tuple[int, str, str]] = []
        hostnames: list[int] = []
        async with self.db.read() as conn:
            for svc in await S.list_all_services(conn):
                if hostnames_due(svc.properties, self.period, now):
                    hostnames.append(svc.id)
                for kind in KINDS:
                    for row in await E.list_all(conn, svc.active_store_id, kind):
                        if not row.parent and is_due(row.data, self.period, now):
                            due.append((svc.id, kind, row.name))
        done = 0
        for service_id in hostnames:
            done += await refresh_hostnames(self.db, self.access, service_id, self.period)
        for service_id, kind, name in due:
            if await refresh(self.db, self.access, service_id, kind, name, due_after=self.period):
                done += 1
        return done
