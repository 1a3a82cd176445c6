"""People sign-in wired together: the token endpoint's delegated grants, the discovery additions,
and the pages/device-code router. `portico.server.app` plugs these into the identity provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from portico.identity import refresh
from portico.identity.flows import authorization_code, device_code
from portico.identity.issuer import CLAIMS_SUPPORTED, GrantHandler
from portico.identity.keys import SigningKeys
from portico.identity.pages import build_pages_router
from portico.identity.user_tokens import Issuer
from portico.settings import Settings
from portico.store.db import Database


@dataclass(frozen=True)
class People:
    router: APIRouter
    grants: Mapping[str, GrantHandler]
    discovery: Mapping[str, Any]


def build_people(settings: Settings, db: Database, keys: SigningKeys) -> People:
    iss = Issuer(settings, db, keys)
    base = f"{settings.resolved_public_url}/{settings.tenant_id}"

    async def device(form: dict[str, str]) -> dict[str, Any]:
        return await device_code.redeem(iss, form)

    async def code(form: dict[str, str]) -> dict[str, Any]:
        return await authorization_code.redeem(iss, form)

    async def refresh_token(form: dict[str, str]) -> dict[str, Any]:
        return await refresh.redeem(iss, form)

    grants: dict[str, GrantHandler] = {
        device_code.GRANT_TYPE: device,
        "authorization_code": code,
        "refresh_token": refresh_token,
    }
    discovery = {
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "response_types_supported": ["code", "token"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["client_credentials", *grants],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "scopes_supported": [
            settings.audience.rstrip("/") + "/.default",
            settings.audience.rstrip("/") + "/user_impersonation",
            "openid",
            "profile",
            "offline_access",
        ],
        "claims_supported": [
            *CLAIMS_SUPPORTED,
            "name",
            "preferred_username",
            "upn",
            "scp",
            "nonce",
        ],
        "subject_types_supported": ["pairwise"],
    }
    return People(build_pages_router(iss), grants, discovery)
