"""Device authorization grant (RFC 8628) as Entra serves it: `POST /{tenant}/oauth2/v2.0/devicecode`,
a page where the person enters the code and signs in, and token polling with
`urn:ietf:params:oauth:grant-type:device_code`."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from portico.identity import grants
from portico.identity.flows.common import public_client, wants_client_info
from portico.identity.issuer import OAuthError
from portico.identity.public_clients import get_public_client
from portico.identity.user_tokens import Issuer, resource_scopes, token_response
from portico.identity.users import User, get_user

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
LIFETIME = timedelta(minutes=15)
# No vowels (no words) and no 0/O, 1/I: easy to read out and type.
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ23456789"
USER_CODE_LENGTH = 9
VERIFICATION_PATH = "/devicelogin"


def new_user_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())[:32]


async def start(iss: Issuer, form: dict[str, str]) -> dict[str, Any]:
    """Answer of the device authorization endpoint."""
    client = await public_client(iss.db, form)
    scope = form.get("scope", "")
    resource_scopes(iss.settings, scope)  # refuse an unknown resource now, not after sign-in
    interval = iss.settings.device_code_interval_seconds
    uri = iss.settings.resolved_public_url + VERIFICATION_PATH
    for _ in range(5):  # a user code collision is rare; retry with a fresh one
        user_code = new_user_code()
        if await grants.find_by_user_code(iss.db, user_code) is None:
            break
    device_code = await grants.create(
        iss.db,
        kind=grants.DEVICE,
        client_id=client.client_id,
        lifetime=LIFETIME,
        status="pending",
        user_code=user_code,
        data={"scope": scope, "interval": interval},
    )
    seconds = int(LIFETIME.total_seconds())
    return {
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": seconds,
        "interval": interval,
        "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} "
        "to authenticate.",
    }


async def pending(iss: Issuer, user_code: str) -> tuple[grants.Grant, str] | None:
    """The pending, unexpired device grant of a user code and the name of its client."""
    grant = await grants.find_by_user_code(iss.db, normalize_user_code(user_code))
    if grant is None or grant.status != "pending" or grant.expires_at <= datetime.now(UTC):
        return None
    client = await get_public_client(iss.db, grant.client_id)
    return (grant, client.display_name) if client else None


async def decide(iss: Issuer, grant: grants.Grant, user: User | None) -> bool:
    """Approve for `user`, or deny when None; False if the code was decided or expired meanwhile."""
    if user is None:
        return await grants.transition(iss.db, grant.id, "pending", status="denied")
    return await grants.transition(iss.db, grant.id, "pending", status="approved", user_oid=user.oid)


async def redeem(iss: Issuer, form: dict[str, str]) -> dict[str, Any]:
    client = await public_client(iss.db, form)
    code = form.get("device_code", "")
    if not code:
        raise OAuthError(400, "invalid_request", "The request body must contain the parameter 'device_code'.")
    grant = await grants.find(iss.db, grants.DEVICE, code)
    if grant is None or grant.client_id != client.client_id:
        raise OAuthError(400, "bad_verification_code", "AADSTS70019: The device code is not recognized.")
    now = datetime.now(UTC)
    if grant.expires_at <= now:
        raise OAuthError(
            400, "expired_token", "AADSTS70020: The device code has expired. Start the sign-in again."
        )
    if grant.status == "denied":
        raise OAuthError(400, "authorization_declined", "AADSTS70000: The user declined the sign-in request.")
    if grant.status == "pending":
        interval = float(grant.data.get("interval", iss.settings.device_code_interval_seconds))
        too_soon = (
            grant.last_poll_at is not None and (now - grant.last_poll_at).total_seconds() < interval * 0.8
        )
        await grants.touch_poll(iss.db, grant.id, now)
        if too_soon:
            raise OAuthError(
                400,
                "slow_down",
                f"AADSTS70016: Polling too fast; wait {int(interval)} seconds between requests.",
            )
        raise OAuthError(
            400,
            "authorization_pending",
            "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )
    if grant.status != "approved" or grant.user_oid is None:
        raise OAuthError(400, "invalid_grant", "AADSTS54005: The device code was already redeemed.")
    if not await grants.transition(iss.db, grant.id, "approved", status="used"):
        raise OAuthError(400, "invalid_grant", "AADSTS54005: The device code was already redeemed.")
    user = await get_user(iss.db, grant.user_oid)
    if user is None:
        raise OAuthError(400, "invalid_grant", "The user who approved the sign-in no longer exists.")
    return await token_response(
        iss, user, client.client_id, grant.data.get("scope", ""), want_client_info=wants_client_info(form)
    )
