"""Resource providers and generic resource lists (Microsoft.Resources) over Portico's services.

`az provider show`, `az resource show --ids` (which reads the provider's api-versions first) and
`az resource list` use these.
"""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call, group_scope, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.identity.rbac import is_authorized
from portico.resources.providers import (
    NAMESPACE,
    generic_resource,
    parse_expand,
    parse_filter,
    provider_document,
)
from portico.store import services as S


def _check_namespace(namespace: str) -> None:
    if namespace.casefold() != NAMESPACE.casefold():
        raise ArmError(
            404,
            "InvalidResourceNamespace",
            f"The resource namespace '{namespace[:100]}' is invalid: this instance provides {NAMESPACE} only.",
        )


async def list_providers(call: Call) -> Response:
    """`/providers` (tenant level) and `/subscriptions/{s}/providers`."""
    if call.method != "GET":
        raise method_not_allowed(call.method)
    sub = call.params.get("subscriptionId")
    if sub is not None:
        await call.authorize("Microsoft.Resources/subscriptions/providers/read", f"/subscriptions/{sub}")
    return json_response({"value": [provider_document(sub)]})


async def provider(call: Call) -> Response:
    """`GET /subscriptions/{s}/providers/{namespace}`."""
    sub = call.subscription_id
    _check_namespace(call.params["namespace"])
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize("Microsoft.Resources/subscriptions/providers/read", f"/subscriptions/{sub}")
    return json_response(provider_document(sub))


async def register(call: Call) -> Response:
    """`POST .../providers/{namespace}/register`: Microsoft.ApiManagement is always registered."""
    sub = call.subscription_id
    _check_namespace(call.params["namespace"])
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize(f"{NAMESPACE}/register/action", f"/subscriptions/{sub}")
    return json_response(provider_document(sub))


async def list_resources(call: Call) -> Response:
    """`/subscriptions/{s}/resources` and `/subscriptions/{s}/resourceGroups/{rg}/resources`: the
    services the caller may read, as ARM lists only what the caller can see."""
    if call.method != "GET":
        raise method_not_allowed(call.method)
    if call.principal is None:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed: no bearer token was sent.")
    sub, rg = call.subscription_id, call.params.get("resourceGroupName")
    query = call.query()
    matches = parse_filter(query.get("$filter"))
    expand = parse_expand(query.get("$expand"))
    top = query.get("$top")
    limit: int | None = None
    if top is not None:
        if not top.isdigit() or not 1 <= int(top) <= 1000:
            raise ArmError(400, "InvalidTopQueryString", "$top must be an integer between 1 and 1000.")
        limit = int(top)
    async with call.rt.db.read() as conn:
        if rg is not None and await S.get_group(conn, sub, rg) is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        items = await S.list_services(conn, sub, rg)
    if rg is not None:
        await call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", group_scope(sub, rg))
    pid, issuer = call.principal.principal_id, call.principal.assignment_issuer
    visible = [
        s
        for s in items
        if matches(s)
        and await is_authorized(call.rt.db, pid, f"{NAMESPACE}/service/read", s.arm_id, issuer=issuer)
    ]
    if limit is not None:
        visible = visible[:limit]
    return json_response({"value": [generic_resource(s, expand) for s in visible]})
