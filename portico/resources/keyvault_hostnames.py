"""Custom hostnames whose certificate is a Key Vault secret (`hostnameConfigurations[].keyVaultId`).

A service PUT/PATCH naming `keyVaultId` reads the secret before its transaction: the certificate
becomes the item's `encodedCertificate` (a PFX without password, sealed at rest and hidden on GET
like an uploaded one, which the gateway presents by SNI, portico/gateway/tls.py), with
`certificateSource: KeyVault` and `certificateStatus: Completed`; a secret that cannot be read is a
400 naming the item, nothing stored. The refresh (keyvault_refresh.py) reads them again every
period, keeping the last certificate when the vault cannot be read (`certificateStatus: Failed`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from portico.arm.errors import invalid_field
from portico.resources.keyvault import KeyVaultAccess, KeyVaultFailure, certificate_material, now_utc
from portico.store import services as S
from portico.store.db import Database

# When the item's secret was last read: kept with the item, never rendered (service.py hides it).
READ_AT = "keyVaultReadAt"


def _with_certificate(hc: dict[str, Any], material: dict[str, str]) -> dict[str, Any]:
    return {
        **hc,
        "encodedCertificate": material["data"],
        "certificate": {
            "expiry": material["expirationDate"],
            "thumbprint": material["thumbprint"],
            "subject": material["subject"],
        },
        "certificateSource": "KeyVault",
        "certificateStatus": "Completed",
        READ_AT: now_utc(),
    }


async def read_hostname_certificates(access: KeyVaultAccess, body: Any) -> None:
    """Fills, in the request body, the certificate of each `hostnameConfigurations` item naming a
    `keyVaultId`; 400 naming the item when it cannot be read."""
    props = body.get("properties") if isinstance(body, dict) else None
    items = props.get("hostnameConfigurations") if isinstance(props, dict) else None
    if not isinstance(items, list):
        return  # the service's validation answers what is wrong
    for i, hc in enumerate(items):
        if not isinstance(hc, dict) or hc.get("keyVaultId") is None:
            continue
        field = f"properties.hostnameConfigurations[{i}]"
        for own in ("encodedCertificate", "certificatePassword"):
            if hc.get(own):
                raise invalid_field(
                    f"{field}.{own}",
                    "cannot be given with keyVaultId: the certificate is read from Key Vault",
                )
        identity = hc.get("identityClientId")
        if identity is not None and not isinstance(identity, str):
            raise invalid_field(f"{field}.identityClientId", "must be a string")
        access.check_identity(identity, f"{field}.identityClientId")
        try:
            material = certificate_material(
                await access.fetch(hc["keyVaultId"], identity, f"{field}.keyVaultId")
            )
        except KeyVaultFailure as exc:
            raise exc.arm_error(f"{field}.keyVaultId") from None
        items[i] = _with_certificate(hc, material)


def _due(hc: Any, period: float, now: datetime) -> bool:
    if not isinstance(hc, dict) or not hc.get("keyVaultId"):
        return False
    try:
        stamp = datetime.fromisoformat(str(hc.get(READ_AT)).replace("Z", "+00:00"))
    except ValueError:
        return True
    return now - stamp >= timedelta(seconds=period)


def hostnames_due(properties: dict[str, Any], period: float, now: datetime) -> bool:
    return any(_due(hc, period, now) for hc in properties.get("hostnameConfigurations") or [])


async def refresh_hostnames(db: Database, access: KeyVaultAccess, service_id: int, period: float) -> int:
    """Reads again the Key Vault certificates of the service's hostnames that are due; the number
    of items read (successfully or not). Skipped while the service is busy (a backup or restore
    holds its hostnames)."""
    async with db.read() as conn:
        svc = await S.get_service_by_id(conn, service_id)
    if svc is None or svc.busy:
        return 0
    now = datetime.now(UTC)
    read: dict[tuple[str, str], dict[str, Any]] = {}
    for hc in svc.properties.get("hostnameConfigurations") or []:
        if _due(hc, period, now):
            key = (str(hc.get("hostName")), str(hc["keyVaultId"]))
            try:
                fetched = await access.fetch(hc["keyVaultId"], hc.get("identityClientId"))
                read[key] = _with_certificate(hc, certificate_material(fetched))
            except KeyVaultFailure:
                read[key] = {**hc, "certificateStatus": "Failed", READ_AT: now_utc()}
    if not read:
        return 0
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, service_id, lock=True)
        if svc is None or svc.busy:
            return 0
        items = svc.properties.get("hostnameConfigurations") or []
        updated = [
            read.get((str(hc.get("hostName")), str(hc.get("keyVaultId"))), hc) if isinstance(hc, dict) else hc
            for hc in items
        ]
        if updated == items:
            return 0
        await S.update_service(
            conn, svc.id, {"properties": {**svc.properties, "hostnameConfigurations": updated}}
        )
    return len(read)
