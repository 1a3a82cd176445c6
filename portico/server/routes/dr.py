"""Disaster recovery on a service: backup/restore, the backup catalog, schedules, recovery status,
and the long-running operations they start."""

from __future__ import annotations

from starlette.responses import Response

from portico.analytics import reports
from portico.arm.call import Call
from portico.dr import catalog, schedules, status
from portico.jobs import api as jobs_api


async def backup(call: Call) -> Response:
    return await jobs_api.start_backup_restore(
        call, call.subscription_id, call.group_name, call.service_name, "backup"
    )


async def restore(call: Call) -> Response:
    return await jobs_api.start_backup_restore(
        call, call.subscription_id, call.group_name, call.service_name, "restore"
    )


async def catalog_action(call: Call) -> Response:
    return await catalog.handle(
        call, call.subscription_id, call.group_name, call.service_name, call.segments[-1].lower()
    )


async def backup_schedules(call: Call) -> Response:
    rest = ["backupSchedules"]
    rest += [call.params[k] for k in ("scheduleName", "action") if k in call.params]
    return await schedules.handle(call, call.subscription_id, call.group_name, call.service_name, rest)


async def backup_status(call: Call) -> Response:
    return await status.handle_status(call, call.subscription_id, call.group_name, call.service_name)


async def operation_result(call: Call) -> Response:
    return await jobs_api.operation_result(
        call,
        call.subscription_id,
        call.group_name,
        call.service_name,
        call.params["operationId"],
        status_resource=False,
    )


async def operation_status(call: Call) -> Response:
    return await jobs_api.operation_result(
        call,
        call.subscription_id,
        call.group_name,
        call.service_name,
        call.params["operationId"],
        status_resource=True,
    )


async def report(call: Call) -> Response:
    return await reports.handle(
        call, call.subscription_id, call.group_name, call.service_name, call.params["aggregation"]
    )
