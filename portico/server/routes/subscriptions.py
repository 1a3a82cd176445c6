"""Subscriptions and tenants (Microsoft.Resources): what `az login` lists and `az account` shows."""

from __future__ import annotations

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import json_response
from portico.identity.rbac import list_assignments
from portico.resources import tenancy
from portico.resources.providers import LOCATIONS


async def _assigned_scopes(call: Call) -> list[str]:
    if call.principal is None:  # routes of this module are authenticated
        raise ArmError(401, "AuthenticationFailed", "Authentication failed: no bearer token was sent.")
    # Assignments are per issuer: the same subject from another issuer is another principal.
    principal = call.principal
    assignments = await list_assignments(
        call.rt.db, principal.principal_id, issuer=principal.assignment_issuer
    )
    return [a.scope for a in assignments]


async def list_subscriptions(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    settings = call.rt.settings
    visible = tenancy.visible_subscriptions(settings, await _assigned_scopes(call))
    return json_response(
        {
            "value": [tenancy.render_subscription(settings, s, name) for s, name in visible],
            "count": {"type": "Total", "value": len(visible)},
        }
    )


async def subscription(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    settings = call.rt.settings
    requested = call.subscription_id
    found = tenancy.find_subscription(settings, requested)
    if found is None:
        raise ArmError(404, "SubscriptionNotFound", f"The subscription '{requested}' could not be found.")
    if not any(tenancy.reaches(scope, found[0]) for scope in await _assigned_scopes(call)):
        assert call.principal is not None
        pid = call.principal.principal_id
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{pid}' with object id '{pid}' does not have authorization to perform action "
            f"'Microsoft.Resources/subscriptions/read' over scope '/subscriptions/{found[0]}'.",
        )
    return json_response(tenancy.render_subscription(settings, *found))


async def list_tenants(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    return json_response({"value": [tenancy.render_tenant(call.rt.settings)]})


async def list_locations(call: Call) -> Response:
    """The regions the provider document names; a service may still be created in any region name."""
    if call.method != "GET":
        raise method_not_allowed(call.method)
    sub = call.subscription_id
    await call.authorize("Microsoft.Resources/subscriptions/locations/read", f"/subscriptions/{sub}")
    return json_response({"value": [tenancy.render_location(sub, name) for name in LOCATIONS]})
