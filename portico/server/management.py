"""The management REST API: every request goes through the route table (`routes/`).

Order of checks, as ARM's: the route (ARM paths are case-insensitive), the api-version the route's
family speaks, the bearer token; then the handler authorises its action at its scope.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from portico.arm.call import Call, check_subscription, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.versions import APIM, check_api_version
from portico.runtime import Runtime
from portico.server.routes import ROUTES
from portico.server.routes.entities import no_route

METHODS = ["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD"]


def build_management_route(rt: Runtime) -> StarletteRoute:
    """One catch-all Starlette route (mounted after every other route of the app)."""

    async def management(request: Request) -> Response:
        segments = [s for s in request.path_params["rest"].split("/") if s != ""]
        found = ROUTES.match(segments)
        version = request.query_params.get("api-version")
        if found is None:
            if not segments or segments[0].lower() != "subscriptions":
                raise ArmError(404, "ResourceNotFound", "No resource type matches this path.")
            api_version = check_api_version(version, versions=APIM)
            principal = await rt.validator.validate(request.headers.get("authorization"))
            call = Call(rt, request, api_version, principal, segments)
            check_subscription(rt.settings, segments[1] if len(segments) > 1 else "")
            raise no_route(call)
        route, params = found
        api_version = check_api_version(version, versions=route.versions)
        caller = (
            await rt.validator.validate(request.headers.get("authorization")) if route.authenticated else None
        )
        call = Call(rt, request, api_version, caller, segments, params)
        if "subscriptionId" in params:
            check_subscription(rt.settings, params["subscriptionId"])
        if request.method not in route.methods:
            raise method_not_allowed(request.method)
        return await route.handler(call)

    # A plain Starlette route: FastAPI's per-request parameter machinery is not needed here and
    # costs measurable CPU on every management call.
    return StarletteRoute("/{rest:path}", management, methods=METHODS)
