"""The ARM protocol over the in-process app: api-version, authentication, error bodies, routes,
request bodies and sizes. Every bad request gets a 4xx with an ARM error body, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .inproc import API, RG_API, SUB, InProc, assert_arm_error


async def test_missing_and_unsupported_api_version(node: InProc, rg: str, svc: str) -> None:
    path = node.svc_path(rg, svc)
    assert_arm_error(await node.get(path, api_version=None), 400, "MissingApiVersionParameter")
    assert_arm_error(await node.get(path, api_version=""), 400, "MissingApiVersionParameter")
    err = assert_arm_error(await node.get(path, api_version="2099-01-01"), 400, "InvalidApiVersionParameter")
    assert "2024-05-01" in err["message"]
    assert_arm_error(await node.get(path, api_version=RG_API), 400, "InvalidApiVersionParameter")
    assert (await node.get(path, api_version="2019-12-01")).status_code == 200
    assert (await node.get(path, api_version="2022-08-01")).status_code == 200
    # Resource groups speak Microsoft.Resources versions.
    assert (await node.get(node.rg_path(rg), api_version="2021-04-01")).status_code == 200
    assert_arm_error(await node.get(node.rg_path(rg), api_version=API), 400, "InvalidApiVersionParameter")


async def test_api_version_is_checked_before_authentication(node: InProc) -> None:
    r = await node.client.get(
        f"/subscriptions/{SUB}/resourceGroups/x/providers/Microsoft.ApiManagement/service/y"
    )
    assert_arm_error(r, 400, "MissingApiVersionParameter")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "AuthenticationFailed"),
        ({"Authorization": ""}, "AuthenticationFailed"),
        ({"Authorization": "Bearer"}, "InvalidAuthenticationToken"),
        ({"Authorization": "Bearer abc.def"}, "InvalidAuthenticationToken"),
        ({"Authorization": "Bearer a.b.c"}, "InvalidAuthenticationToken"),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, "InvalidAuthenticationToken"),
        ({"Authorization": "Bearer " + "x" * 20000}, "InvalidAuthenticationToken"),
    ],
)
async def test_unauthenticated_requests_get_401(node: InProc, headers: dict[str, str], code: str) -> None:
    r = await node.client.get(f"/subscriptions/{SUB}/resourceGroups/x?api-version={RG_API}", headers=headers)
    assert_arm_error(r, 401, code)
    assert r.headers["www-authenticate"].startswith("Bearer authorization_uri=")


async def test_tampered_token_is_refused(node: InProc, rg: str) -> None:
    head, payload, sig = node.token.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    r = await node.client.get(
        f"{node.rg_path(rg)}?api-version={RG_API}", headers={"Authorization": f"Bearer {tampered}"}
    )
    assert_arm_error(r, 401, "InvalidAuthenticationToken")


@pytest.mark.parametrize(
    "path",
    [
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/nothing",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/apis/a/nothing",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/apis/a/operations/o/nothing/x",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/apis/a/policies/policy/extra",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}/products/p/apis/a/extra",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/other",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/x",
        "/subscriptions/{sub}/resourceGroups/{rg}/somethingElse",
        "/subscriptions/{sub}/providers/Microsoft.ApiManagement/whatever",
        "/subscriptions/{sub}/providers/Microsoft.Compute/service",
        "/subscriptions/{sub}/locations/westeurope/nothing",
        "/nothing/here",
        "/",
    ],
)
async def test_unknown_routes_are_404(node: InProc, rg: str, svc: str, path: str) -> None:
    r = await node.get(path.format(sub=SUB, rg=rg, svc=svc))
    assert_arm_error(r, 404)


async def test_dispatch_is_case_insensitive(node: InProc, rg: str, svc: str) -> None:
    r = await node.get(
        f"/subscriptions/{SUB}/RESOURCEGROUPS/{rg.upper()}/PROVIDERS/microsoft.apimanagement/SERVICE/{svc.upper()}"
    )
    assert r.status_code == 200 and r.json()["name"] == svc
    r = await node.get(f"{node.svc_path(rg, svc)}/GROUPS/developers")
    assert r.status_code == 200
    assert (await node.get(f"{node.svc_path(rg, svc)}/namedvalues")).status_code == 200


async def test_methods_not_allowed(node: InProc, rg: str, svc: str) -> None:
    base = node.svc_path(rg, svc)
    assert_arm_error(await node.request("POST", f"{base}/apis"), 405, "MethodNotAllowed")
    assert_arm_error(await node.request("DELETE", f"{base}/users"), 405, "MethodNotAllowed")
    assert_arm_error(await node.request("GET", f"{base}/subscriptions/x/listSecrets"), 405)
    assert_arm_error(
        await node.request("POST", f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/service"), 405
    )
    assert_arm_error(
        await node.request(
            "GET", f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/checkNameAvailability"
        ),
        405,
    )
    assert_arm_error(
        await node.request("PUT", f"/subscriptions/{SUB}/resourceGroups", json={}, api_version=RG_API), 405
    )


async def test_bad_subscription_ids(node: InProc) -> None:
    assert_arm_error(await node.get("/subscriptions/has%20space/resourceGroups", api_version=RG_API), 400)
    assert_arm_error(
        await node.get("/subscriptions/" + "a" * 65 + "/resourceGroups", api_version=RG_API), 400
    )


@pytest.mark.parametrize(
    "raw",
    [b"{", b"{'a': 1}", b"nul", b"\xff\xfe", b'{"properties": }', b"[1, 2", b'{"a": NaN}', b"\x00"],
)
async def test_malformed_json_is_400(node: InProc, rg: str, svc: str, raw: bytes) -> None:
    for path in (f"{node.svc_path(rg, svc)}/products/p", node.svc_path(rg, svc), node.rg_path("jsonrg")):
        version = RG_API if path.endswith("jsonrg") else API
        r = await node.request(
            "PUT", path, content=raw, headers={"Content-Type": "application/json"}, api_version=version
        )
        err = assert_arm_error(r, 400, "InvalidRequestContent")
        assert "JSON" in err["message"]


@pytest.mark.parametrize("body", [[], "text", 42, None, True, [{"properties": {}}]])
async def test_body_must_be_an_object(node: InProc, rg: str, svc: str, body: Any) -> None:
    content = json.dumps(body).encode()
    for path in (
        f"{node.svc_path(rg, svc)}/products/p",
        f"{node.svc_path(rg, svc)}/apis/a",
        node.svc_path(rg, svc),
    ):
        r = await node.request("PUT", path, content=content, headers={"Content-Type": "application/json"})
        assert_arm_error(r, 400)


async def test_empty_body_is_400_on_entity_put(node: InProc, rg: str, svc: str) -> None:
    assert_arm_error(
        await node.request("PUT", f"{node.svc_path(rg, svc)}/products/p"), 400, "InvalidRequestContent"
    )
    assert_arm_error(await node.request("PUT", node.svc_path(rg, svc)), 400, "InvalidRequestContent")


async def test_request_size_limit_413(node: InProc, rg: str, svc: str) -> None:
    limit = node.settings.max_request_bytes
    path = f"{node.svc_path(rg, svc)}/products/big"
    big = json.dumps({"properties": {"displayName": "Big", "description": "x" * (limit + 10)}}).encode()
    err = assert_arm_error(
        await node.request("PUT", path, content=big, headers={"Content-Type": "application/json"}),
        413,
        "RequestEntityTooLarge",
    )
    assert str(limit) in err["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"properties": {"displayName": "Big", "description": "'
        for _ in range(limit // 1000 + 2):
            yield b"y" * 1000
        yield b'"}}'

    assert_arm_error(
        await node.request("PUT", path, content=chunks(), headers={"Content-Type": "application/json"}), 413
    )
    assert_arm_error(await node.request("PUT", path, content=b"{}", headers={"Content-Length": "abc"}), 400)
    # Just under the limit is fine.
    ok = json.dumps({"properties": {"displayName": "Big", "description": "z" * 900}}).encode()
    assert (
        await node.request("PUT", path, content=ok, headers={"Content-Type": "application/json"})
    ).status_code == 201
    assert (await node.get(path)).status_code == 200


async def test_error_bodies_never_echo_secrets(node: InProc, rg: str, svc: str) -> None:
    base = node.svc_path(rg, svc)
    r = await node.put(
        f"{base}/subscriptions/s1",
        {
            "properties": {
                "scope": "/apis",
                "displayName": "S",
                "primaryKey": "SECRETKEY1",
                "secondaryKey": "SECRETKEY1",
            }
        },
    )
    err = assert_arm_error(r, 400)
    assert "SECRETKEY1" not in r.text and "secondaryKey" in err["message"]
    r = await node.put(
        f"{base}/namedValues/nv",
        {"properties": {"displayName": "bad name!", "value": "TOPSECRETVALUE", "secret": True}},
    )
    assert_arm_error(r, 400)
    assert "TOPSECRETVALUE" not in r.text


JUNK: list[Any] = [
    {"properties": []},
    {"properties": "x"},
    {"properties": {"displayName": 5}},
    {"properties": {"displayName": None}},
    {"properties": {"displayName": ["a"]}},
    {"properties": {"displayName": {"a": 1}}},
    {"properties": {"displayName": "x" * 5000}},
    {"properties": {"displayName": "\u0000nul"}},
    {
        "properties": {
            "path": 7,
            "protocols": "https",
            "templateParameters": "x",
            "method": [],
            "urlTemplate": {},
        }
    },
    {"properties": {"scope": 1, "ownerId": [], "primaryKey": 5, "state": "nope"}},
    {"properties": {"scope": "/products/" + "p" * 3000, "displayName": "S"}},
    {
        "properties": {
            "scope": "/subscriptions/a/resourceGroups/b/providers/Microsoft.ApiManagement/service/c",
            "displayName": "S",
        }
    },
    {
        "properties": {
            "email": "a@b.c",
            "firstName": "A",
            "lastName": "B",
            "password": 12,
            "identities": "x",
            "state": 3,
        }
    },
    {
        "properties": {
            "url": "http://x",
            "protocol": "http",
            "credentials": {"header": {"a": "b"}},
            "pool": {"services": "x"},
        }
    },
    {
        "properties": {
            "url": "http://x",
            "protocol": "http",
            "proxy": {"url": 5},
            "tls": {"validateCertificateChain": "maybe"},
        }
    },
    {"properties": {"displayName": "nv", "value": {"a": 1}, "secret": "yes", "tags": "t"}},
    {"properties": {"displayName": "nv", "value": "v", "tags": ["t"] * 40}},
    {"properties": {"value": 5, "format": "xml"}},
    {"properties": {"value": "<policies><inbound><!ENTITY x></inbound></policies>"}},
    {"properties": {"value": "<policies><nope/></policies>", "format": "rawxml-link"}},
    {"properties": {"displayName": "V", "versioningScheme": "Segment", "versionQueryName": ""}},
    {
        "properties": {
            "path": "p",
            "apiVersionSetId": 5,
            "serviceUrl": "ftp://x",
            "subscriptionKeyParameterNames": "x",
        }
    },
    {"properties": {"path": "p", "apiVersionSetId": "/apiVersionSets/missing"}},
    {
        "properties": {
            "displayName": "O",
            "method": "GET",
            "urlTemplate": "/",
            "request": {"queryParameters": [{"name": 1}]},
            "responses": [{"statusCode": 99}],
        }
    },
    {"properties": {"displayName": "G", "type": "system"}},
    {"properties": {"displayName": "P", "subscriptionsLimit": -1, "state": "open", "approvalRequired": "no"}},
    {"properties": {"contentType": 1, "document": "x"}},
]
ENTITY_PATHS = [
    "apis/junk",
    "apis/japi/operations/op",
    "apis/japi/policies/policy",
    "apis/japi/operations/jop/policies/policy",
    "apis/japi/schemas/s",
    "apis/japi/tags/t",
    "products/junk",
    "products/jprod/apis/japi",
    "products/jprod/groups/developers",
    "products/jprod/policies/policy",
    "groups/junk",
    "groups/developers/users/juser",
    "users/junk",
    "subscriptions/junk",
    "namedValues/junk",
    "backends/junk",
    "tags/junk",
    "apiVersionSets/junk",
    "policies/policy",
]


async def test_junk_bodies_never_cause_500(node: InProc, rg: str) -> None:
    svc = await node.service(rg)
    base = node.svc_path(rg, svc)
    assert (await node.put(f"{base}/apis/japi", {"properties": {"path": "japi"}})).status_code == 201
    assert (
        await node.put(
            f"{base}/apis/japi/operations/jop",
            {"properties": {"displayName": "o", "method": "GET", "urlTemplate": "/"}},
        )
    ).status_code == 201
    assert (await node.put(f"{base}/products/jprod", {"properties": {"displayName": "p"}})).status_code == 201
    assert (
        await node.put(
            f"{base}/users/juser", {"properties": {"email": "j@x.example", "firstName": "J", "lastName": "U"}}
        )
    ).status_code == 201
    statuses: dict[int, int] = {}
    for path in ENTITY_PATHS:
        for body in JUNK:
            for method in ("PUT", "PATCH"):
                r = await node.request(method, f"{base}/{path}", json=body, headers={"If-Match": "*"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, (method, path, body, r.text)
                if r.status_code >= 400:
                    assert_arm_error(r, r.status_code)
    assert 400 in statuses


SERVICE_JUNK: list[Any] = [
    {},
    {
        "location": 5,
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {
        "location": "x" * 200,
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {"location": "w", "sku": "Developer", "properties": {"publisherEmail": "a@b.c", "publisherName": "n"}},
    {
        "location": "w",
        "sku": {"name": ["Developer"], "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": "1"},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": True},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1.5},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": 5, "publisherName": "n"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "hostnameConfigurations": "x"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "hostnameConfigurations": [5]},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "publisherEmail": "a@b.c",
            "publisherName": "n",
            "hostnameConfigurations": [{"type": "Proxy", "hostName": 5}],
        },
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "publisherEmail": "a@b.c",
            "publisherName": "n",
            "hostnameConfigurations": [{"type": "Proxy", "hostName": "a.b", "encodedCertificate": 5}],
        },
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "publisherEmail": "a@b.c",
            "publisherName": "n",
            "hostnameConfigurations": [
                {"type": "Proxy", "hostName": "a.b", "encodedCertificate": "QUJD", "certificatePassword": 5}
            ],
        },
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "publisherEmail": "a@b.c",
            "publisherName": "n",
            "hostnameConfigurations": [{"type": "Proxy", "hostName": "a.b", "encodedCertificate": "%%%"}],
        },
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {
            "publisherEmail": "a@b.c",
            "publisherName": "n",
            "certificates": [{"storeName": "Root", "encodedCertificate": ["x"]}],
        },
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "certificates": {"a": 1}},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "virtualNetworkType": ["None"]},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "customProperties": {"a": 1}},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "notificationSenderEmail": 5},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "apiVersionConstraint": "x"},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": ["x"]},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
        "identity": {"type": ["SystemAssigned"]},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
        "identity": "SystemAssigned",
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
        "tags": ["a"],
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
        "tags": {"a": 1},
    },
    {
        "location": "w",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n", "disableGateway": "no"},
    },
    {
        "location": "w\u0000",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
    },
]


async def test_junk_service_bodies_never_cause_500(node: InProc, rg: str) -> None:
    existing = await node.service(rg)
    for i, body in enumerate(SERVICE_JUNK):
        for name, method in ((f"junk{i}", "PUT"), (existing, "PUT"), (existing, "PATCH")):
            r = await node.request(method, node.svc_path(rg, name), json=body)
            assert r.status_code < 500, (method, body, r.text)
            if r.status_code >= 400:
                assert_arm_error(r, r.status_code)
            elif name != existing:
                await node.request("DELETE", node.svc_path(rg, name))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"location": 5},
        {"location": ""},
        {"location": "x" * 100},
        {"location": "w", "tags": []},
        {"location": "w", "tags": {"a": {"b": 1}}},
    ],
)
async def test_junk_resource_group_bodies(node: InProc, body: Any) -> None:
    r = await node.put(node.rg_path("junkrg"), body, api_version=RG_API)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert_arm_error(r, r.status_code)


@pytest.mark.parametrize(
    "name",
    ["a" * 91, "bad/name", "bad name", "ends.", "a*b", "ab%3F"],
)
async def test_invalid_resource_group_names(node: InProc, name: str) -> None:
    r = await node.put(node.rg_path(name), {"location": "w"}, api_version=RG_API)
    assert r.status_code in (400, 404), r.text
    assert_arm_error(r, r.status_code)


async def test_check_name_availability_validation(node: InProc) -> None:
    path = f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/checkNameAvailability"
    assert_arm_error(await node.request("POST", path, json={}), 400)
    assert_arm_error(await node.request("POST", path, json={"name": 5}), 400)
    assert_arm_error(await node.request("POST", path, json=[]), 400)
    r = await node.request("POST", path, json={"name": "x" * 51})
    assert r.status_code == 200 and r.json()["reason"] == "Invalid"


async def test_head_requests(node: InProc, rg: str, svc: str) -> None:
    base = node.svc_path(rg, svc)
    assert (await node.request("HEAD", node.rg_path(rg), api_version=RG_API)).status_code == 204
    assert (await node.request("HEAD", node.rg_path("nope-nope"), api_version=RG_API)).status_code == 404
    r = await node.request("HEAD", f"{base}/groups/developers")
    assert r.status_code == 200 and r.headers["etag"]
    assert (await node.request("HEAD", f"{base}/groups/nope")).status_code == 404
