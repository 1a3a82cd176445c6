"""Durable operation records (the `operations` table). Never holds a storage key or secret."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.store.schema import operations, services

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"


class Phase(StrEnum):
    """What an operation is doing (`operations.phase`, shown as `properties.phase` of its status).

    Every operation starts `Queued` and ends `Completed` (Succeeded) or `Failed`. A backup goes
    CheckingStorage → Writing; a restore Validating → Loading → [KeepingTargetEntities] → Switching.
    """

    QUEUED = "Queued"
    CHECKING_STORAGE = "CheckingStorage"
    WRITING = "Writing"
    VALIDATING = "Validating"
    LOADING = "Loading"
    KEEPING_TARGET_ENTITIES = "KeepingTargetEntities"
    SWITCHING = "Switching"
    COMPLETED = "Completed"
    FAILED = "Failed"


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
            phase=Phase.QUEUED,
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


async def link_staging(conn: AsyncConnection, op_id: str, store_id: int) -> None:
    """Record the staging store an operation loads, so that recovery can retire it."""
    await conn.execute(update(operations).where(operations.c.id == op_id).values(staging_store_id=store_id))


async def lease_holder(conn: AsyncConnection, op_id: str) -> str | None:
    """The node holding an in-progress operation's lease, locking the record until the transaction
    ends (None when the operation has ended)."""
    c = operations.c
    q = select(c.lease_owner).where(c.id == op_id, c.status == IN_PROGRESS).with_for_update()
    owner: str | None = (await conn.execute(q)).scalar_one_or_none()
    return owner


async def latest(
    conn: AsyncConnection, service_id: int, since: datetime, kind: str, status: str
) -> Operation | None:
    """The newest operation of `kind` with `status` of a service: by end time, or by start time
    while in progress. `since` is the service's creation: SQLite may reuse a deleted service's id."""
    c = operations.c
    q = (
        select(operations)
        .where(c.service_id == service_id, c.started_at >= since, c.kind == kind, c.status == status)
        .order_by((c.ended_at if status != IN_PROGRESS else c.started_at).desc())
        .limit(1)
    )
    r = (await conn.execute(q)).first()
    return _op(r) if r else None


async def last_ended_by_service(
    conn: AsyncConnection, kind: str, status: str
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """Per live service: (newest end, newest start) of its `kind` operations with `status`.
    Joined to the service and started after its creation (SQLite may reuse a deleted one's id)."""
    c = operations.c
    q = (
        select(c.service_id, func.max(c.ended_at).label("ended"), func.max(c.started_at).label("started"))
        .join(services, (services.c.id == c.service_id) & (c.started_at >= services.c.created_at))
        .where(c.kind == kind, c.status == status)
        .group_by(c.service_id)
    )
    return {r.service_id: (_aware(r.ended), _aware(r.started)) for r in (await conn.execute(q)).all()}


@dataclass(frozen=True)
class Durations:
    """Finished operations of one kind and status: count, total seconds, and how many took at
    most each bound of `bounds` (cumulative, as a Prometheus histogram counts)."""

    kind: str
    status: str
    count: int
    total_seconds: float
    at_most: tuple[int, ...]


async def durations(conn: AsyncConnection, bounds: Sequence[float]) -> list[Durations]:
    if conn.dialect.name == "postgresql":
        dur = "EXTRACT(EPOCH FROM (ended_at - started_at))"
    else:
        dur = "((julianday(ended_at) - julianday(started_at)) * 86400.0)"
    buckets = ", ".join(
        f"SUM(CASE WHEN d <= {float(le)!r} THEN 1 ELSE 0 END) AS b{i}" for i, le in enumerate(bounds)
    )
    rows = (
        await conn.execute(
            text(
                f"SELECT kind, status, COUNT(*) AS n, SUM(d) AS total, {buckets} FROM "
                f"(SELECT kind, status, {dur} AS d FROM operations WHERE status <> :running "
                "AND ended_at IS NOT NULL) AS finished GROUP BY kind, status ORDER BY kind, status"
            ),
            {"running": IN_PROGRESS},
        )
    ).all()
    out = []
    for r in rows:
        m: Any = r._mapping
        out.append(
            Durations(
                kind=str(r.kind),
                status=str(r.status),
                count=int(r.n),
                total_seconds=float(r.total or 0.0),
                at_most=tuple(int(m[f"b{i}"] or 0) for i in range(len(bounds))),
            )
        )
    return out


async def running_by_kind(conn: AsyncConnection) -> dict[str, int]:
    c = operations.c
    q = (
        select(c.kind, func.count().label("n"))
        .where(c.status == IN_PROGRESS)
        .group_by(c.kind)
        .order_by(c.kind)
    )
    return {str(r.kind): int(r.n) for r in (await conn.execute(q)).all()}
