"""`.../service/{name}/quotas/{quotaCounterKey}` (Azure's quotaByCounterKeys: list, update) and
`.../quotas/{quotaCounterKey}/periods/{quotaPeriodKey}` (quotaByPeriodKeys: get, update)."""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.http import json_response
from portico.resources import quota_counters as QC


async def quota_counters(call: Call) -> Response:
    key = call.params["quotaCounterKey"]
    period = call.params.get("quotaPeriodKey")
    noun = "quotas" if period is None else "quotas/periods"
    if call.method == "GET":
        await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/read")
        async with call.rt.db.read() as conn:
            found = await QC.read(conn, await call.service(conn), key, period)
    elif call.method == "PATCH":
        await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/write")
        values = QC.parse_update(await call.body())
        async with call.rt.db.write() as conn:
            # the share lock orders this with a restore's switch, which moves the counters
            found = await QC.update(conn, await call.service(conn, lock=True), key, period, values)
    else:
        raise method_not_allowed(call.method)
    return json_response(QC.render(found[0]) if period is not None else QC.collection(found))
