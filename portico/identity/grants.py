"""Storage of delegated grants: device codes, authorization codes and refresh tokens.

Only the SHA-256 of each secret handed to a client is stored, so a copy of the database lets nobody
redeem a pending code or a refresh token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from portico.store.db import Database
from portico.store.schema import auth_grants

DEVICE, CODE, REFRESH = "device", "code", "refresh"


@dataclass(frozen=True)
class Grant:
    id: str
    kind: str
    user_code: str | None
    client_id: str
    user_oid: str | None
    family: str | None
    status: str
    data: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    last_poll_at: datetime | None


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _grant(r: Any) -> Grant:
    return Grant(
        r.id,
        r.kind,
        r.user_code,
        r.client_id,
        r.user_oid,
        r.family,
        r.status,
        dict(r.data or {}),
        _aware(r.created_at) or datetime.now(UTC),
        _aware(r.expires_at) or datetime.now(UTC),
        _aware(r.last_poll_at),
    )


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(48)


async def create(
    db: Database,
    *,
    kind: str,
    client_id: str,
    lifetime: timedelta,
    data: dict[str, Any],
    status: str,
    user_oid: str | None = None,
    user_code: str | None = None,
    family: str | None = None,
) -> str:
    """Store a grant; returns the secret (device code, authorization code or refresh token)."""
    secret = new_secret()
    now = datetime.now(UTC)
    async with db.write() as conn:
        # Expired grants are dropped here, on the write path, so the table does not grow unbounded.
        await conn.execute(delete(auth_grants).where(auth_grants.c.expires_at < now - timedelta(hours=1)))
        await conn.execute(
            auth_grants.insert().values(
                id=digest(secret),
                kind=kind,
                user_code=user_code,
                client_id=client_id,
                user_oid=user_oid,
                family=family,
                status=status,
                data=data,
                created_at=now,
                expires_at=now + lifetime,
            )
        )
    return secret


async def find(db: Database, kind: str, secret: str) -> Grant | None:
    q = select(auth_grants).where(auth_grants.c.id == digest(secret), auth_grants.c.kind == kind)
    async with db.read() as conn:
        row = (await conn.execute(q)).first()
    return _grant(row) if row else None


async def find_by_user_code(db: Database, user_code: str) -> Grant | None:
    q = select(auth_grants).where(auth_grants.c.user_code == user_code, auth_grants.c.kind == DEVICE)
    async with db.read() as conn:
        row = (await conn.execute(q)).first()
    return _grant(row) if row else None


async def transition(db: Database, grant_id: str, expect: str, **values: Any) -> bool:
    """Compare-and-set on `status`: exactly one caller wins a single-use grant."""
    async with db.write() as conn:
        result = await conn.execute(
            update(auth_grants)
            .where(auth_grants.c.id == grant_id, auth_grants.c.status == expect)
            .values(**values)
        )
    return bool(result.rowcount)


async def touch_poll(db: Database, grant_id: str, at: datetime) -> None:
    async with db.write() as conn:
        await conn.execute(update(auth_grants).where(auth_grants.c.id == grant_id).values(last_poll_at=at))


async def revoke_family(db: Database, family: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            update(auth_grants)
            .where(auth_grants.c.family == family, auth_grants.c.kind == REFRESH)
            .values(status="revoked")
        )
