"""App registrations (client id + secret) of the built-in identity provider."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from portico.identity.keys import pg_advisory_lock
from portico.identity.rbac import delete_assignments_of, insert_assignment, invalidate_cache
from portico.store.db import Database
from portico.store.schema import apps

log = logging.getLogger("portico.identity")

# scrypt: memory-hard, in the standard library. n=2**14, r=8 uses 16 MiB and ~50 ms per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _DKLEN = 2**14, 8, 1, 32
CREDENTIALS_FILE = "admin-credentials.json"


@dataclass(frozen=True)
class AppInfo:
    client_id: str
    display_name: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "display_name": self.display_name,
            "created_at": self.created_at.isoformat(),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`; the parameters travel with the hash so they can be raised later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_DKLEN)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(want)
        got = hashlib.scrypt(
            secret.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    """Checked when the client id is unknown, so both failures take the same time."""
    return hash_secret(secrets.token_urlsafe(32))


async def create_app(db: Database, display_name: str) -> tuple[str, str]:
    """Register an app; returns (client_id, secret). The secret is not stored and cannot be shown again."""
    name = display_name.strip()
    if not name or len(name) > 200:
        raise ValueError("The app name must be 1 to 200 characters.")
    client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, secret)
    async with db.write() as conn:
        await conn.execute(
            apps.insert().values(
                client_id=client_id, display_name=name, secret_hash=secret_hash, created_at=datetime.now(UTC)
            )
        )
    return client_id, secret


async def list_apps(db: Database) -> list[AppInfo]:
    q = select(apps.c.client_id, apps.c.display_name, apps.c.created_at).order_by(
        apps.c.created_at, apps.c.client_id
    )
    async with db.read() as conn:
        return [AppInfo(r.client_id, r.display_name, r.created_at) for r in (await conn.execute(q)).all()]


async def get_app(db: Database, client_id: str) -> AppInfo | None:
    q = select(apps.c.client_id, apps.c.display_name, apps.c.created_at).where(apps.c.client_id == client_id)
    async with db.read() as conn:
        row = (await conn.execute(q)).first()
    return AppInfo(row.client_id, row.display_name, row.created_at) if row else None


async def delete_app(db: Database, client_id: str) -> bool:
    """Delete an app and its role assignments; False when there was no such app."""
    async with db.write() as conn:
        result = await conn.execute(delete(apps).where(apps.c.client_id == client_id))
        if result.rowcount:
            await delete_assignments_of(conn, client_id)
    invalidate_cache()
    return bool(result.rowcount)


async def stored_secret_hash(db: Database, client_id: str) -> str | None:
    """The secret hash of app `client_id`; None when no such app exists."""
    async with db.read() as conn:
        row = (await conn.execute(select(apps.c.secret_hash).where(apps.c.client_id == client_id))).first()
    return str(row.secret_hash) if row else None


async def secret_matches(secret: str, stored: str | None) -> bool:
    """Constant-time check against `stored_secret_hash`; an unknown client (None) costs the same
    as a wrong secret."""
    ok = await asyncio.to_thread(check_secret, secret, stored or _dummy_hash())
    return ok and stored is not None


async def verify_secret(db: Database, client_id: str, secret: str) -> bool:
    return await secret_matches(secret, await stored_secret_hash(db, client_id))


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write with mode 0600 from the first byte (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)  # in case the file already existed with wider rights
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def ensure_bootstrap_admin(
    db: Database, data_dir: Path, *, tenant_id: str | None = None, authority: str | None = None
) -> Path | None:
    """On a database without apps, create app "admin" (Owner at "/") and write its credentials to
    `data_dir/admin-credentials.json` (mode 0600). Returns that path, or None if apps exist."""
    async with db.read() as conn:
        if (await conn.execute(select(func.count()).select_from(apps))).scalar_one():
            return None
    client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
    secret_hash = await asyncio.to_thread(hash_secret, secret)
    path = Path(data_dir) / CREDENTIALS_FILE
    creds: dict[str, Any] = {}
    if tenant_id:
        creds["tenant_id"] = tenant_id
    if authority:
        creds["authority"] = authority
    creds |= {"client_id": client_id, "client_secret": secret}
    written = False
    try:
        async with db.write() as conn:
            await pg_advisory_lock(conn, db)  # two nodes starting together create one admin
            if (await conn.execute(select(func.count()).select_from(apps))).scalar_one():
                return None
            await conn.execute(
                apps.insert().values(
                    client_id=client_id,
                    display_name="admin",
                    secret_hash=secret_hash,
                    created_at=datetime.now(UTC),
                )
            )
            await insert_assignment(conn, client_id, "Owner", "/")
            # Written before commit: if the write fails, no admin exists whose secret nobody has.
            await asyncio.to_thread(_write_private_json, path, creds)
            written = True
    except BaseException:
        if written:
            path.unlink(missing_ok=True)
        raise
    invalidate_cache()
    log.info("created bootstrap admin app %s; its credentials are in %s", client_id, path)
    return path
