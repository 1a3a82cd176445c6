"""Backup schedules of a service as ARM resources (Portico extension, docs/runbook.md).

The HTTP side is `portico/server/routes/schedules.py`. Secrets (`accessKey`, `encryptionKey`) are
sealed with the server's key and never returned.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError
from portico.dr import schedules_store as Q
from portico.dr.scheduler import RunRefused, Scheduler
from portico.dr.schedules_model import SCHEDULE_NAME, next_run, parse_spec
from portico.jobs import store as J
from portico.secrets_box import SecretBoxError
from portico.settings import Settings
from portico.store import services as S
from portico.store.db import Database

TYPE = "Microsoft.ApiManagement/service/backupSchedules"


def render(svc: S.Service, s: Q.Schedule) -> dict[str, Any]:
    props = s.spec.public()
    props.update(
        hasAccessKey=s.spec.access_type == "AccessKey" and s.has_secret,
        nextRun=Q.iso(s.next_run_at) if s.spec.enabled else None,
        lastRun=s.last_run,
        runs=s.history,
        running=(s.running if s.running and not s.running.startswith("pending:") else None),
        provisioningState="Succeeded",
        createdTime=Q.iso(s.created_at),
        updatedTime=Q.iso(s.updated_at),
    )
    return {"id": f"{svc.arm_id}/backupSchedules/{s.name}", "name": s.name, "type": TYPE, "properties": props}


def check_name(sched_name: str) -> None:
    if not SCHEDULE_NAME.match(sched_name):
        raise ArmError(
            400,
            "ValidationError",
            f"Schedule name '{sched_name[:100]}' is invalid: 1-80 letters, digits, '-' and '_', starting and ending with a letter or digit.",
            target="name",
        )


def missing(sched: str, service: str) -> ArmError:
    return ArmError(
        404, "ResourceNotFound", f"Backup schedule '{sched}' was not found in service '{service}'."
    )


async def list_rendered(conn: AsyncConnection, svc: S.Service) -> dict[str, Any]:
    items = await Q.list_for_service(conn, svc)
    return {"value": [render(svc, s) for s in items], "count": len(items)}


async def get(conn: AsyncConnection, svc: S.Service, sched_name: str) -> Q.Schedule:
    s = await Q.get(conn, svc, sched_name)
    if s is None:
        raise missing(sched_name, svc.name)
    return s


async def write(
    conn: AsyncConnection,
    svc: S.Service,
    sched_name: str,
    body: Any,
    *,
    if_match: str | None,
    patch: bool,
    scheduler: Scheduler,
    settings: Settings,
) -> tuple[Q.Schedule, bool]:
    """Create or replace (`patch`: merge into) a schedule; the schedule and whether it was created."""
    existing = await Q.get(conn, svc, sched_name, lock=True)
    if if_match is not None and if_match.strip() != "*":
        if existing is None or if_match.strip().strip('"') != existing.etag:
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The If-Match ETag does not match the current state of schedule '{sched_name}': "
                "it was changed by someone else; GET it again.",
            )
    if patch:
        if existing is None:
            raise missing(sched_name, svc.name)
        body = _merged(existing.spec.public(), body)
    await _store(conn, svc, sched_name, body, existing, scheduler, settings)
    s = await Q.get(conn, svc, sched_name)
    assert s is not None
    return s, existing is None


async def delete(conn: AsyncConnection, svc: S.Service, sched_name: str) -> bool:
    return await Q.delete_schedule(conn, svc, sched_name)


async def run_now(db: Database, scheduler: Scheduler, svc: S.Service, sched_name: str) -> J.Operation:
    """Start a run of the schedule at once: its backup operation."""
    async with db.read() as conn:
        s = await get(conn, svc, sched_name)
    try:
        return await scheduler.start_run(s, "RunNow", None)
    except RunRefused as exc:
        code = "ScheduleRunInProgress" if exc.code == "PreviousRunInProgress" else exc.code
        raise ArmError(exc.http_status, code, exc.message) from None


def _merged(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A PATCH body applied to the stored properties as a JSON merge patch (RFC 7396): objects
    merge, `null` removes, anything else replaces; the result is validated as a PUT body is."""
    if not isinstance(patch, dict) or not isinstance(patch.get("properties"), dict):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request body must be a JSON object with 'properties' holding the properties to change.",
        )

    def merge(target: Any, change: Any) -> Any:
        if not isinstance(change, dict):
            return change
        out = dict(target) if isinstance(target, dict) else {}
        for k, v in change.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(out.get(k), v)
        return out

    return {"properties": merge(current, patch["properties"])}


async def _store(
    conn: AsyncConnection,
    svc: S.Service,
    sched_name: str,
    body: Any,
    existing: Q.Schedule | None,
    scheduler: Scheduler,
    settings: Settings,
) -> None:
    """Validate a schedule's full body and write it, keeping the sealed keys a new body may omit."""
    spec = parse_spec(
        body,
        settings,
        existing.spec if existing else None,
        existing.has_secret if existing else False,
    )
    secrets: dict[str, str] = {}
    if existing is not None and existing.has_secret:
        old = _unseal_for_update(scheduler, existing)
        if spec.access_type == "AccessKey" and existing.spec.storage_account == spec.storage_account:
            secrets["accessKey"] = old.get("accessKey", "")
        if spec.encrypted:
            secrets["encryptionKey"] = old.get("encryptionKey", "")
    if spec.access_key:
        secrets["accessKey"] = spec.access_key
    if spec.encryption_key:
        secrets["encryptionKey"] = spec.encryption_key
    if spec.access_type != "AccessKey":
        secrets.pop("accessKey", None)
    sealed = Q.seal(scheduler.box, svc.id, sched_name, secrets)
    timing_same = (
        existing is not None
        and existing.spec.enabled
        and spec.enabled
        and (existing.spec.cron, existing.spec.time_zone) == (spec.cron, spec.time_zone)
        and existing.next_run_at is not None
    )
    if not spec.enabled:
        nxt = None
    elif timing_same:
        assert existing is not None
        nxt = existing.next_run_at
    else:
        nxt = next_run(spec.cron, spec.time_zone, scheduler.now())
    stored_name = existing.name if existing else sched_name
    await Q.put(conn, svc, stored_name, spec, sealed, nxt, existing)


def _unseal_for_update(scheduler: Scheduler, s: Q.Schedule) -> dict[str, str]:
    try:
        return Q.unseal(scheduler.box, s)
    except SecretBoxError:
        return {}  # unreadable here: the body must then carry the key again (validated above)
