"""The cloud metadata document (`GET /metadata/endpoints`), answered without a token as ARM does."""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.http import json_response
from portico.resources.tenancy import cloud_metadata


async def metadata_endpoints(call: Call) -> Response:
    if call.method not in ("GET", "HEAD"):
        raise method_not_allowed(call.method)
    return json_response(cloud_metadata(call.rt.settings))
