"""Certificates and named values that reference a Key Vault secret (`properties.keyVault`).

A PUT or PATCH naming a secret reads it first, outside any transaction (portico/resources/keyvault.py):
when it cannot be read the answer is 400 naming the cause and nothing is stored (as Azure refuses
such a write); when it can, the secret becomes the entity's `data` (certificates) or `value` (named
values, then secret) and the write goes on through the entity handler like an upload, with
`keyVault.lastStatus`. `refreshSecret` reads the secret again on demand.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError, invalid_field
from portico.arm.http import json_response
from portico.resources import kinds as K
from portico.resources.engine import EntityEngine, quote_etag
from portico.resources.keyvault import KeyVaultFailure, material, status
from portico.resources.keyvault_refresh import refresh
from portico.server.routes.entities import entity
from portico.store import entities as E

# kind → (URL segment, its id parameter, the fields an upload holds the secret in)
_KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "certificate": ("certificates", "certificateId", ("data", "password")),
    "namedValue": ("namedValues", "namedValueId", ("value",)),
}


async def certificate(call: Call) -> Response:
    return await _item(call, "certificate")


async def named_value(call: Call) -> Response:
    return await _item(call, "namedValue")


async def refresh_certificate(call: Call) -> Response:
    return await _refresh(call, "certificate")


async def refresh_named_value(call: Call) -> Response:
    return await _refresh(call, "namedValue")


async def _item(call: Call, kind: str) -> Response:
    segment, param, upload_fields = _KINDS[kind]
    call.params["path"] = f"{segment}/{call.params[param]}"
    if call.method in ("PUT", "PATCH"):
        await _read_secret(call, kind, upload_fields)
    return await entity(call)


async def _read_secret(call: Call, kind: str, upload_fields: tuple[str, ...]) -> None:
    """Puts the secret of the body's `keyVault` into the body's properties (the call keeps the body
    it read, so the entity handler sees the filled one)."""
    body = await call.body(required=False)
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        return  # the entity handler answers what is wrong with the body
    kv = props.get("keyVault")
    if kv is None:
        if call.method == "PATCH" and any(props.get(f) is not None for f in upload_fields):
            props["keyVault"] = None  # an uploaded secret replaces the reference
        return
    if not isinstance(kv, dict):
        return  # the entity's model answers 400
    segment = _KINDS[kind][0]
    await call.authorize_service(f"Microsoft.ApiManagement/service/{segment}/write")
    given = [f for f in upload_fields if props.get(f) is not None]
    if given:
        raise invalid_field(
            f"properties.{given[0]}",
            "cannot be given with properties.keyVault: the secret is read from Key Vault",
        )
    rt = call.rt
    async with rt.db.read() as conn:
        await call.service(conn)  # 404 for a missing service before any vault is asked
    identity = kv.get("identityClientId")
    if identity is not None and not isinstance(identity, str):
        raise invalid_field("properties.keyVault.identityClientId", "must be a string")
    rt.keyvault.access.check_identity(identity, "properties.keyVault.identityClientId")
    try:
        fetched = await rt.keyvault.access.fetch(kv.get("secretIdentifier"), identity)
        props.update(material(kind, fetched))
    except KeyVaultFailure as exc:
        raise exc.arm_error("properties.keyVault.secretIdentifier") from None
    props["keyVault"] = {
        "secretIdentifier": kv["secretIdentifier"],
        "identityClientId": identity,
        "lastStatus": status(),
    }


async def _refresh(call: Call, kind: str) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    segment, param, _fields = _KINDS[kind]
    await call.authorize_service(f"Microsoft.ApiManagement/service/{segment}/refreshSecret/action")
    rt = call.rt
    async with rt.db.read() as conn:
        svc = await call.service(conn)
        name = await E.find_name(conn, svc.active_store_id, kind, "", call.params[param])
        row = await E.get(conn, svc.active_store_id, kind, "", name) if name else None
    if row is None or name is None:
        noun = "Certificate" if kind == "certificate" else "Named value"
        raise ArmError(404, "ResourceNotFound", f"{noun} '{call.params[param][:256]}' was not found.")
    kv: Any = row.data.get("keyVault")
    if not isinstance(kv, dict) or not kv.get("secretIdentifier"):
        raise ArmError(
            400,
            "ValidationError",
            f"'{name}' holds its own secret, not a Key Vault reference: there is nothing to refresh.",
        )
    done = await refresh(rt.db, rt.keyvault.access, svc.id, kind, name)
    if done is not None and done.failure is not None:
        raise done.failure.arm_error("properties.keyVault.secretIdentifier")
    target = K.resolve([segment, name])
    assert target is not None
    async with rt.db.read() as conn:
        svc = await call.service(conn)
        res = await EntityEngine(conn, svc).get(target)
    return json_response(res.body, headers={"ETag": quote_etag(res.etag or "")})
