"""The token response Entra gives a person signed in through a public client, as MSAL reads it:
access token (delegated: `scp`, `idtyp: user`), id token, rotating refresh token, client_info."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from portico.identity import grants
from portico.identity.issuer import OAuthError, accepted_scopes
from portico.identity.keys import SigningKeys
from portico.identity.users import User
from portico.settings import Settings
from portico.store.db import Database

# OIDC scopes a client may add; they ask for an id token / refresh token, not for a resource.
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
# The delegated permission Azure Resource Manager exposes; `scp` of every user token here.
DELEGATED_SCOPE = "user_impersonation"


@dataclass(frozen=True)
class Issuer:
    settings: Settings
    db: Database
    keys: SigningKeys


def resource_scopes(settings: Settings, scope: str) -> list[str]:
    """The resource scopes of a request: only the management API (`{audience}.default`, either form,
    or `{audience}user_impersonation`). Anything else is named in an invalid_scope error."""
    audience = settings.audience.rstrip("/")
    # `{resource id}/.default` as az builds it from `https://management.azure.com/` has a double slash;
    # Entra accepts it.
    allowed = accepted_scopes(settings.audience) | {
        f"{audience}//.default".casefold(),
        f"{audience}/{DELEGATED_SCOPE}".casefold(),
    }
    out = []
    for s in scope.split():
        if s.casefold() in OIDC_SCOPES:
            continue
        if s.casefold() not in allowed:
            raise OAuthError(
                400,
                "invalid_scope",
                f"The scope '{s[:200]}' is not valid: this identity provider issues tokens only for "
                f"'{audience}/.default' (plus openid, profile, offline_access).",
            )
        out.append(s)
    return out


def client_info(settings: Settings, user: User) -> str:
    raw = json.dumps({"uid": user.oid, "utid": settings.tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


async def token_response(
    iss: Issuer,
    user: User,
    client_id: str,
    scope: str,
    *,
    nonce: str | None = None,
    family: str | None = None,
    want_client_info: bool = False,
) -> dict[str, Any]:
    """Sign the tokens and store a new refresh token (in `family` when rotating one)."""
    settings = iss.settings
    resources = resource_scopes(settings, scope)
    now = int(time.time())
    lifetime = settings.token_lifetime_seconds
    common = {"iss": settings.issuer, "iat": now, "nbf": now, "tid": settings.tenant_id, "ver": "2.0"}
    identity = {"oid": user.oid, "sub": user.oid, "name": user.display_name, "preferred_username": user.upn}
    access = {
        **common,
        **identity,
        "aud": settings.audience,
        "exp": now + lifetime,
        "upn": user.upn,
        "unique_name": user.upn,
        "scp": DELEGATED_SCOPE,
        "appid": client_id,
        "azp": client_id,
        "idtyp": "user",
        "jti": str(uuid.uuid4()),
    }
    id_claims: dict[str, Any] = {**common, **identity, "aud": client_id, "exp": now + lifetime}
    if nonce:
        id_claims["nonce"] = nonce
    family = family or uuid.uuid4().hex
    refresh_lifetime = settings.refresh_token_lifetime_seconds
    refresh = await grants.create(
        iss.db,
        kind=grants.REFRESH,
        client_id=client_id,
        user_oid=user.oid,
        family=family,
        status="active",
        lifetime=timedelta(seconds=refresh_lifetime),
        data={"scope": scope},
    )
    out: dict[str, Any] = {
        "token_type": "Bearer",
        # Echo the resource scope as asked: MSAL files the token in its cache under this target.
        "scope": " ".join(resources) if resources else f"{settings.audience.rstrip('/')}/.default",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": iss.keys.sign(access),
        "refresh_token": refresh,
        "refresh_token_expires_in": refresh_lifetime,
        "id_token": iss.keys.sign(id_claims),
    }
    if want_client_info:
        out["client_info"] = client_info(settings, user)
    return out
