"""The tokens of authorizations, sealed, in `credential_tokens` (runtime state beside the store's
entities, as Azure keeps consent tokens out of its configuration and its backups).

A row is sealed with associated data naming its store, provider and authorization, so a sealed
value copied onto another row does not open. Several nodes may want a fresh token at once:
`claim` lets one of them refresh while the others keep using the current token.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.identity.credentials.oauth import TokenSet
from portico.names import fold_name
from portico.secrets_box import SecretBox
from portico.store.schema import credential_tokens as T


@dataclass(frozen=True)
class TokenKey:
    store_id: int
    provider: str  # folded
    authorization: str  # folded

    @classmethod
    def of(cls, store_id: int, provider: str, authorization: str) -> TokenKey:
        return cls(store_id, fold_name(provider), fold_name(authorization))

    def aad(self) -> bytes:
        return f"credential-token\0{self.store_id}\0{self.provider}\0{self.authorization}".encode()

    def where(self) -> object:
        return and_(
            T.c.store_id == self.store_id,
            T.c.provider_key == self.provider,
            T.c.authorization_key == self.authorization,
        )


async def load(conn: AsyncConnection, box: SecretBox, key: TokenKey) -> TokenSet | None:
    row = (await conn.execute(select(T.c.sealed).where(key.where()))).first()  # type: ignore[arg-type]
    if row is None:
        return None
    return TokenSet.from_json(json.loads(box.open(bytes(row.sealed), key.aad())))


async def held(conn: AsyncConnection, store_id: int, provider: str) -> set[str]:
    """The (folded) names of a provider's authorizations that hold tokens."""
    q = select(T.c.authorization_key).where(T.c.store_id == store_id, T.c.provider_key == fold_name(provider))
    return {r.authorization_key for r in (await conn.execute(q)).all()}


async def save(conn: AsyncConnection, box: SecretBox, key: TokenKey, tokens: TokenSet) -> None:
    sealed = box.seal(json.dumps(tokens.as_json()).encode(), key.aad())
    values = {
        "sealed": sealed,
        "expires_at": tokens.expires_at,
        "refresh_at": tokens.refresh_at,
        "claimed_until": None,
        "updated_at": time.time(),
    }
    res = await conn.execute(update(T).where(key.where()).values(**values))  # type: ignore[arg-type]
    if not res.rowcount:
        await conn.execute(
            T.insert().values(
                store_id=key.store_id,
                provider_key=key.provider,
                authorization_key=key.authorization,
                **values,
            )
        )


async def claim(conn: AsyncConnection, key: TokenKey, seconds: float) -> bool:
    """Whether this caller may refresh the token now (no other node claimed it meanwhile)."""
    now = time.time()
    res = await conn.execute(
        update(T)
        .where(key.where(), or_(T.c.claimed_until.is_(None), T.c.claimed_until < now))  # type: ignore[arg-type]
        .values(claimed_until=now + seconds)
    )
    return bool(res.rowcount)


async def remove(
    conn: AsyncConnection, store_id: int, provider: str, authorization: str | None = None
) -> None:
    """Forget the tokens of an authorization (or of every authorization of a provider)."""
    cond = and_(T.c.store_id == store_id, T.c.provider_key == fold_name(provider))
    if authorization is not None:
        cond = and_(cond, T.c.authorization_key == fold_name(authorization))
    await conn.execute(delete(T).where(cond))
