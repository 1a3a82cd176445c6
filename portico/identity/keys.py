"""RS256 signing keys of the built-in token issuer, shared through the database by every node."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select, text

from portico.store.db import Database
from portico.store.schema import signing_keys

log = logging.getLogger("portico.identity")

ALGORITHM = "RS256"
# A token with an unknown kid triggers at most one database reload per this many seconds, so a
# flood of forged kids cannot turn into a flood of queries.
_RELOAD_INTERVAL = 5.0
# Any constant: serialises key bootstrap between PostgreSQL nodes (SQLite writers are serialised).
_PG_LOCK_ID = 0x706F7274


def _generate_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _import(pem: bytes, kid: str | None = None) -> RSAKey:
    params: dict[str, Any] = {"use": "sig", "alg": ALGORITHM}
    if kid:
        params["kid"] = kid
    return RSAKey.import_key(pem, parameters=params)  # type: ignore[arg-type]


async def pg_advisory_lock(conn: Any, db: Database) -> None:
    """Take a transaction-scoped lock so concurrent nodes bootstrap one thing, not one each."""
    if not db.sqlite:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})


class SigningKeys:
    """The active signing key plus every stored key (published in the JWKS, used to verify)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._keys: dict[str, RSAKey] = {}
        self._active_kid: str | None = None
        self._last_reload = 0.0
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the keys; on an empty table generate one (insert-or-reload, safe between nodes)."""
        await self.reload()
        if self._active_kid is not None:
            return
        pem = await asyncio.to_thread(_generate_pem)  # ~100 ms of CPU: keep the loop free
        kid = _import(pem).thumbprint()
        async with self._db.write() as conn:
            await pg_advisory_lock(conn, self._db)
            existing = await conn.execute(select(signing_keys.c.kid).where(signing_keys.c.active).limit(1))
            if existing.first() is None:
                await conn.execute(
                    signing_keys.insert().values(
                        kid=kid, private_pem=pem, created_at=datetime.now(UTC), active=True
                    )
                )
                log.info("generated token signing key %s", kid)
        # Whoever won the race, every node now reads the same rows and picks the same key.
        await self.reload()
        if self._active_kid is None:  # pragma: no cover - only if the row vanished meanwhile
            raise RuntimeError("no active token signing key could be loaded")

    async def reload(self) -> None:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        signing_keys.c.kid,
                        signing_keys.c.private_pem,
                        signing_keys.c.active,
                        signing_keys.c.created_at,
                    )
                )
            ).all()
        keys: dict[str, RSAKey] = {}
        active: list[tuple[Any, str]] = []
        for row in rows:
            keys[row.kid] = self._keys.get(row.kid) or _import(bytes(row.private_pem), row.kid)
            if row.active:
                active.append((row.created_at, row.kid))
        self._keys = keys
        # Oldest active key wins (kid breaks ties), so all nodes sign with the same key.
        self._active_kid = min(active)[1] if active else None
        self._last_reload = time.monotonic()

    @property
    def active_kid(self) -> str:
        if self._active_kid is None:
            raise RuntimeError("SigningKeys.start() has not run")
        return self._active_kid

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact RS256 JWT of `claims`, with the active key's kid in the header."""
        kid = self.active_kid
        header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._keys[kid], algorithms=[ALGORITHM])

    def cached_key(self, kid: str) -> RSAKey | None:
        return self._keys.get(kid)

    async def verification_key(self, kid: str) -> RSAKey | None:
        """Key for `kid`; an unknown kid may be a key another node just added, so reload once."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._reload_lock:
            if kid not in self._keys and time.monotonic() - self._last_reload >= _RELOAD_INTERVAL:
                await self.reload()
        return self._keys.get(kid)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        out = []
        for kid, key in sorted(self._keys.items()):
            pub = key.as_dict(private=False)
            out.append(
                {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid, "n": pub["n"], "e": pub["e"]}
            )
        return {"keys": out}
