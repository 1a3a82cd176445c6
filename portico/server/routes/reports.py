"""`GET .../service/{name}/reports/{aggregation}`: usage reports, shaped like Azure's
`ReportCollection` (`{value, count, nextLink}`)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portico.analytics import reports
from portico.arm.call import Call
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.arm.paging import next_link


async def report(call: Call) -> Response:
    await call.authorize_service("Microsoft.ApiManagement/service/reports/read")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    key = reports.check_report(call.params["aggregation"])
    if call.method != "GET":
        raise ArmError(405, "MethodNotAllowed", f"The {call.method} method is not allowed on reports.")
    params = call.query()
    got = await reports.run(call.rt.db, svc, key, params)
    out: dict[str, Any] = {"value": got.items, "count": got.total}
    link = next_link(call.url(), params, got.page, len(got.items), got.more)
    if link:
        out["nextLink"] = link
    return json_response(out)
