"""SQL of the `backup_schedules` table (see portico/store/schema.py), and run records.

A run record (the schedule's `lastRun`, and its recent `runs`, newest first):
``{"runId", "trigger": Schedule|Missed|RunNow, "time", "scheduledTime", "status":
InProgress|Succeeded|Failed|Skipped, "operationId", "backupName", "endTime", "error": {code,
message}, "retention": {"deleted", "expired", "kept"}}``. It never holds a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.dr.schedules_model import HISTORY_LENGTH, ScheduleSpec
from portico.secrets_box import SecretBox
from portico.store import services as S
from portico.store.entities import new_etag
from portico.store.schema import backup_schedules, services

T = backup_schedules.c


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Schedule:
    id: int
    service_id: int
    service_created_at: datetime
    name: str
    spec: ScheduleSpec
    has_secret: bool
    sealed_secret: bytes | None
    etag: str
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None
    running: str | None
    last_run: dict[str, Any] | None
    history: list[dict[str, Any]]

    @property
    def name_key(self) -> str:
        return self.name.lower()


def _schedule(r: Any) -> Schedule:
    return Schedule(
        id=r.id,
        service_id=r.service_id,
        service_created_at=aware(r.service_created_at),  # type: ignore[arg-type]
        name=r.name,
        spec=ScheduleSpec.from_public(r.properties or {}),
        has_secret=r.sealed_secret is not None,
        sealed_secret=r.sealed_secret,
        etag=r.etag,
        created_at=aware(r.created_at),  # type: ignore[arg-type]
        updated_at=aware(r.updated_at),  # type: ignore[arg-type]
        next_run_at=aware(r.next_run_at),
        running=r.running,
        last_run=r.last_run,
        history=list(r.history or []),
    )


# --- secrets ------------------------------------------------------------------------------------------
def _aad(service_id: int, name: str) -> bytes:
    return f"backupSchedule:{service_id}:{name.lower()}".encode()


def seal(box: SecretBox, service_id: int, name: str, secrets: dict[str, str]) -> bytes | None:
    clean = {k: v for k, v in secrets.items() if v}
    if not clean:
        return None
    return box.seal(orjson.dumps(clean), _aad(service_id, name))


def unseal(box: SecretBox, schedule: Schedule) -> dict[str, str]:
    """The schedule's secrets (raises `SecretBoxError` when this node's key cannot open them)."""
    if schedule.sealed_secret is None:
        return {}
    return dict(orjson.loads(box.open(schedule.sealed_secret, _aad(schedule.service_id, schedule.name))))


# --- CRUD -------------------------------------------------------------------------------------------------
def _of(svc: S.Service) -> Any:
    return (T.service_id == svc.id) & (T.service_created_at == svc.created_at)


def belongs(schedule: Schedule, svc: S.Service | None) -> bool:
    return svc is not None and svc.id == schedule.service_id and svc.created_at == schedule.service_created_at


async def get(conn: AsyncConnection, svc: S.Service, name: str, *, lock: bool = False) -> Schedule | None:
    q = select(backup_schedules).where(_of(svc), T.name_key == name.lower())
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    return _schedule(r) if r else None


async def get_by_id(conn: AsyncConnection, schedule_id: int, *, lock: bool = False) -> Schedule | None:
    q = select(backup_schedules).where(T.id == schedule_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    r = (await conn.execute(q)).first()
    return _schedule(r) if r else None


async def list_for_service(conn: AsyncConnection, svc: S.Service) -> list[Schedule]:
    rows = (await conn.execute(select(backup_schedules).where(_of(svc)).order_by(T.name_key))).all()
    return [_schedule(r) for r in rows]


async def list_all(conn: AsyncConnection) -> list[Schedule]:
    rows = (await conn.execute(select(backup_schedules).order_by(T.service_id, T.name_key))).all()
    return [_schedule(r) for r in rows]


async def put(
    conn: AsyncConnection,
    svc: S.Service,
    name: str,
    spec: ScheduleSpec,
    sealed: bytes | None,
    next_run_at: datetime | None,
    existing: Schedule | None,
) -> None:
    now = utcnow()
    values = dict(
        name=name,
        properties=spec.public(),
        sealed_secret=sealed,
        etag=new_etag(),
        updated_at=now,
        next_run_at=next_run_at,
    )
    if existing is None:
        await conn.execute(
            insert(backup_schedules).values(
                service_id=svc.id,
                service_created_at=svc.created_at,
                name_key=name.lower(),
                created_at=now,
                running=None,
                last_run=None,
                history=[],
                **values,
            )
        )
    else:
        await conn.execute(update(backup_schedules).where(T.id == existing.id).values(**values))


async def delete_schedule(conn: AsyncConnection, svc: S.Service, name: str) -> bool:
    res = await conn.execute(delete(backup_schedules).where(_of(svc), T.name_key == name.lower()))
    return bool(res.rowcount)


def orphaned() -> Any:
    """Schedules of services that no longer exist (same id and creation time)."""
    sc = services.c
    return ~exists().where(sc.id == T.service_id, sc.created_at == T.service_created_at)


async def next_runs_by_service(conn: AsyncConnection) -> dict[int, datetime]:
    """The soonest next run of each service's enabled schedules."""
    b = backup_schedules.c
    rows = (await conn.execute(select(b.service_id, b.next_run_at, b.properties).where(~orphaned()))).all()
    out: dict[int, datetime] = {}
    for r in rows:
        t = aware(r.next_run_at)
        if t is None or not (r.properties or {}).get("enabled", True):
            continue
        if r.service_id not in out or t < out[r.service_id]:
            out[r.service_id] = t
    return out


async def has_orphans(conn: AsyncConnection) -> bool:
    """Whether any schedule belongs to a deleted service."""
    return (await conn.execute(select(backup_schedules.c.id).where(orphaned()).limit(1))).first() is not None


async def remove_orphans(conn: AsyncConnection) -> int:
    res = await conn.execute(delete(backup_schedules).where(orphaned()))
    return int(res.rowcount or 0)


# --- the scheduler's statements -----------------------------------------------------------------------------
async def due(conn: AsyncConnection, now: datetime) -> list[Schedule]:
    rows = (
        await conn.execute(
            select(backup_schedules)
            .where(T.next_run_at.is_not(None), T.next_run_at <= now.astimezone(UTC))
            .order_by(T.next_run_at)
        )
    ).all()
    return [_schedule(r) for r in rows if (r.properties or {}).get("enabled", True)]


async def with_running(conn: AsyncConnection) -> list[Schedule]:
    rows = (await conn.execute(select(backup_schedules).where(T.running.is_not(None)))).all()
    return [_schedule(r) for r in rows]


async def claim(conn: AsyncConnection, schedule_id: int, seen: datetime, new_next: datetime | None) -> bool:
    """Move `next_run_at` from the value this node read: exactly one node succeeds per due time."""
    res = await conn.execute(
        update(backup_schedules)
        .where(T.id == schedule_id, T.next_run_at == seen)
        .values(next_run_at=new_next)
    )
    return bool(res.rowcount)


async def set_running(conn: AsyncConnection, schedule_id: int, expect: str | None, value: str | None) -> bool:
    cond = T.running.is_(None) if expect is None else T.running == expect
    res = await conn.execute(update(backup_schedules).where(T.id == schedule_id, cond).values(running=value))
    return bool(res.rowcount)


def new_run(trigger: str, time: datetime, scheduled: datetime | None) -> dict[str, Any]:
    return {
        "runId": uuid.uuid4().hex,
        "trigger": trigger,
        "time": iso(time),
        "scheduledTime": iso(scheduled),
        "status": "InProgress",
        "operationId": None,
        "backupName": None,
        "endTime": None,
        "error": None,
        "retention": None,
    }


async def record_run(conn: AsyncConnection, schedule_id: int, run: dict[str, Any]) -> None:
    """Add a run as the schedule's latest (its recent history keeps `HISTORY_LENGTH`)."""
    s = await get_by_id(conn, schedule_id, lock=True)
    if s is None:
        return
    history = [run, *[h for h in s.history if h.get("runId") != run["runId"]]][:HISTORY_LENGTH]
    await conn.execute(
        update(backup_schedules).where(T.id == schedule_id).values(last_run=run, history=history)
    )


async def update_run(
    conn: AsyncConnection, schedule_id: int, run_id: str, change: Callable[[dict[str, Any]], None]
) -> dict[str, Any] | None:
    """Apply `change` to the run `run_id` (in the history and, if it is the latest, `lastRun`)."""
    s = await get_by_id(conn, schedule_id, lock=True)
    if s is None:
        return None
    found: dict[str, Any] | None = None
    history = []
    for h in s.history:
        h = dict(h)
        if h.get("runId") == run_id:
            change(h)
            found = h
        history.append(h)
    if found is None:
        return None
    last = found if (s.last_run or {}).get("runId") == run_id else s.last_run
    await conn.execute(
        update(backup_schedules).where(T.id == schedule_id).values(last_run=last, history=history)
    )
    return found


def run_for_operation(schedule: Schedule, op_id: str) -> dict[str, Any] | None:
    return next((h for h in schedule.history if h.get("operationId") == op_id), None)
