"""What Azure's own clients read besides the service API: cloud metadata, subscriptions, tenants,
providers, generic resource lists, soft-deleted services, and the identity aliases and scope forms."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from portico.arm.call import check_subscription
from portico.arm.errors import ArmError
from portico.arm.versions import METADATA, SUBSCRIPTIONS
from portico.identity.apps import create_app
from portico.identity.rbac import assign_role
from portico.server.app import create_app as create_portico_app
from portico.settings import Settings

from .inproc import API, BASE, RG_API, SUB, InProc, assert_arm_error, inproc

OTHER_SUB = "00000000-0000-0000-0000-0000000000bb"
RES_API = "2024-11-01"  # what az resource / az provider send
SUB_API = "2022-12-01"  # what az login sends


@pytest.fixture(scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProc]:
    async with inproc(
        tmp_path_factory.mktemp("plumbing"), subscriptions=f"{SUB}=Production,{OTHER_SUB}"
    ) as n:
        yield n


async def _token(node: InProc, client_id: str, secret: str, scope: str) -> httpx.Response:
    return await node.client.post(
        f"/{node.settings.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


async def _app_with_role(node: InProc, scope: str | None) -> dict[str, str]:
    client_id, secret = await create_app(node.rt.db, "narrow")
    if scope is not None:
        await assign_role(node.rt.db, client_id, "Reader", scope)
    r = await _token(node, client_id, secret, "https://management.azure.com/.default")
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_cloud_metadata_without_token_single_and_double_slash(node: InProc) -> None:
    for path in ("/metadata/endpoints", "//metadata/endpoints"):
        r = await node.client.get(BASE + path, params={"api-version": "2022-09-01"})  # absolute: keeps "//"
        assert r.status_code == 200, (r.request.url, r.text)
        doc = r.json()
        assert doc["resourceManager"] == BASE + "/"
        assert doc["authentication"]["loginEndpoint"] == BASE
        assert doc["authentication"]["audiences"][0] == node.settings.audience
        assert doc["suffixes"]["storage"] and doc["name"]
    r = await node.client.get("/metadata/endpoints", params={"api-version": "2099-01-01"})
    err = assert_arm_error(r, 400, "InvalidApiVersionParameter")
    assert ", ".join(METADATA.listed) in err["message"]


async def test_subscriptions_and_tenants(node: InProc) -> None:
    r = await node.get("/subscriptions", api_version=SUB_API)
    assert r.status_code == 200, r.text
    subs = {s["subscriptionId"]: s for s in r.json()["value"]}
    assert set(subs) == {SUB, OTHER_SUB}  # the admin's assignment at "/" reaches all
    prod = subs[SUB]
    assert prod["id"] == f"/subscriptions/{SUB}" and prod["displayName"] == "Production"
    assert prod["tenantId"] == node.settings.tenant_id and prod["state"] == "Enabled"
    assert prod["authorizationSource"] == "RoleBased" and prod["subscriptionPolicies"]["quotaId"]
    for version in ("2016-06-01", "2019-11-01", SUB_API):
        r = await node.get(f"/subscriptions/{SUB}", api_version=version)
        assert r.status_code == 200 and r.json()["subscriptionId"] == SUB
    assert_arm_error(
        await node.get(f"/subscriptions/{SUB[:-2]}cc", api_version=SUB_API), 404, "SubscriptionNotFound"
    )
    # An unknown version lists the subscription endpoints' own versions, not API Management's.
    err = assert_arm_error(
        await node.get("/subscriptions", api_version="2024-05-01"), 400, "InvalidApiVersionParameter"
    )
    assert ", ".join(SUBSCRIPTIONS.listed) in err["message"]
    r = await node.get(f"/subscriptions/{SUB}/locations", api_version=SUB_API)
    assert {"name": "westeurope", "displayName": "West Europe"}.items() <= r.json()["value"][8].items()
    r = await node.get("/tenants", api_version=SUB_API)
    assert r.status_code == 200 and [t["tenantId"] for t in r.json()["value"]] == [node.settings.tenant_id]
    assert_arm_error(await node.client.get("/subscriptions", params={"api-version": SUB_API}), 401)


async def test_management_routes_answer_only_under_offered_subscriptions(node: InProc) -> None:
    unknown = "11111111-2222-3333-4444-555555555555"
    rg = await node.group()
    svc = f"/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/nothere"
    for method, path, version in (
        ("PUT", f"/subscriptions/{unknown}/resourceGroups/{rg}", RG_API),
        ("GET", f"/subscriptions/{unknown}{svc}", API),
        ("GET", f"/subscriptions/{unknown}{svc}/apis", API),
        ("GET", f"/subscriptions/{unknown}/providers/Microsoft.ApiManagement/service", API),
        ("GET", f"/subscriptions/{unknown}/locations", SUB_API),
        ("GET", f"/subscriptions/{unknown}/no/such/route", API),  # no route: still the subscription first
    ):
        body = {"location": "westeurope"} if method == "PUT" else None
        r = await node.request(method, path, api_version=version, json=body)
        err = assert_arm_error(r, 404, "SubscriptionNotFound")
        assert err["message"] == f"The subscription '{unknown}' could not be found.", (path, err)
    # Offered ids match ignoring case (ARM's GUIDs do); malformed ones stay a 400.
    r = await node.get(f"/subscriptions/{OTHER_SUB.upper()}/resourceGroups/{rg}x", api_version=RG_API)
    assert_arm_error(r, 404, "ResourceGroupNotFound")
    r = await node.get(f"/subscriptions/{SUB}/resourceGroups/{rg}", api_version=RG_API)
    assert r.status_code == 200, r.text
    assert_arm_error(await node.get("/subscriptions/has%20space/resourceGroups", api_version=RG_API), 400)
    # Without a token the answer is 401, as ARM's: whether a subscription exists is not told to anyone.
    r = await node.client.get(f"/subscriptions/{unknown}/resourceGroups", params={"api-version": RG_API})
    assert_arm_error(r, 401)


async def test_subscriptions_follow_role_assignments(node: InProc) -> None:
    rg = await node.group()
    narrow = await _app_with_role(node, f"/subscriptions/{OTHER_SUB}/resourceGroups/{rg}")
    r = await node.client.get("/subscriptions", params={"api-version": SUB_API}, headers=narrow)
    assert [s["subscriptionId"] for s in r.json()["value"]] == [OTHER_SUB]  # access below it counts
    r = await node.client.get(f"/subscriptions/{SUB}", params={"api-version": SUB_API}, headers=narrow)
    assert_arm_error(r, 403, "AuthorizationFailed")
    nobody = await _app_with_role(node, None)
    r = await node.client.get("/subscriptions", params={"api-version": SUB_API}, headers=nobody)
    assert r.status_code == 200 and r.json()["value"] == []


async def test_provider_document(node: InProc) -> None:
    r = await node.get(f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement", api_version=RES_API)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["namespace"] == "Microsoft.ApiManagement" and doc["registrationState"] == "Registered"
    types = {t["resourceType"]: t for t in doc["resourceTypes"]}
    assert types["service"]["apiVersions"][0] == "2024-05-01"  # newest first: az picks the first
    assert {"deletedservices", "locations/deletedservices", "service/apis", "service/apis/operations"} <= set(
        types
    )
    r = await node.get(f"/subscriptions/{SUB}/providers/microsoft.apimanagement", api_version="2021-04-01")
    assert r.status_code == 200
    for path in ("/providers", f"/subscriptions/{SUB}/providers"):
        r = await node.get(path, api_version=RES_API)
        assert [p["namespace"] for p in r.json()["value"]] == ["Microsoft.ApiManagement"]
    r = await node.get(f"/subscriptions/{SUB}/providers/Microsoft.Web", api_version=RES_API)
    assert_arm_error(r, 404, "InvalidResourceNamespace")
    r = await node.request(
        "POST", f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/register", api_version=RES_API
    )
    assert r.status_code == 200 and r.json()["registrationState"] == "Registered"


async def test_generic_resource_list(node: InProc) -> None:
    rg = await node.group()
    name = await node.service(rg)
    r = await node.get(f"/subscriptions/{SUB}/resources", api_version=RES_API)
    assert r.status_code == 200, r.text
    mine = [x for x in r.json()["value"] if x["name"] == name]
    assert len(mine) == 1
    assert (
        mine[0]["id"]
        == f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
    )
    assert mine[0]["type"] == "Microsoft.ApiManagement/service" and mine[0]["sku"]["name"] == "Developer"
    r = await node.get(
        f"{node.rg_path(rg)}/resources", api_version=RES_API, params={"$expand": "createdTime"}
    )
    assert [x["name"] for x in r.json()["value"]] == [name] and "createdTime" in r.json()["value"][0]
    filters = {
        "resourceType eq 'Microsoft.ApiManagement/service'": True,
        f"name eq '{name.upper()}'": True,
        f"resourceGroup eq '{rg}' and location eq 'West Europe'": True,
        "resourceType eq 'Microsoft.Web/sites'": False,
        "tagName eq 'env'": False,
        f"substringof('{name[3:9]}', name)": True,
    }
    for text, found in filters.items():
        r = await node.get(f"/subscriptions/{SUB}/resources", api_version=RES_API, params={"$filter": text})
        assert r.status_code == 200, (text, r.text)
        assert (name in [x["name"] for x in r.json()["value"]]) is found, text
    r = await node.get(
        f"/subscriptions/{SUB}/resources", api_version=RES_API, params={"$filter": "sku eq 'x'"}
    )
    assert_arm_error(r, 400, "InvalidFilterInQueryString")
    # A caller sees only the services it may read.
    nobody = await _app_with_role(node, f"/subscriptions/{SUB}/resourceGroups/{await node.group()}")
    r = await node.client.get(
        f"/subscriptions/{SUB}/resources", params={"api-version": RES_API}, headers=nobody
    )
    assert r.status_code == 200 and r.json()["value"] == []


async def test_soft_delete_restore_and_purge(node: InProc) -> None:
    rg = await node.group()
    name = await node.service(rg)
    path = node.svc_path(rg, name)
    r = await node.put(f"{path}/namedValues/nv1", {"properties": {"displayName": "nv1", "value": "kept"}})
    assert r.status_code in (200, 201), r.text
    assert (await node.request("DELETE", path)).status_code == 200
    assert (await node.get(path)).status_code == 404
    r = await node.get(f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/deletedservices")
    listed = [d for d in r.json()["value"] if d["name"] == name]
    assert len(listed) == 1
    deleted = listed[0]
    assert deleted["properties"]["serviceId"].casefold() == path.casefold()
    assert deleted["properties"]["scheduledPurgeDate"] > deleted["properties"]["deletionDate"]
    assert deleted["type"] == "Microsoft.ApiManagement/deletedservices"
    one = (
        f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/locations/West Europe/deletedservices/{name}"
    )
    r = await node.get(one)
    assert r.status_code == 200 and r.json()["id"] == deleted["id"]
    assert_arm_error(await node.get(one.replace("West Europe", "eastus")), 404)
    assert_arm_error(await node.get(one, api_version="2019-12-01"), 400, "InvalidApiVersionParameter")
    body = {
        "location": "westeurope",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
    }
    assert_arm_error(await node.put(path, body), 409, "ServiceAlreadyExistsInSoftDeletedState")
    r = await node.client.post(
        f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/checkNameAvailability",
        params={"api-version": "2024-05-01"},
        json={"name": name},
        headers=node.auth,
    )
    assert r.json()["nameAvailable"] is False
    # Restore: the configuration comes back; the rest of the body is ignored.
    r = await node.put(path, {**body, "properties": {**body["properties"], "restore": True}})
    assert r.status_code == 201, r.text
    r = await node.get(f"{path}/namedValues/nv1")
    assert r.status_code == 200 and r.json()["properties"]["displayName"] == "nv1"
    r = await node.put(path, {**body, "properties": {**body["properties"], "restore": True}})
    assert_arm_error(r, 400)  # nothing to restore: the service exists
    assert "properties.restore" in r.json()["error"]["message"]
    assert_arm_error(await node.get(one), 404)
    # Purge: gone for good, and the name is free again.
    assert (await node.request("DELETE", path)).status_code == 200
    r = await node.request("DELETE", one)
    assert r.status_code == 200 and r.json()["name"] == name
    assert_arm_error(await node.request("DELETE", one), 404)
    restore = {**body, "properties": {**body["properties"], "restore": True}}
    assert_arm_error(await node.put(path, restore), 404)
    assert (await node.put(path, body)).status_code == 201
    assert (await node.get(f"{path}/namedValues/nv1")).status_code == 404
    # Before 2020-12-01 a delete is permanent, as it was on Azure.
    assert (await node.request("DELETE", path, api_version="2019-12-01")).status_code == 200
    assert_arm_error(await node.get(one), 404)


async def test_identity_aliases_and_scope_forms(node: InProc) -> None:
    for alias in ("organizations", "common"):
        r = await node.client.get(f"/{alias}/v2.0/.well-known/openid-configuration")
        assert r.status_code == 200, r.text
        assert r.json()["token_endpoint"] == f"{BASE}/{alias}/oauth2/v2.0/token"
        assert (await node.client.get(f"/{alias}/discovery/v2.0/keys")).status_code == 200
    client_id, secret = await create_app(node.rt.db, "scopes")
    for scope in (
        "https://management.azure.com/.default",
        "https://management.azure.com//.default",
        "https://management.azure.com/",
        "https://management.azure.com",
    ):
        r = await _token(node, client_id, secret, scope)
        assert r.status_code == 200, (scope, r.text)
    r = await node.client.post(
        "/organizations/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert (
        r.status_code == 400
        and f"/{node.settings.tenant_id}/oauth2/v2.0/token" in r.json()["error_description"]
    )


async def test_start_up_names_subscriptions_holding_groups_but_not_offered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with inproc(tmp_path, subscriptions=f"{SUB},{OTHER_SUB}") as before:
        await before.group("kept")
        r = await before.put(
            f"/subscriptions/{OTHER_SUB}/resourceGroups/dropped",
            {"location": "westeurope"},
            api_version=RG_API,
        )
        assert r.status_code == 201, r.text
    app = create_portico_app(Settings(data_dir=tmp_path, public_url=BASE, subscriptions=SUB))
    with caplog.at_level(logging.WARNING, logger="portico"):
        async with app.router.lifespan_context(app):
            pass
    warned = [rec.getMessage() for rec in caplog.records if "PORTICO_SUBSCRIPTIONS" in rec.getMessage()]
    assert len(warned) == 1 and OTHER_SUB in warned[0] and SUB not in warned[0], warned


def test_subscriptions_are_enforced_only_when_configured() -> None:
    """Left unset, PORTICO_SUBSCRIPTIONS offers its default to listings and az login, and requests
    under other well-formed ids are served (as before the setting existed); set, it is the list."""
    free = Settings(data_dir=Path("/nonexistent"))
    assert not free.subscriptions_enforced
    check_subscription(free, "11111111-2222-3333-4444-555555555555")
    with pytest.raises(ArmError) as err:
        check_subscription(free, "has space")
    assert err.value.status == 400
    held = Settings(data_dir=Path("/nonexistent"), subscriptions=SUB)
    assert held.subscriptions_enforced
    check_subscription(held, SUB.upper())
    with pytest.raises(ArmError) as err:
        check_subscription(held, "11111111-2222-3333-4444-555555555555")
    assert err.value.status == 404 and err.value.code == "SubscriptionNotFound"
