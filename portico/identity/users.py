"""People of the built-in identity provider: sign-in name (UPN), display name, scrypt password hash.

A user's object id (`oid`) is what role assignments name, as for an app's client id. Failed password
attempts are throttled per user: after `FREE_FAILURES` wrong passwords the account locks for a time
that doubles with every further failure (capped), and a lock is checked before the password, so a
locked account gives an attacker nothing to test against.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from portico.identity.apps import _dummy_hash, check_secret, hash_secret
from portico.identity.rbac import delete_assignments_of, invalidate_cache
from portico.store.db import Database
from portico.store.schema import auth_grants, users

log = logging.getLogger("portico.identity")

FREE_FAILURES = 5
FIRST_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
MIN_PASSWORD = 8
_UPN = re.compile(r"^[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9.-]{1,190}$")


@dataclass(frozen=True)
class User:
    oid: str
    upn: str
    display_name: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "upn": self.upn,
            "display_name": self.display_name,
            "created_at": self.created_at.isoformat(),
        }


class SignInError(Exception):
    """A failed sign-in; the message is safe to show (it never says whether the name exists)."""


def _user(row: Any) -> User:
    return User(row.oid, row.upn, row.display_name, row.created_at)


def check_upn(upn: str) -> str:
    name = upn.strip()
    if not _UPN.match(name):
        raise ValueError(
            "The user name must look like an email address (name@domain), at most 256 characters."
        )
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD or len(password) > 256:
        raise ValueError(f"The password must be {MIN_PASSWORD} to 256 characters.")


async def create_user(db: Database, upn: str, display_name: str, password: str) -> User:
    name = check_upn(upn)
    shown = display_name.strip() or name
    if len(shown) > 256:
        raise ValueError("The display name must be at most 256 characters.")
    check_password(password)
    password_hash = await asyncio.to_thread(hash_secret, password)
    user = User(str(uuid.uuid4()), name, shown, datetime.now(UTC))
    async with db.write() as conn:
        if (await conn.execute(select(users.c.oid).where(users.c.upn_key == name.casefold()))).first():
            raise ValueError(f"A user named '{name}' already exists.")
        await conn.execute(
            users.insert().values(
                oid=user.oid,
                upn_key=name.casefold(),
                upn=name,
                display_name=shown,
                password_hash=password_hash,
                failed_sign_ins=0,
                created_at=user.created_at,
            )
        )
    return user


async def list_users(db: Database) -> list[User]:
    async with db.read() as conn:
        rows = (await conn.execute(select(users).order_by(users.c.created_at, users.c.oid))).all()
    return [_user(r) for r in rows]


async def get_user(db: Database, oid: str) -> User | None:
    async with db.read() as conn:
        row = (await conn.execute(select(users).where(users.c.oid == oid))).first()
    return _user(row) if row else None


async def find_user(db: Database, name_or_oid: str) -> User | None:
    """By object id, or by sign-in name ignoring case."""
    key = name_or_oid.strip()
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(users).where((users.c.oid == key) | (users.c.upn_key == key.casefold()))
            )
        ).first()
    return _user(row) if row else None


async def delete_user(db: Database, oid: str) -> bool:
    """Delete a user, their role assignments and every grant they hold (refresh tokens included)."""
    async with db.write() as conn:
        result = await conn.execute(delete(users).where(users.c.oid == oid))
        if result.rowcount:
            await delete_assignments_of(conn, oid)
            await conn.execute(delete(auth_grants).where(auth_grants.c.user_oid == oid))
    invalidate_cache()
    return bool(result.rowcount)


async def reset_password(db: Database, oid: str, password: str) -> bool:
    """New password, lock cleared, and the user's refresh tokens revoked (sessions must sign in again)."""
    check_password(password)
    password_hash = await asyncio.to_thread(hash_secret, password)
    async with db.write() as conn:
        result = await conn.execute(
            update(users)
            .where(users.c.oid == oid)
            .values(password_hash=password_hash, failed_sign_ins=0, locked_until=None)
        )
        if result.rowcount:
            await conn.execute(delete(auth_grants).where(auth_grants.c.user_oid == oid))
    return bool(result.rowcount)


def lock_duration(failures: int) -> timedelta | None:
    if failures < FREE_FAILURES:
        return None
    lock: timedelta = FIRST_LOCK * 2 ** min(failures - FREE_FAILURES, 10)
    return min(lock, MAX_LOCK)


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


async def authenticate(db: Database, upn: str, password: str) -> User:
    """The user whose name and password these are, or SignInError. Unknown names cost as much as
    wrong passwords."""
    key = upn.strip().casefold()
    async with db.read() as conn:
        row = (await conn.execute(select(users).where(users.c.upn_key == key))).first()
    now = datetime.now(UTC)
    locked_until = _aware(row.locked_until) if row else None
    if row is not None and locked_until is not None and locked_until > now:
        wait = int((locked_until - now).total_seconds()) + 1
        raise SignInError(
            f"This account is locked for {wait} more seconds after too many wrong passwords. Try again later."
        )
    stored = row.password_hash if row else _dummy_hash()
    ok = await asyncio.to_thread(check_secret, password, stored)
    if row is None:
        raise SignInError("Incorrect user name or password.")
    if not ok:
        async with db.write() as conn:
            failures = (
                await conn.execute(select(users.c.failed_sign_ins).where(users.c.oid == row.oid))
            ).scalar_one_or_none() or 0
            failures += 1
            lock = lock_duration(failures)
            await conn.execute(
                update(users)
                .where(users.c.oid == row.oid)
                .values(failed_sign_ins=failures, locked_until=now + lock if lock else None)
            )
        log.info("failed sign-in for user %s (%d in a row)", row.oid, failures)
        raise SignInError("Incorrect user name or password.")
    if row.failed_sign_ins:
        async with db.write() as conn:
            await conn.execute(
                update(users).where(users.c.oid == row.oid).values(failed_sign_ins=0, locked_until=None)
            )
    return _user(row)
