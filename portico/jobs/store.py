"""Durable operation records (the `operations` table). Never holds a storage key or secret."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.store.schema import operations

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


@dataclass(frozen=True)
class Operation:
    id: str
    kind: str
    service_id: int
    service_path: str
    status: str
    phase: str
    percent: float
    counters: dict[str, int]
    params: dict[str, Any]
    error_code: str | None
    error_message: str | None
    started_at: datetime
    ended_at: datetime | None
    lease_owner: str | None
    lease_expires: datetime | None
    staging_store_id: int | None
    bytes: int


def _op(r: Any) -> Operation:
    return Operation(
        id=r.id,
        kind=r.kind,
        service_id=r.service_id,
        service_path=r.service_path,
        status=r.status,
        phase=r.phase,
        percent=r.percent,
        counters=r.counters or {},
        params=r.params or {},
        error_code=r.error_code,
        error_message=r.error_message,
        started_at=_aware(r.started_at) or utcnow(),
        ended_at=_aware(r.ended_at),
        lease_owner=r.lease_owner,
        lease_expires=_aware(r.lease_expires),
        staging_store_id=r.staging_store_id,
        bytes=r.bytes or 0,
    )


def new_id() -> str:
    return uuid.uuid4().hex


async def create(
    conn: AsyncConnection,
    *,
    op_id: str,
    kind: str,
    service_id: int,
    service_path: str,
    params: dict[str, Any],
    owner: str,
    lease: float,
) -> Operation:
    now = utcnow()
    await conn.execute(
        insert(operations).values(
            id=op_id,
            kind=kind,
            service_id=service_id,
            service_path=service_path,
            status=IN_PROGRESS,
            phase="Queued",
            percent=0.0,
            counters={},
            params=params,
            started_at=now,
            lease_owner=owner,
            lease_expires=now + timedelta(seconds=lease),
            bytes=0,
        )
    )
    got = await get(conn, op_id)
    assert got is not None
    return got


async def get(conn: AsyncConnection, op_id: str) -> Operation | None:
    r = (await conn.execute(select(operations).where(operations.c.id == op_id))).first()
    return _op(r) if r else None


async def progress(conn: AsyncConnection, op_id: str, owner: str, **values: Any) -> bool:
    """Update progress fields while this node still holds the lease; False when it lost it."""
    c = operations.c
    res = await conn.execute(
        update(operations)
        .where(c.id == op_id, c.lease_owner == owner, c.status == IN_PROGRESS)
        .values(**values)
    )
    return bool(res.rowcount)


async def finish(
    conn: AsyncConnection,
    op_id: str,
    owner: str | None,
    status: str,
    *,
    code: str | None = None,
    message: str | None = None,
    **values: Any,
) -> bool:
    c = operations.c
    q = update(operations).where(c.id == op_id, c.status == IN_PROGRESS)
    if owner is not None:
        q = q.where(c.lease_owner == owner)
    res = await conn.execute(
        q.values(
            status=status,
            error_code=code,
            error_message=message,
            ended_at=utcnow(),
            lease_owner=None,
            lease_expires=None,
            **values,
        )
    )
    return bool(res.rowcount)


async def renew(conn: AsyncConnection, owner: str, lease: float) -> None:
    c = operations.c
    await conn.execute(
        update(operations)
        .where(c.lease_owner == owner, c.status == IN_PROGRESS)
        .values(lease_expires=utcnow() + timedelta(seconds=lease))
    )


async def orphans(conn: AsyncConnection, owner: str, running: set[str], *, at_start: bool) -> list[Operation]:
    """In-progress operations whose runner is gone: their lease expired, or (`at_start`, when this
    process runs nothing yet) they were claimed by this node's previous life, i.e. it restarted.

    Outside start-up, an operation of this node that is not (yet) in `running` is NOT an orphan:
    it may have been committed a moment before its task was registered."""
    c = operations.c
    now = utcnow()
    rows = (await conn.execute(select(operations).where(c.status == IN_PROGRESS))).all()
    out = []
    for r in rows:
        op = _op(r)
        if op.id in running:
            continue
        if (at_start and op.lease_owner == owner) or op.lease_expires is None or op.lease_expires < now:
            out.append(op)
    return out


async def claim(conn: AsyncConnection, op: Operation, owner: str, lease: float) -> bool:
    c = operations.c
    q = update(operations).where(c.id == op.id, c.status == IN_PROGRESS)
    q = (
        q.where(c.lease_owner == op.lease_owner)
        if op.lease_owner is not None
        else q.where(c.lease_owner.is_(None))
    )
    res = await conn.execute(q.values(lease_owner=owner, lease_expires=utcnow() + timedelta(seconds=lease)))
    return bool(res.rowcount)
