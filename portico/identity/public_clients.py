"""Public (native) client applications: no secret, sign people in through registered redirect URIs.

Registered with `portico app create --public --redirect-uri http://localhost`, as the original
disaster-recovery documents register a native app in Entra. The Azure CLI and Azure PowerShell send
well-known first-party client ids that Entra accepts in every tenant; they are accepted here too, so
`az login` needs no registration. For native apps Entra lets a loopback redirect URI
(`http://localhost` or `http://127.0.0.1`) match on any port; so does Portico.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from portico.store.db import Database
from portico.store.schema import apps

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
AZURE_POWERSHELL = "1950a258-227b-4e31-a9cf-717495945fc2"
NATIVE_REDIRECT = "https://login.microsoftonline.com/common/oauth2/nativeclient"
FIRST_PARTY: dict[str, str] = {
    AZURE_CLI: "Microsoft Azure CLI",
    AZURE_POWERSHELL: "Microsoft Azure PowerShell",
}
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]"}


@dataclass(frozen=True)
class PublicClient:
    client_id: str
    display_name: str
    redirect_uris: tuple[str, ...]

    def allows_redirect(self, uri: str) -> bool:
        return any(redirect_matches(registered, uri) for registered in self.redirect_uris)


def _loopback(uri: str) -> tuple[str, str, str] | None:
    """(host, path, query) of an http loopback URI, else None."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    host = (parts.hostname or "").casefold()
    netloc_host = "[::1]" if host == "::1" else host
    if parts.scheme != "http" or netloc_host not in _LOOPBACK_HOSTS or parts.fragment or parts.username:
        return None
    return netloc_host, parts.path or "/", parts.query


def redirect_matches(registered: str, uri: str) -> bool:
    """Exact match, or loopback: same scheme, host and path, any port (RFC 8252 §7.3)."""
    if registered == uri:
        return True
    a, b = _loopback(registered), _loopback(uri)
    return a is not None and b is not None and a == b


def check_redirect_uri(uri: str) -> str:
    value = uri.strip()
    parts = urlsplit(value)
    if parts.fragment or not parts.scheme or len(value) > 512:
        raise ValueError(
            f"Redirect URI '{value}' must be an absolute URI without a fragment (at most 512 characters)."
        )
    if parts.scheme == "http" and _loopback(value) is None:
        raise ValueError(
            f"Redirect URI '{value}': plain http is allowed only for http://localhost or http://127.0.0.1."
        )
    return value


async def create_public_app(db: Database, display_name: str, redirect_uris: list[str]) -> str:
    """Register a public client; returns its client id. It has no secret."""
    name = display_name.strip()
    if not name or len(name) > 200:
        raise ValueError("The app name must be 1 to 200 characters.")
    uris = [check_redirect_uri(u) for u in redirect_uris]
    if not uris:
        raise ValueError("A public client needs at least one --redirect-uri (e.g. http://localhost).")
    client_id = str(uuid.uuid4())
    async with db.write() as conn:
        await conn.execute(
            apps.insert().values(
                client_id=client_id,
                display_name=name,
                secret_hash="",  # no secret can ever match
                created_at=datetime.now(UTC),
                public_client=True,
                redirect_uris=uris,
            )
        )
    return client_id


async def get_public_client(db: Database, client_id: str) -> PublicClient | None:
    """A registered public client or a first-party one; None for unknown ids and confidential apps."""
    if client_id in FIRST_PARTY:
        return PublicClient(client_id, FIRST_PARTY[client_id], ("http://localhost", NATIVE_REDIRECT))
    q = select(apps.c.display_name, apps.c.public_client, apps.c.redirect_uris).where(
        apps.c.client_id == client_id
    )
    async with db.read() as conn:
        row = (await conn.execute(q)).first()
    if row is None or not row.public_client:
        return None
    return PublicClient(client_id, row.display_name, tuple(row.redirect_uris or ()))
