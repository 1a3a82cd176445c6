"""Refresh token grant: rotation (each refresh token is single use and replaced by a new one in the
same family), sliding lifetime, and replay detection (a used token presented again revokes the
whole family, since one of the two holders is not the person)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from portico.identity import grants
from portico.identity.flows.common import public_client, wants_client_info
from portico.identity.issuer import OAuthError
from portico.identity.user_tokens import Issuer, token_response
from portico.identity.users import get_user

log = logging.getLogger("portico.identity")


async def redeem(iss: Issuer, form: dict[str, str]) -> dict[str, Any]:
    client = await public_client(iss.db, form)
    token = form.get("refresh_token", "")
    if not token:
        raise OAuthError(
            400, "invalid_request", "The request body must contain the parameter 'refresh_token'."
        )
    invalid = OAuthError(
        400,
        "invalid_grant",
        "AADSTS700082: The refresh token has expired, was revoked or is not valid. Sign in again.",
    )
    grant = await grants.find(iss.db, grants.REFRESH, token)
    if grant is None or grant.client_id != client.client_id or grant.user_oid is None:
        raise invalid
    if grant.status == "used" and grant.family:
        log.warning("refresh token replayed for user %s: revoking its session", grant.user_oid)
        await grants.revoke_family(iss.db, grant.family)
        raise invalid
    if grant.status != "active" or grant.expires_at <= datetime.now(UTC):
        raise invalid
    if not await grants.transition(iss.db, grant.id, "active", status="used"):
        raise invalid
    user = await get_user(iss.db, grant.user_oid)
    if user is None:
        raise invalid
    return await token_response(
        iss,
        user,
        client.client_id,
        form.get("scope") or grant.data.get("scope", ""),
        family=grant.family,
        want_client_info=wants_client_info(form),
    )
