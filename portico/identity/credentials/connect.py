"""Obtaining a token for an authorization and recording the outcome: the token sealed in
`credential_tokens`, the authorization's `status` (`Connected`, or `Error` with `error`) in its
entity. Network calls happen outside any transaction; the outcome is recorded only if the
authorization was not changed meanwhile (its ETag), so a late answer never overwrites a newer PUT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError
from portico.identity.credentials import oauth
from portico.identity.credentials import tokens as TK
from portico.identity.credentials.oauth import CredentialFailure, TokenSet
from portico.identity.credentials.providers import Endpoints, endpoints
from portico.secrets_box import SecretBox
from portico.store import entities as E
from portico.store.db import Database

log = logging.getLogger("portico.credentials")


@dataclass
class Connection:
    """One authorization as stored, with its provider and access policies."""

    store_id: int
    provider_name: str
    name: str
    provider: dict[str, Any] = field(repr=False)
    data: dict[str, Any] = field(repr=False)
    etag: str
    display_name: str | None
    policies: list[dict[str, Any]] = field(repr=False)

    @property
    def parent(self) -> str:
        return f"authorizationProviders/{self.provider_name}"

    @property
    def key(self) -> TK.TokenKey:
        return TK.TokenKey.of(self.store_id, self.provider_name, self.name)

    def endpoints(self) -> Endpoints:
        try:
            return endpoints(self.provider, self.data)
        except ArmError as exc:  # a provider stored before its checks existed
            raise CredentialFailure(
                "InvalidConfiguration", f"Authorization provider '{self.provider_name}': {exc.message}"
            ) from None


async def read(conn: AsyncConnection, store_id: int, provider: str, authorization: str) -> Connection | None:
    """The authorization `provider/authorization` of a store (names ignore case), or None."""
    pname = await E.find_name(conn, store_id, "authorizationProvider", "", provider)
    prow = await E.get(conn, store_id, "authorizationProvider", "", pname) if pname else None
    if prow is None:
        return None
    parent = f"authorizationProviders/{prow.name}"
    aname = await E.find_name(conn, store_id, "authorization", parent, authorization)
    arow = await E.get(conn, store_id, "authorization", parent, aname) if aname else None
    if arow is None:
        return None
    policies = await E.list_children(
        conn, store_id, "authorizationAccessPolicy", f"{parent}/authorizations/{arow.name}"
    )
    return Connection(
        store_id,
        prow.name,
        arow.name,
        prow.data,
        arow.data,
        arow.etag,
        arow.display_name,
        [p.data for p in policies],
    )


async def obtain(c: Connection, current: TokenSet | None) -> TokenSet:
    """A new token: client credentials ask for one; an authorization code connection refreshes
    with its refresh token (without one, consent must be given again)."""
    ep = c.endpoints()
    if ep.grant == "clientCredentials":
        return await oauth.client_credentials(ep)
    if current is None or not current.refresh_token:
        raise CredentialFailure(
            "Unauthenticated", "This connection is not authenticated: consent through a login link first."
        )
    return await oauth.refresh(ep, current.refresh_token)


async def record(
    conn: AsyncConnection, box: SecretBox, c: Connection, outcome: TokenSet | CredentialFailure
) -> str | None:
    """Store a token and the status it gives, in this write transaction; None when the
    authorization changed or went away since `c` was read (nothing is recorded then)."""
    row = await E.get(conn, c.store_id, "authorization", c.parent, c.name, lock=True)
    if row is None or row.etag != c.etag:
        return None
    data = dict(row.data)
    if isinstance(outcome, TokenSet):
        await TK.save(conn, box, c.key, outcome)
        data["status"] = "Connected"
        data.pop("error", None)
    else:
        data["status"] = "Error"
        data["error"] = outcome.as_error()
    etag, _ = await E.put(
        conn, c.store_id, "authorization", c.parent, c.name, row.display_name, data, exists=True
    )
    return etag


async def connect_client_credentials(
    db: Database, box: SecretBox, store_id: int, provider: str, authorization: str
) -> None:
    """After a PUT of a client-credentials authorization: get its token and record the status."""
    async with db.read() as conn:
        c = await read(conn, store_id, provider, authorization)
    if c is None or c.data.get("oauth2grantType") != "ClientCredentials":
        return
    outcome: TokenSet | CredentialFailure
    try:
        outcome = await obtain(c, None)
    except CredentialFailure as failure:
        log.info("authorization %s/%s: no token: %s", c.provider_name, c.name, failure.message)
        outcome = failure
    async with db.write() as conn:
        await record(conn, box, c, outcome)
