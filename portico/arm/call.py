"""One management request after protocol checks and authentication, as every handler receives it.

A handler is `async def handler(call: Call) -> Response`; the route table
(`portico/server/routes/table.py`) fills `call.params` from the URL template, e.g.
`{"subscriptionId": ..., "resourceGroupName": ..., "serviceName": ...}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from portico.arm.errors import ArmError
from portico.arm.http import read_json
from portico.identity.rbac import authorize
from portico.identity.validation import Principal
from portico.runtime import Runtime
from portico.settings import Settings, is_subscription_id
from portico.store import services as S

PROVIDER_NAMESPACE = "Microsoft.ApiManagement"


def group_scope(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def service_scope(sub: str, rg: str, name: str) -> str:
    """The ARM id of a service: the RBAC scope of everything under it."""
    return f"{group_scope(sub, rg)}/providers/{PROVIDER_NAMESPACE}/service/{name}"


def service_missing(name: str, rg: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{PROVIDER_NAMESPACE}/service/{name}' under resource group '{rg}' was not found.",
    )


def check_subscription(settings: Settings, subscription_id: str) -> None:
    """Every request under `/subscriptions/{id}` names a well-formed subscription id and, when
    `PORTICO_SUBSCRIPTIONS` is set, one it offers: ARM answers any other with 404, whatever lies
    below it."""
    if not is_subscription_id(subscription_id):
        raise ArmError(400, "InvalidSubscriptionId", "The subscription identifier is malformed.")
    if settings.subscriptions_enforced and not settings.offers_subscription(subscription_id):
        raise ArmError(
            404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found."
        )


def method_not_allowed(method: str) -> ArmError:
    return ArmError(405, "MethodNotAllowed", f"The {method} method is not allowed on this resource.")


@dataclass
class Call:
    rt: Runtime
    request: Request
    api_version: str
    principal: Principal | None  # None only on routes that need no token (metadata)
    segments: list[str]
    params: dict[str, str] = field(default_factory=dict)
    _read: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def method(self) -> str:
        return self.request.method

    def base_url(self) -> str:
        return self.rt.settings.resolved_public_url

    def url(self) -> str:
        """This request's absolute URL without its query (nextLink bases)."""
        return f"{self.base_url()}/{'/'.join(self.segments)}"

    async def authorize(self, action: str, scope: str) -> None:
        if self.principal is None:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed: no bearer token was sent.")
        await authorize(self.rt.db, self.principal, action, scope)

    async def body(self, required: bool = True, *, lenient: bool = False) -> Any:
        # Kept once read: a handler may look at the body and hand the call on to another handler.
        if "body" not in self._read:
            self._read["body"] = await read_json(
                self.request, self.rt.settings.max_request_bytes, required=False, lenient=lenient
            )
        body = self._read["body"]
        if body is None and required:
            raise ArmError(400, "InvalidRequestContent", "The request body is required and must be JSON.")
        return body

    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    # --- the service a route is under ------------------------------------------------------------------
    @property
    def subscription_id(self) -> str:
        return self.params["subscriptionId"]

    @property
    def group_name(self) -> str:
        return self.params["resourceGroupName"]

    @property
    def service_name(self) -> str:
        return self.params["serviceName"]

    @property
    def service_scope(self) -> str:
        return service_scope(self.subscription_id, self.group_name, self.service_name)

    async def authorize_service(self, action: str) -> None:
        """Authorise `action` (e.g. `Microsoft.ApiManagement/service/apis/read`) on this service."""
        await self.authorize(action, self.service_scope)

    async def service(self, conn: AsyncConnection, *, lock: bool = False) -> S.Service:
        """The service this route names, or the ARM 404 for it."""
        svc = await S.get_service(conn, self.subscription_id, self.group_name, self.service_name, lock=lock)
        if svc is None:
            raise service_missing(self.service_name, self.group_name)
        return svc


Handler = Callable[[Call], Awaitable[Response]]
