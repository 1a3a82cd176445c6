"""The polling URLs of long-running operations: `operationResults` (the `Location` header) and
`operationStatuses` (the `Azure-AsyncOperation` header).

Every answer about an operation still in progress carries `Retry-After`, on both URLs: without it
clients fall back to long default intervals (the Azure CLI waits 30 s).
"""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.jobs import api as ops
from portico.jobs import store as J
from portico.resources.service import render_service
from portico.store import services as S

RETRY_AFTER_SECONDS = 1


def poll_headers(call: Call, service_path: str, op_id: str) -> dict[str, str]:
    """The headers of an accepted (202) long-running request: where and when to poll."""
    base = call.base_url() + service_path
    v = call.api_version
    return {
        "Location": f"{base}/operationresults/{op_id}?api-version={v}",
        "Azure-AsyncOperation": f"{base}/operationstatuses/{op_id}?api-version={v}",
        "Retry-After": str(RETRY_AFTER_SECONDS),
    }


async def _operation(call: Call) -> tuple[J.Operation, S.Service | None]:
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", "Use GET to read an operation.")
    await call.authorize_service("Microsoft.ApiManagement/service/operationresults/read")
    async with call.rt.db.read() as conn:
        return await ops.find(conn, call.params["operationId"], call.service_scope)


async def operation_result(call: Call) -> Response:
    op, svc = await _operation(call)
    if op.status == J.IN_PROGRESS:
        return empty(202, poll_headers(call, call.service_scope, op.id))
    if op.status == J.FAILED:
        # 4xx, never 5xx: azure-core retries 5xx, and the failure is final.
        return json_response({"error": {**ops.error_of(op), "details": []}}, 400)
    if svc is None:
        return empty(204)
    return json_response(render_service(svc, call.rt.settings.gateway_domain))


async def operation_status(call: Call) -> Response:
    op, _ = await _operation(call)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if op.status == J.IN_PROGRESS else None
    return json_response(ops.render_status(op), headers=headers)
