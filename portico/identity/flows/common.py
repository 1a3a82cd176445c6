"""What the delegated token grants share: public-client checks on the token endpoint."""

from __future__ import annotations

from portico.identity.issuer import OAuthError
from portico.identity.public_clients import PublicClient, get_public_client
from portico.store.db import Database


async def public_client(db: Database, form: dict[str, str]) -> PublicClient:
    """The public client a token request names; it must not present a secret (it has none)."""
    client_id = form.get("client_id", "")
    if not client_id:
        raise OAuthError(400, "invalid_request", "The request body must contain the parameter 'client_id'.")
    if form.get("client_secret") or form.get("client_assertion"):
        raise OAuthError(
            400,
            "invalid_request",
            "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )
    client = await get_public_client(db, client_id)
    if client is None:
        raise OAuthError(
            400,
            "unauthorized_client",
            f"AADSTS700016: Application with identifier '{client_id[:64]}' was not found in the directory "
            "as a public client. Register it with 'portico app create --public --redirect-uri ...'.",
        )
    return client


def wants_client_info(form: dict[str, str]) -> bool:
    return form.get("client_info") == "1"
