"""Read-only collections and service-level actions beside the stored entities (see
`portico/resources/views.py`): all policies, policy descriptions, issues, tag resources, entities by
tag, a user's groups/subscriptions/identities/tokens, a product's subscriptions, an API's products, regions,
SKUs, network status, private endpoints, and the service's SSO/ownership/network actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.arm.paging import next_link, parse_page
from portico.jobs import store as J
from portico.resources import connectivity
from portico.resources import links as L
from portico.resources import views as V
from portico.resources.engine import EntityEngine
from portico.resources.service import render_service
from portico.server.routes import operations
from portico.store import entities as E

Lister = Callable[[EntityEngine], Awaitable[list[dict[str, Any]]]]


def _paged(call: Call, items: list[dict[str, Any]]) -> Response:
    q = call.query()
    page = parse_page(q.get("$top"), q.get("$skip"), q.get("$filter"))
    if page.filter is not None:
        items = [i for i in items if page.filter.predicate(i)]
    window = items[page.skip : page.skip + page.top]
    out: dict[str, Any] = {"value": window, "count": len(items)}
    link = next_link(call.url(), q, page, len(window), page.skip + len(window) < len(items))
    if link:
        out["nextLink"] = link
    return json_response(out)


async def _list(call: Call, noun: str, lister: Lister) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/read")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        items = await lister(EntityEngine(conn, svc))
    return _paged(call, items)


async def all_policies(call: Call) -> Response:
    return await _list(call, "policies", V.all_policies)


async def policy_descriptions(call: Call) -> Response:
    scope = call.query().get("scope")

    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        return V.policy_descriptions(eng.svc.arm_id, None if (scope or "").lower() == "all" else scope)

    return await _list(call, "policyDescriptions", lister)


async def issues(call: Call) -> Response:
    wanted = call.params.get("issueId")
    if wanted is None:
        return await _list(call, "issues", V.issues)
    await call.authorize_service("Microsoft.ApiManagement/service/issues/read")
    async with call.rt.db.read() as conn:
        items = await V.issues(EntityEngine(conn, await call.service(conn)))
    for i in items:
        if i["name"].lower() == wanted.lower():
            return json_response(i)
    raise ArmError(404, "ResourceNotFound", f"Issue '{wanted}' was not found.")


async def tag_resources(call: Call) -> Response:
    return await _list(call, "tagResources", V.tag_resources)


async def apis_by_tags(call: Call) -> Response:
    return await _list(call, "apisByTags", lambda eng: V.by_tags(eng, "apis"))


async def products_by_tags(call: Call) -> Response:
    return await _list(call, "productsByTags", lambda eng: V.by_tags(eng, "products"))


async def operations_by_tags(call: Call) -> Response:
    api_id = call.params["apiId"]

    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        api = await V.require(eng, "api", api_id)
        return await V.by_tags(eng, "operations", f"apis/{api}")

    return await _list(call, "apis/operationsByTags", lister)


async def api_products(call: Call) -> Response:
    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        return await V.api_products(eng, await V.require(eng, "api", call.params["apiId"]))

    return await _list(call, "apis/products", lister)


async def user_groups(call: Call) -> Response:
    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        return await V.user_groups(eng, await V.require(eng, "user", call.params["userId"]))

    return await _list(call, "users/groups", lister)


async def user_identities(call: Call) -> Response:
    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        return await V.user_identities(eng, await V.require(eng, "user", call.params["userId"]))

    return await _list(call, "users/identities", lister)


async def user_subscriptions(call: Call) -> Response:
    sid = call.params.get("sid")

    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        user = await V.require(eng, "user", call.params["userId"])
        return await V.subscriptions_where(eng, "ownerId", f"/users/{user}")

    if sid is None:
        return await _list(call, "users/subscriptions", lister)
    await call.authorize_service("Microsoft.ApiManagement/service/users/subscriptions/read")
    async with call.rt.db.read() as conn:
        items = await lister(EntityEngine(conn, await call.service(conn)))
    for i in items:
        if i["name"].lower() == sid.lower():
            return json_response(i)
    raise ArmError(
        404, "ResourceNotFound", f"Subscription '{sid}' of user '{call.params['userId']}' was not found."
    )


async def product_subscriptions(call: Call) -> Response:
    async def lister(eng: EntityEngine) -> list[dict[str, Any]]:
        product = await V.require(eng, "product", call.params["productId"])
        return await V.subscriptions_where(eng, "scope", f"/products/{product}")

    return await _list(call, "products/subscriptions", lister)


async def user_action(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    action = call.params["action"].lower()
    if action not in ("generatessourl", "token"):
        raise ArmError(404, "ResourceNotFound", f"No action '{call.params['action'][:40]}' on users.")
    await call.authorize_service(
        "Microsoft.ApiManagement/service/users/"
        + ("generateSsoUrl/action" if action == "generatessourl" else "token/action")
    )
    body = await call.body(required=action == "token")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
        eng = EntityEngine(conn, svc)
        user = await V.require(eng, "user", call.params["userId"])
        if action == "generatessourl":
            portal = render_service(svc, call.rt.settings.gateway_domain)["properties"]["developerPortalUrl"]
            return json_response({"value": V.sso_redirect(portal)["redirectUri"] + f"&user={user}"})
        access = await E.get(conn, svc.active_store_id, "tenantAccess", "", "access")
    if access is None:
        raise ArmError(
            409, "TenantAccessMissing", "The service has no tenant access keys to sign a token with."
        )
    props = body.get("properties", body) if isinstance(body, dict) else {}
    key = access.data["primaryKey" if props.get("keyType") == "primary" else "secondaryKey"]
    return json_response(V.user_token(user, key, body))


async def _svc_read(call: Call, noun: str) -> Any:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/read")
    async with call.rt.db.read() as conn:
        return await call.service(conn)


async def regions(call: Call) -> Response:
    svc = await _svc_read(call, "regions")
    return _paged(call, V.regions(svc.location))


async def service_skus(call: Call) -> Response:
    svc = await _svc_read(call, "skus")
    return json_response({"value": V.service_skus(svc.sku_name)})


async def subscription_skus(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize("Microsoft.ApiManagement/skus/read", f"/subscriptions/{call.subscription_id}")
    return json_response({"value": V.subscription_skus("West Europe")})


async def network_status(call: Call) -> Response:
    svc = await _svc_read(call, "networkstatus")
    location = call.params.get("locationName")
    if location is None:
        return json_response([V.network_status(svc.location)])
    if location.replace(" ", "").lower() != svc.location.replace(" ", "").lower():
        raise ArmError(404, "ResourceNotFound", f"Service '{svc.name}' has no location '{location[:80]}'.")
    return json_response(V.network_status(svc.location)["networkStatus"])


async def outbound_dependencies(call: Call) -> Response:
    await _svc_read(call, "outboundNetworkDependenciesEndpoints")
    return json_response({"value": []})


async def private_endpoint_connections(call: Call) -> Response:
    name = call.params.get("connectionName")
    if call.method in ("PUT", "DELETE") and name is not None:
        if call.method == "DELETE":
            await call.authorize_service("Microsoft.ApiManagement/service/privateEndpointConnections/delete")
            return empty(204)
        raise ArmError(
            400,
            "PrivateEndpointNotSupported",
            "Private endpoint connections are not supported: Portico is not on an Azure virtual network.",
        )
    await _svc_read(call, "privateEndpointConnections")
    if name is None:
        return json_response({"value": []})
    raise ArmError(404, "ResourceNotFound", f"Private endpoint connection '{name[:80]}' was not found.")


async def private_link_resources(call: Call) -> Response:
    svc = await _svc_read(call, "privateLinkResources")
    items = V.private_link_resources(svc.arm_id)
    name = call.params.get("privateLinkSubResourceName")
    if name is None:
        return json_response({"value": items})
    for i in items:
        if i["name"].lower() == name.lower():
            return json_response(i)
    raise ArmError(404, "ResourceNotFound", f"Private link resource '{name[:80]}' was not found.")


async def sso_token(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize_service("Microsoft.ApiManagement/service/getssotoken/action")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    portal = render_service(svc, call.rt.settings.gateway_domain)["properties"]["portalUrl"]
    return json_response(V.sso_redirect(portal))


async def domain_ownership(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize(
        "Microsoft.ApiManagement/getDomainOwnershipIdentifier/action",
        f"/subscriptions/{call.subscription_id}",
    )
    return json_response(V.domain_ownership_identifier(call.subscription_id))


async def network_update(call: Call) -> Response:
    """applynetworkconfigurationupdates and migrateToStv2: Portico has no virtual network and
    always runs on the current platform, so both complete at once with the service unchanged."""
    if call.method != "POST":
        raise method_not_allowed(call.method)
    action = call.segments[-1]
    await call.authorize_service(f"Microsoft.ApiManagement/service/{action}/action")
    body = await call.body(required=False)
    if isinstance(body, dict):
        if action.lower() == "migratetostv2" and body.get("mode") not in (None, "PreserveIp", "NewIP"):
            raise ArmError(400, "ValidationError", "mode: must be PreserveIp or NewIP.", target="mode")
        loc = body.get("location")
        if (
            action.lower() == "applynetworkconfigurationupdates"
            and loc is not None
            and not isinstance(loc, str)
        ):
            raise ArmError(400, "ValidationError", "location: must be a string.", target="location")
    async with call.rt.db.read() as conn:
        svc = await call.service(conn)
    return json_response(render_service(svc, call.rt.settings.gateway_domain))


async def tenant_configuration(call: Call) -> Response:
    """The configuration git repository (deploy/save/validate/syncState) was retired by Azure API
    Management on 15 March 2025 ("Git repository retirement" in its breaking-changes list); Portico,
    like Azure today, manages configuration through the API, backup and restore only."""
    await call.authorize_service("Microsoft.ApiManagement/service/tenant/read")
    raise ArmError(
        400,
        "GitConfigurationNotSupported",
        f"Tenant configuration '{call.params['operation'][:40]}' is not supported: the configuration git "
        "repository of API Management was retired on 15 March 2025, and Portico has none; use the "
        "management API, ARM deployments, or backup and restore.",
    )


async def tenant_git_regenerate(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    action = call.params["action"].lower()
    if action not in ("regenerateprimarykey", "regeneratesecondarykey"):
        raise ArmError(
            404, "ResourceNotFound", f"No action '{call.params['action'][:40]}' on tenant git access."
        )
    await call.authorize_service(
        "Microsoft.ApiManagement/service/tenant/git/" + call.params["action"] + "/action"
    )
    name = {"access": "access", "gitaccess": "gitAccess"}.get(call.params["accessName"].lower())
    if name is None:
        raise ArmError(
            400, "ValidationError", "accessName: must be access or gitAccess.", target="accessName"
        )
    async with call.rt.db.write() as conn:
        svc = await call.service(conn, lock=True)
        row = await E.get(conn, svc.active_store_id, "tenantAccess", "", name, lock=True)
        if row is None:
            raise ArmError(404, "ResourceNotFound", f"Tenant access '{name}' was not found.")
        field = "primaryKey" if action == "regenerateprimarykey" else "secondaryKey"
        data = {**row.data, field: V.new_access_key()}
        await E.put(conn, svc.active_store_id, "tenantAccess", "", name, None, data, exists=True)
    return empty(204)


async def links(call: Call) -> Response:
    """products/{id}/apiLinks|groupLinks and tags/{id}/apiLinks|productLinks|operationLinks."""
    view = L.VIEWS[(call.segments[8].lower(), call.segments[10].lower())]
    noun = f"{view.owner_segment}/{view.segment}"
    link = call.params.get("linkId")
    method = call.method
    if method == "GET" or method == "HEAD":
        await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/read")
        async with call.rt.db.read() as conn:
            links_ = L.Links(EntityEngine(conn, await call.service(conn)), view, call.params["ownerId"])
            if link is None:
                return _paged(call, await links_.items())
            return json_response(await links_.get(link))
    if link is None or method not in ("PUT", "DELETE"):
        raise method_not_allowed(method)
    action = "write" if method == "PUT" else "delete"
    await call.authorize_service(f"Microsoft.ApiManagement/service/{noun}/{action}")
    body = await call.body(required=method == "PUT")
    async with call.rt.db.write() as conn:
        svc = await call.service(conn, lock=True)
        links_ = L.Links(EntityEngine(conn, svc), view, call.params["ownerId"])
        if method == "PUT":
            item, created = await links_.put(link, body)
            return json_response(item, 201 if created else 200)
        deleted = await links_.delete(link)
    return empty(200 if deleted else 204)


async def location_operation(call: Call) -> Response:
    """operationStatuses / operationResults under a location: the operation of whichever service of
    this subscription started it, answered as under the service."""
    op_id = call.params["operationId"]
    async with call.rt.db.read() as conn:
        op = await J.get(conn, op_id[:64])
    parts = op.service_path.strip("/").split("/") if op is not None else []
    if op is None or len(parts) != 8 or parts[1].lower() != call.subscription_id.lower():
        raise ArmError(404, "ResourceNotFound", f"Operation '{op_id[:64]}' was not found.")
    call.params.update(subscriptionId=parts[1], resourceGroupName=parts[3], serviceName=parts[7])
    if call.segments[-2].lower() == "operationstatuses":
        return await operations.operation_status(call)
    return await operations.operation_result(call)


async def provider_operations(call: Call) -> Response:
    """The operations of Microsoft.ApiManagement, as ARM lists them for role definitions."""
    if call.method != "GET":
        raise method_not_allowed(call.method)
    return json_response({"value": V.provider_operations()})


async def workspace_links(call: Call) -> Response:
    """Workspaces are not supported, so a service has no workspace links."""
    await _svc_read(call, "workspaceLinks")
    workspace = call.params.get("workspaceId")
    if workspace is None:
        return json_response({"value": []})
    raise ArmError(404, "ResourceNotFound", f"Workspace link '{workspace[:80]}' was not found.")


async def workspaces(call: Call) -> Response:
    """Workspaces (`.../service/{name}/workspaces/...`) are not supported: none exist, and a write is a
    400 naming the feature rather than a 404 that reads like a missing item."""
    rest = call.params.get("path", "")
    if call.method in ("PUT", "PATCH", "POST", "DELETE"):
        raise ArmError(
            400,
            "FeatureNotSupported",
            "Workspaces are not supported by Portico (API Management backups do not carry them either); "
            "manage the service's APIs, products and other entities at service level.",
        )
    await _svc_read(call, "workspaces")
    if not rest:
        return json_response({"value": [], "count": 0})
    raise ArmError(404, "ResourceNotFound", f"Workspace '{rest.split('/')[0][:80]}' was not found.")


async def standalone_gateways(call: Call) -> Response:
    """Standalone (v2 tier) gateways, Microsoft.ApiManagement/gateways, are not supported: none exist."""
    scope = f"/subscriptions/{call.subscription_id}"
    rg = call.params.get("resourceGroupName")
    if rg is not None:
        scope += f"/resourceGroups/{rg}"
    name = call.params.get("gatewayName")
    if call.method == "GET" and name is None:
        await call.authorize("Microsoft.ApiManagement/gateways/read", scope)
        return json_response({"value": []})
    if call.method in ("GET", "HEAD", "DELETE"):
        await call.authorize(
            f"Microsoft.ApiManagement/gateways/{'delete' if call.method == 'DELETE' else 'read'}", scope
        )
        if call.method == "DELETE" and len(call.segments) == 8:
            return empty(204)
        raise ArmError(404, "ResourceNotFound", f"Gateway '{(name or '')[:80]}' was not found.")
    raise ArmError(
        400,
        "StandaloneGatewayNotSupported",
        "Standalone API Management gateways (Microsoft.ApiManagement/gateways) are not supported by Portico; "
        "use the self-hosted gateways of a service (service/{name}/gateways).",
    )


async def user_confirmation(call: Call) -> Response:
    """Sending the password confirmation e-mail: Portico sends no e-mail, so it says so rather than
    answering as if one had left."""
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize_service("Microsoft.ApiManagement/service/users/confirmations/send/action")
    async with call.rt.db.read() as conn:
        await V.require(EntityEngine(conn, await call.service(conn)), "user", call.params["userId"])
    raise ArmError(
        400,
        "EmailNotSupported",
        "Sending the password confirmation e-mail is not supported: Portico sends no e-mail.",
    )


async def connectivity_check(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize_service("Microsoft.ApiManagement/service/connectivityCheck/action")
    body = await call.body()
    async with call.rt.db.read() as conn:
        await call.service(conn)
    return json_response(await connectivity.check(body))
