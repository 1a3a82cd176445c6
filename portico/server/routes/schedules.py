"""`.../service/{name}/backupSchedules[/{id}[/runNow]]`: backup schedules as ARM resources.

`PUT` creates or replaces (201/200), `PATCH` merges (RFC 7396), `GET` reads or lists, `DELETE`
removes (200, or 204 when absent), `POST .../runNow` starts a run at once and answers `202` with
the polling headers of its backup operation, like `POST .../backup`. RBAC:
`Microsoft.ApiManagement/service/backupSchedules/read|write|delete`; runNow is a backup
(`Microsoft.ApiManagement/service/backup/action`).
"""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.dr import schedules
from portico.dr.scheduler import get_scheduler
from portico.server.routes.operations import poll_headers


async def backup_schedules(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize_service("Microsoft.ApiManagement/service/backupSchedules/read")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        return json_response(await schedules.list_rendered(conn, svc))


async def backup_schedule(call: Call) -> Response:
    name = call.params["scheduleName"]
    schedules.check_name(name)
    method = call.method
    db = call.rt.db
    if method in ("GET", "HEAD"):
        await call.authorize_service("Microsoft.ApiManagement/service/backupSchedules/read")
        async with db.read() as conn:
            svc = await call.service(conn)
            s = await schedules.get(conn, svc, name)
        if method == "HEAD":
            return empty(200)
        return json_response(schedules.render(svc, s), headers={"ETag": f'"{s.etag}"'})
    if method in ("PUT", "PATCH"):
        await call.authorize_service("Microsoft.ApiManagement/service/backupSchedules/write")
        body = await call.body()
        if_match = call.request.headers.get("if-match")
        scheduler = get_scheduler(call.rt)
        async with db.write() as conn:
            svc = await call.service(conn)
            s, created = await schedules.write(
                conn,
                svc,
                name,
                body,
                if_match=if_match,
                patch=method == "PATCH",
                scheduler=scheduler,
                settings=call.rt.settings,
            )
        scheduler.wake()
        return json_response(
            schedules.render(svc, s), 201 if created else 200, headers={"ETag": f'"{s.etag}"'}
        )
    if method == "DELETE":
        await call.authorize_service("Microsoft.ApiManagement/service/backupSchedules/delete")
        async with db.write() as conn:
            svc = await call.service(conn)
            deleted = await schedules.delete(conn, svc, name)
        return empty(200 if deleted else 204)
    raise method_not_allowed(method)


async def backup_schedule_action(call: Call) -> Response:
    name, action = call.params["scheduleName"], call.params["action"]
    schedules.check_name(name)
    if action.lower() != "runnow":
        raise ArmError(
            404, "ResourceNotFound", f"No resource type matches '{f'backupSchedules/{name}/{action}'[:200]}'."
        )
    if call.method != "POST":
        raise ArmError(405, "MethodNotAllowed", "Use POST to run a schedule now.")
    await call.authorize_service("Microsoft.ApiManagement/service/backup/action")
    scheduler = get_scheduler(call.rt)
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    op = await schedules.run_now(call.rt.db, scheduler, svc, name)
    return empty(202, poll_headers(call, svc.arm_id, op.id))
