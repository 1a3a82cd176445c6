"""Resource requests made by Portico itself on a caller's behalf (template deployments).

They go through the same route table and handlers as requests from outside, as the caller's
principal: the same validation, the same authorisation, the same answers. Nothing is sent over
the network; the request never leaves the process.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Scope

from portico.arm.call import Call, check_subscription
from portico.arm.errors import ArmError
from portico.deployments.client import Reply
from portico.identity.validation import Principal
from portico.resources import kinds as K
from portico.runtime import Runtime
from portico.server.routes import entities
from portico.server.routes.table import RouteTable

log = logging.getLogger("portico")
_INTERNAL_SERVER = ("portico.internal", 443)


def is_internal(request: Request) -> bool:
    """Whether Portico itself made this request (a deployment's resource), not a client."""
    return tuple(request.scope.get("server") or ()) == _INTERNAL_SERVER


class RouteClient:
    """`portico.deployments.client.ResourceClient` over the management route table."""

    def __init__(self, table: RouteTable, rt: Runtime, principal: Principal, app: Any) -> None:
        self.table = table
        self.rt = rt
        self.principal = principal
        self.app = app

    def _unoffered(self, params: dict[str, str]) -> ArmError | None:
        """The answer to a resource in a subscription this instance does not offer, as outside."""
        try:
            if "subscriptionId" in params:
                check_subscription(self.rt.settings, params["subscriptionId"])
        except ArmError as exc:
            return exc
        return None

    def check(self, resource_id: str, api_version: str) -> str | None:
        segments = [s for s in resource_id.split("/") if s]
        found = self.table.match(segments)
        rtype = _type_of(segments)
        if found is None:
            return f"The resource type '{rtype}' is not supported by Portico."
        route, params = found
        if (unoffered := self._unoffered(params)) is not None:
            return unoffered.message
        if route.handler is entities.entity:
            try:
                target = K.resolve([s for s in params["path"].split("/") if s])
            except ArmError as exc:
                return exc.message
            if target is None or target.name is None or target.action is not None:
                return f"The resource type '{rtype}' is not supported by Portico."
        if api_version not in route.versions:
            return (
                f"The api-version '{api_version[:40]}' is not valid for the resource type '{rtype}'. "
                f"The supported api-versions are '{', '.join(route.versions.listed)}'."
            )
        return None

    async def request(self, method: str, resource_id: str, api_version: str, body: Any = None) -> Reply:
        segments = [s for s in resource_id.split("/") if s]
        found = self.table.match(segments)
        if found is None:
            return Reply(
                404,
                {
                    "error": {
                        "code": "ResourceNotFound",
                        "message": f"No resource type matches '{resource_id[:300]}'.",
                    }
                },
                {},
            )
        route, params = found
        if (unoffered := self._unoffered(params)) is not None:
            return Reply(unoffered.status, unoffered.body(), dict(unoffered.headers))
        raw = b"" if body is None else orjson.dumps(body)
        request = Request(
            _scope(self.app, method, "/" + "/".join(segments), api_version, raw), _receiver(raw)
        )
        call = Call(self.rt, request, api_version, self.principal, segments, params)
        try:
            if api_version not in route.versions:
                raise ArmError(
                    400, "InvalidApiVersionParameter", f"The api-version '{api_version[:40]}' is invalid."
                )
            response = await route.handler(call)
        except ArmError as exc:
            return Reply(exc.status, exc.body(), dict(exc.headers))
        except Exception as exc:  # the same answer an outside caller would get, and the same log line
            log.error(
                "unhandled %s on internal %s %s", type(exc).__name__, method, resource_id[:300], exc_info=exc
            )
            return Reply(
                500, {"error": {"code": "InternalServerError", "message": "An internal error occurred."}}, {}
            )
        return _reply(response)


def _reply(response: Response) -> Reply:
    data = bytes(response.body) if response.body else b""
    try:
        parsed = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        parsed = data.decode(errors="replace")
    return Reply(response.status_code, parsed, {k.decode(): v.decode() for k, v in response.raw_headers})


def _scope(app: Any, method: str, path: str, api_version: str, body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"api-version={api_version}".encode(),
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 0),
        "server": _INTERNAL_SERVER,
        "app": app,
    }


def _receiver(body: bytes) -> Any:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _type_of(segments: list[str]) -> str:
    low = [s.lower() for s in segments]
    if "providers" not in low:
        return "/".join(segments)
    i = len(low) - 1 - low[::-1].index("providers")
    rest = segments[i + 1 :]
    return "/".join([rest[0], *rest[1::2]]) if rest else "/".join(segments)
