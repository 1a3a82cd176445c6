"""Tokens of authorizations for the gateway (`get-authorization-context`), without a database
call per request.

A worker keeps, per authorization, its configuration (read once per configuration version of the
service) and its token (until the token is due for refresh). A token due for refresh is read
again from `credential_tokens` (another node may have refreshed it); if it is still due, the first
node to claim the row asks the provider for a new one (client credentials, or the refresh token)
while the others keep using the current token until it actually expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from portico.arm.errors import ArmError
from portico.identity.credentials import connect
from portico.identity.credentials import tokens as TK
from portico.identity.credentials.oauth import CredentialFailure, TokenSet
from portico.identity.credentials.providers import allowed
from portico.identity.validation import TokenValidator
from portico.secrets_box import SecretBox, SecretBoxError
from portico.store.db import Database

log = logging.getLogger("portico.credentials")

CLAIM_SECONDS = 30.0
RECHECK_SECONDS = 5.0  # a token another node is refreshing: look at the database again after this
FAILURE_SECONDS = 5.0  # a provider that refused: answer the same failure meanwhile, without asking
MAX_ENTRIES = 10_000


@dataclass
class _Cached:
    tokens: TokenSet
    etag: str  # of the authorization when the token was read: a new consent changes it
    until: float  # serve from memory until then


class CredentialSource:
    """One per gateway worker. `box` gives the server secret box (tokens are sealed with it);
    `validator` checks the JWTs of `identity-type="jwt"`."""

    def __init__(
        self,
        db: Database,
        box: Callable[[], SecretBox],
        validator: TokenValidator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._box = box
        self._validator = validator
        self._clock = clock
        self._configs: dict[tuple[int, int, int, str, str], connect.Connection | None] = {}
        self._tokens: dict[TK.TokenKey, _Cached] = {}
        self._locks: dict[TK.TokenKey, asyncio.Lock] = {}
        self._failures: dict[TK.TokenKey, tuple[float, str, CredentialFailure]] = {}

    async def aclose(self) -> None:
        if self._validator is not None:
            await self._validator.aclose()

    async def context(
        self,
        service: tuple[int, int, int],
        provider: str,
        authorization: str,
        identity_type: str,
        identity: str | None,
    ) -> dict[str, Any]:
        """`{"AccessToken", "Claims"}` of an authorization of the service `(id, store, version)`,
        or CredentialFailure."""
        c = await self._config(service, provider, authorization)
        if c is None:
            raise CredentialFailure(
                "NotFound",
                f"Authorization '{authorization[:100]}' of provider '{provider[:100]}' was not found.",
            )
        await self._check_access(c, identity_type, identity)
        if c.data.get("oauth2grantType") == "AuthorizationCode" and c.data.get("status") != "Connected":
            error = c.data.get("error") or {}
            raise CredentialFailure(
                str(error.get("code") or "Unauthenticated"),
                str(error.get("message") or "This connection is not authenticated."),
            )
        tokens = await self._token(c)
        return {"AccessToken": tokens.access_token, "Claims": tokens.claims}

    # --- configuration -------------------------------------------------------------------------
    async def _config(
        self, service: tuple[int, int, int], provider: str, authorization: str
    ) -> connect.Connection | None:
        key = (*service, provider.lower(), authorization.lower())
        if key in self._configs:
            return self._configs[key]
        async with self._db.read() as conn:
            c = await connect.read(conn, service[1], provider, authorization)
        if len(self._configs) > MAX_ENTRIES:
            self._configs.clear()
        self._configs[key] = c
        return c

    async def _check_access(self, c: connect.Connection, identity_type: str, identity: str | None) -> None:
        if identity_type == "managed":
            return  # the service's own identity: Portico grants it every connection of the service
        if identity_type != "jwt":
            raise CredentialFailure(
                "InvalidIdentityType",
                f"identity-type must be 'managed' or 'jwt', got '{identity_type[:40]}'.",
            )
        if not identity or self._validator is None:
            raise CredentialFailure(
                "InvalidIdentity", "identity-type 'jwt' needs a bearer token in 'identity'."
            )
        token = identity.strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        try:
            principal = await self._validator.validate(f"Bearer {token}")
        except ArmError as exc:
            raise CredentialFailure(
                "InvalidIdentity", f"The identity token is not valid: {exc.message}"
            ) from None
        claims = principal.claims
        oid = str(claims.get("oid") or principal.principal_id)
        tid = claims.get("tid") or principal.tenant_id
        app = claims.get("appid") or claims.get("azp")
        if not allowed(c.policies, oid, str(tid) if tid else None, str(app) if app else None):
            raise CredentialFailure(
                "Forbidden",
                f"No access policy of authorization '{c.name}' admits object id '{oid[:64]}' of tenant "
                f"'{str(tid)[:64]}'.",
            )

    # --- tokens --------------------------------------------------------------------------------
    def _fresh(self, c: connect.Connection, now: float) -> TokenSet | None:
        entry = self._tokens.get(c.key)
        if entry is not None and entry.etag == c.etag and now < entry.until:
            return entry.tokens
        return None

    def _keep(self, c: connect.Connection, tokens: TokenSet, until: float) -> TokenSet:
        if len(self._tokens) > MAX_ENTRIES:
            self._tokens.clear()
        self._tokens[c.key] = _Cached(tokens, c.etag, until)
        return tokens

    async def _token(self, c: connect.Connection) -> TokenSet:
        now = self._clock()
        fresh = self._fresh(c, now)
        if fresh is not None:
            return fresh
        if len(self._locks) > MAX_ENTRIES:
            self._locks.clear()  # a holder keeps its own; at worst two refreshes overlap once
        lock = self._locks.setdefault(c.key, asyncio.Lock())
        async with lock:
            now = self._clock()
            fresh = self._fresh(c, now)
            if fresh is not None:
                return fresh
            failed = self._failures.get(c.key)
            if failed is not None and failed[1] == c.etag and now < failed[0]:
                raise failed[2]
            try:
                return await self._load_or_obtain(c, now)
            except CredentialFailure as failure:
                if len(self._failures) > MAX_ENTRIES:
                    self._failures.clear()
                self._failures[c.key] = (now + FAILURE_SECONDS, c.etag, failure)
                raise

    async def _load_or_obtain(self, c: connect.Connection, now: float) -> TokenSet:
        box = self._box()
        try:
            async with self._db.read() as conn:
                current = await TK.load(conn, box, c.key)
        except SecretBoxError as exc:  # another node's server key: say so (the message holds no secret)
            raise CredentialFailure("TokenUnreadable", f"The stored token cannot be opened: {exc}") from None
        if current is not None and (current.refresh_at is None or now < current.refresh_at):
            return self._keep(c, current, current.refresh_at or now + 3600.0)
        if current is not None:
            async with self._db.write() as conn:
                claimed = await TK.claim(conn, c.key, CLAIM_SECONDS)
            usable = current.expires_at is None or now < current.expires_at
            if not claimed and usable:
                return self._keep(c, current, now + RECHECK_SECONDS)
        try:
            tokens = await connect.obtain(c, current)
        except CredentialFailure as failure:
            log.warning("authorization %s/%s: no new token: %s", c.provider_name, c.name, failure.message)
            if current is not None and (current.expires_at is None or now < current.expires_at):
                return self._keep(c, current, now + RECHECK_SECONDS)
            if c.data.get("status") == "Connected" or c.data.get("error") != failure.as_error():
                # The connection shows what it is (written only when that changes).
                async with self._db.write() as conn:
                    await connect.record(conn, box, c, failure)
            raise
        try:
            async with self._db.write() as conn:
                if c.data.get("status") == "Connected":
                    await TK.save(conn, box, c.key, tokens)
                else:  # connected again: its status says so
                    await connect.record(conn, box, c, tokens)
        except IntegrityError:  # another node stored its first token at the same moment
            pass
        return self._keep(c, tokens, tokens.refresh_at or now + 3600.0)
