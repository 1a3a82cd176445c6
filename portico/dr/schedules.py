"""`.../service/{name}/backupSchedules[/{id}[/runNow]]`: backup schedules as ARM resources.

Portico extension (docs/runbook.md). `PUT` creates or replaces (201/200), `GET` reads or lists,
`DELETE` removes (200, or 204 when absent), `POST .../runNow` starts a run at once and answers
`202` with `Location`/`Azure-AsyncOperation` of its backup operation, like `POST .../backup`.
RBAC: `Microsoft.ApiManagement/service/backupSchedules/read|write|delete`; runNow is a backup
(`Microsoft.ApiManagement/service/backup/action`). Secrets (`accessKey`, `encryptionKey`) are
sealed with the server's key and never returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Response

from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.dr import schedules_store as Q
from portico.dr.schedules_model import SCHEDULE_NAME, next_run, parse_spec
from portico.store import services as S

if TYPE_CHECKING:
    from portico.arm.call import Call

TYPE = "Microsoft.ApiManagement/service/backupSchedules"


def _scope(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"


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


async def handle(call: Call, sub: str, rg: str, name: str, rest: list[str]) -> Response:
    """`rest` is what follows the service: ["backupSchedules", id?, "runNow"?]."""
    from portico.dr.scheduler import get_scheduler

    scope = _scope(sub, rg, name)
    db = call.rt.db
    method = call.method
    if len(rest) == 1:
        if method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"The {method} method is not allowed on this resource.")
        await call.authorize("Microsoft.ApiManagement/service/backupSchedules/read", scope)
        async with db.read() as conn:
            svc = await _service(conn, sub, rg, name)
            items = await Q.list_for_service(conn, svc)
        return json_response({"value": [render(svc, s) for s in items], "count": len(items)})
    sched_name = rest[1]
    if not SCHEDULE_NAME.match(sched_name):
        raise ArmError(
            400,
            "ValidationError",
            f"Schedule name '{sched_name[:100]}' is invalid: 1-80 letters, digits, '-' and '_', starting and ending with a letter or digit.",
            target="name",
        )
    if len(rest) == 3 and rest[2].lower() == "runnow":
        if method != "POST":
            raise ArmError(405, "MethodNotAllowed", "Use POST to run a schedule now.")
        await call.authorize("Microsoft.ApiManagement/service/backup/action", scope)
        return await _run_now(call, sub, rg, name, sched_name)
    if len(rest) != 2:
        raise ArmError(404, "ResourceNotFound", f"No resource type matches '{'/'.join(rest)[:200]}'.")

    if method in ("GET", "HEAD"):
        await call.authorize("Microsoft.ApiManagement/service/backupSchedules/read", scope)
        async with db.read() as conn:
            svc = await _service(conn, sub, rg, name)
            s = await Q.get(conn, svc, sched_name)
        if s is None:
            raise _missing(sched_name, name)
        return (
            empty(200) if method == "HEAD" else json_response(render(svc, s), headers={"ETag": f'"{s.etag}"'})
        )
    if method in ("PUT", "PATCH"):
        await call.authorize("Microsoft.ApiManagement/service/backupSchedules/write", scope)
        body = await call.body()
        if_match = call.request.headers.get("if-match")
        scheduler = get_scheduler(call.rt)
        async with db.write() as conn:
            svc = await _service(conn, sub, rg, name)
            existing = await Q.get(conn, svc, sched_name, lock=True)
            if if_match is not None and if_match.strip() != "*":
                if existing is None or if_match.strip().strip('"') != existing.etag:
                    raise ArmError(
                        412,
                        "PreconditionFailed",
                        f"The If-Match ETag does not match the current state of schedule '{sched_name}': "
                        "it was changed by someone else; GET it again.",
                    )
            if method == "PATCH":
                if existing is None:
                    raise _missing(sched_name, name)
                body = _merged(existing.spec.public(), body)
            await _store(conn, svc, sched_name, body, existing, scheduler, call.rt.settings)
            s = await Q.get(conn, svc, sched_name)
        assert s is not None
        scheduler.wake()
        return json_response(render(svc, s), 200 if existing else 201, headers={"ETag": f'"{s.etag}"'})
    if method == "DELETE":
        await call.authorize("Microsoft.ApiManagement/service/backupSchedules/delete", scope)
        async with db.write() as conn:
            svc = await _service(conn, sub, rg, name)
            deleted = await Q.delete_schedule(conn, svc, sched_name)
        return empty(200 if deleted else 204)
    raise ArmError(405, "MethodNotAllowed", f"The {method} method is not allowed on this resource.")


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
    conn: Any,
    svc: S.Service,
    sched_name: str,
    body: Any,
    existing: Q.Schedule | None,
    scheduler: Any,
    settings: Any,
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


def _unseal_for_update(scheduler: Any, s: Q.Schedule) -> dict[str, str]:
    from portico.secrets_box import SecretBoxError

    try:
        return Q.unseal(scheduler.box, s)
    except SecretBoxError:
        return {}  # unreadable here: the body must then carry the key again (validated above)


async def _run_now(call: Call, sub: str, rg: str, name: str, sched_name: str) -> Response:
    from portico.dr.scheduler import RunRefused, get_scheduler
    from portico.jobs.api import _links

    scheduler = get_scheduler(call.rt)
    async with call.rt.db.read() as conn:
        svc = await _service(conn, sub, rg, name)
        s = await Q.get(conn, svc, sched_name)
    if s is None:
        raise _missing(sched_name, name)
    try:
        op = await scheduler.start_run(s, "RunNow", None)
    except RunRefused as exc:
        code = "ScheduleRunInProgress" if exc.code == "PreviousRunInProgress" else exc.code
        raise ArmError(exc.http_status, code, exc.message) from None
    return empty(202, _links(call, svc.arm_id, op.id))


async def _service(conn: Any, sub: str, rg: str, name: str) -> S.Service:
    svc = await S.get_service(conn, sub, rg, name)
    if svc is None:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.ApiManagement/service/{name}' under resource group '{rg}' was not found.",
        )
    return svc


def _missing(sched: str, service: str) -> ArmError:
    return ArmError(
        404, "ResourceNotFound", f"Backup schedule '{sched}' was not found in service '{service}'."
    )
