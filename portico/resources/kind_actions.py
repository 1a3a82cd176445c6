"""Actions on entities of the catalog's kinds (listSecrets, regenerate keys, gateway tokens,
fragment references, ...): pure functions of the stored data and the request body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from portico.arm.errors import ArmError, invalid_field
from portico.resources.kind_builtins import new_access_key
from portico.resources.kind_rules import SECRETS_OF
from portico.resources.kinds import Target

ActionResult = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (response body, new stored data)


def run_action(t: Target, data: dict[str, Any], body: Any, references: list[str]) -> ActionResult:
    """The action `t.action` on an entity whose stored data is `data`: (response body or None for
    204, the data to store when the action changes it)."""
    kind, action = t.kind.kind, t.action
    body = body if isinstance(body, dict) else {}
    if action == "listsecrets" and kind == "portalSetting" and t.name != "delegation":
        raise ArmError(
            404, "ResourceNotFound", f"Portal settings '{t.name}' have no secrets; only delegation has."
        )
    if action == "listsecrets" and kind in SECRETS_OF:
        return {f: data.get(f) for f in SECRETS_OF[kind]}, None
    if kind == "tenantAccess":
        if action == "listsecrets":
            return {
                "id": t.name,
                "principalId": data.get("principalId"),
                "primaryKey": data["primaryKey"],
                "secondaryKey": data["secondaryKey"],
                "enabled": data.get("enabled", False),
            }, None
        field = "primaryKey" if action == "regenerateprimarykey" else "secondaryKey"
        return None, {**data, field: new_access_key()}
    if kind == "gateway":
        return _gateway_action(t, data, body)
    if kind == "backend":
        return None, None  # no connections are pooled per backend: nothing to reset
    if kind == "policyFragment":
        return {"value": [{"id": r} for r in references], "count": len(references)}, None
    if kind == "authorization":  # getLoginLinks is served by server/routes/authorizations.py
        raise ArmError(
            400,
            "ValidationError",
            "confirmConsentCode is not supported: Portico shows no anti-phishing page to suppress; its "
            "consent redirect exchanges the provider's code itself.",
        )
    raise ArmError(404, "ResourceNotFound", f"No action '{action}' on {t.kind.segment}.")


def _gateway_action(t: Target, data: dict[str, Any], body: dict[str, Any]) -> ActionResult:
    action = t.action
    if action == "listkeys":
        return {"primary": data["primaryKey"], "secondary": data["secondaryKey"]}, None
    key_type = body.get("keyType")
    if action in ("regeneratekey", "generatetoken") and key_type not in ("primary", "secondary"):
        raise invalid_field("keyType", "must be primary or secondary")
    if action == "regeneratekey":
        return None, {**data, f"{key_type}Key": new_access_key()}
    if action == "generatetoken":
        expiry_raw = body.get("expiry")
        try:
            expiry = datetime.fromisoformat(str(expiry_raw).replace("Z", "+00:00"))
        except ValueError:
            raise invalid_field("expiry", "must be an ISO 8601 date-time") from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        if expiry <= datetime.now(UTC) or expiry > datetime.now(UTC) + timedelta(days=30):
            raise invalid_field("expiry", "must be in the future and at most 30 days ahead")
        stamp = expiry.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        digest = hmac.new(
            data[f"{key_type}Key"].encode(), f"{t.name}\n{stamp}".encode(), hashlib.sha512
        ).digest()
        return {
            "value": f"GatewayKey {t.name}&{expiry.strftime('%Y%m%d%H%M')}&{base64.b64encode(digest).decode()}"
        }, None
    if action == "listdebugcredentials":
        raise ArmError(400, "ValidationError", "Gateway debug credentials are not supported by Portico.")
    if action == "listtrace":
        raise ArmError(400, "ValidationError", "Gateway traces are not supported by Portico.")
    return None, None  # invalidateDebugCredentials: none are ever issued
