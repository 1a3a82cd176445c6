"""Validation of every entity kind under a service, over the in-process app: required fields, limits,
enums, identifier rules, defaults, references (stored relative, checked to exist) and secrets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from portico.store import entities as E
from portico.store import services as S
from tests.arm.inproc import SUB, InProc, assert_arm_error

OK_BODIES: dict[str, dict[str, Any]] = {
    "apis/a1": {"path": "a1"},
    "apis/base/operations/o1": {"displayName": "O", "method": "GET", "urlTemplate": "/"},
    "apis/base/policies/policy": {"value": "<policies><inbound /></policies>"},
    "apis/base/schemas/s1": {"contentType": "application/json", "document": {"value": "{}"}},
    "products/p1": {"displayName": "P"},
    "groups/g1": {"displayName": "G"},
    "users/u1": {"email": "u1@contoso.example", "firstName": "U", "lastName": "One"},
    "subscriptions/s1": {"scope": "/apis", "displayName": "S"},
    "namedValues/nv1": {"displayName": "nv1", "value": "v"},
    "backends/b1": {"url": "https://b.example", "protocol": "http"},
    "tags/t1": {"displayName": "T"},
    "apiVersionSets/vs1": {"displayName": "V", "versioningScheme": "Segment"},
    "policies/policy": {"value": "<policies />"},
}


class Svc:
    def __init__(self, node: InProc, rg: str, name: str) -> None:
        self.node, self.rg, self.name = node, rg, name
        self.base = node.svc_path(rg, name)
        self.arm_id = (
            f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
        )

    async def put(self, path: str, props: Any, **kw: Any) -> httpx.Response:
        body = {"properties": props} if props is not None else None
        return await self.node.request("PUT", f"{self.base}/{path}", json=body, **kw)

    async def patch(self, path: str, props: Any, if_match: str = "*") -> httpx.Response:
        return await self.node.request(
            "PATCH", f"{self.base}/{path}", json={"properties": props}, headers={"If-Match": if_match}
        )

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.node.get(f"{self.base}/{path}", **kw)

    async def delete(self, path: str, if_match: str | None = "*", **kw: Any) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match else {}
        return await self.node.request("DELETE", f"{self.base}/{path}", headers=headers, **kw)

    async def ok(self, path: str, props: Any) -> dict[str, Any]:
        r = await self.put(path, props)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    async def bad(self, path: str, props: Any, status: int = 400, field: str | None = None) -> dict[str, Any]:
        err = assert_arm_error(await self.put(path, props), status)
        if field is not None:
            assert field in err["message"], err
        return err

    async def stored(self, kind: str, parent: str, name: str) -> dict[str, Any]:
        db = self.node.rt.db
        async with db.read() as conn:
            svc = await S.get_service(conn, SUB, self.rg, self.name)
            assert svc is not None
            row = await E.get(conn, svc.active_store_id, kind, parent, name)
        assert row is not None
        return row.data


@pytest.fixture
async def s(node: InProc, rg: str, svc: str) -> Svc:
    x = Svc(node, rg, svc)
    await x.ok("apis/base", {"path": "base"})
    return x


async def test_every_kind_accepts_a_minimal_body(s: Svc) -> None:
    for path, props in OK_BODIES.items():
        r = await s.put(path, props)
        assert r.status_code == 201, (path, r.text)
        out = r.json()
        assert out["id"] == f"{s.arm_id}/{path}" and out["name"] == path.rsplit("/", 1)[1]
        assert out["type"].startswith("Microsoft.ApiManagement/service/")
        assert r.headers["etag"]
        again = await s.put(path, props)
        assert again.status_code == 200 and again.headers["etag"] != r.headers["etag"]
        got = await s.get(path)
        assert got.status_code == 200 and got.json() == again.json()


@pytest.mark.parametrize(
    ("path", "props", "field"),
    [
        # APIs
        ("apis/x", {}, "path"),
        ("apis/x", {"path": "p" * 401}, "path"),
        ("apis/x", {"path": "a?b"}, "path"),
        ("apis/x", {"path": "x", "displayName": ""}, "displayName"),
        ("apis/x", {"path": "x", "displayName": "d" * 301}, "displayName"),
        ("apis/x", {"path": "x", "serviceUrl": "u" * 2001}, "serviceUrl"),
        ("apis/x", {"path": "x", "serviceUrl": "backend.example"}, "serviceUrl"),
        ("apis/x", {"path": "x", "protocols": ["ftp"]}, "protocols"),
        ("apis/x", {"path": "x", "type": "rest"}, "type"),
        ("apis/x", {"path": "x", "apiRevision": ""}, "apiRevision"),
        ("apis/x", {"path": "x", "apiVersionSetId": "/apiVersionSets/missing"}, "apiVersionSetId"),
        ("apis/x", {"path": "x", "apiVersionSetId": "/products/p"}, "apiVersionSetId"),
        ("apis/x", {"format": "openapi+json", "value": "{}"}, "import"),
        # Operations
        ("apis/base/operations/o", {"method": "GET", "urlTemplate": "/"}, "displayName"),
        ("apis/base/operations/o", {"displayName": "O", "urlTemplate": "/"}, "method"),
        ("apis/base/operations/o", {"displayName": "O", "method": "GET"}, "urlTemplate"),
        (
            "apis/base/operations/o",
            {"displayName": "O", "method": "GET", "urlTemplate": "u" * 1001},
            "urlTemplate",
        ),
        ("apis/base/operations/o", {"displayName": "O", "method": "G E T", "urlTemplate": "/"}, "method"),
        (
            "apis/base/operations/o",
            {"displayName": "O", "method": "GET", "urlTemplate": "/", "description": "d" * 1001},
            "description",
        ),
        (
            "apis/base/operations/o",
            {
                "displayName": "O",
                "method": "GET",
                "urlTemplate": "/{id}",
                "templateParameters": [{"name": "id"}],
            },
            "type",
        ),
        (
            "apis/base/operations/o",
            {"displayName": "O", "method": "GET", "urlTemplate": "/", "responses": [{"statusCode": 42}]},
            "statusCode",
        ),
        (
            "apis/base/operations/o",
            {"displayName": "O", "method": "GET", "urlTemplate": "/", "request": {"representations": [{}]}},
            "contentType",
        ),
        # Policies
        ("apis/base/policies/policy", {}, "value"),
        ("apis/base/policies/policy", {"value": "<policies>"}, "well-formed"),
        ("apis/base/policies/policy", {"value": "<policy />"}, "root element"),
        ("apis/base/policies/policy", {"value": "<policies><inbund /></policies>"}, "inbund"),
        ("apis/base/policies/policy", {"value": "<!DOCTYPE x><policies />"}, "DOCTYPE"),
        ("apis/base/policies/policy", {"value": "<policies />", "format": "json"}, "format"),
        ("apis/base/policies/policy", {"value": "https://x/p.xml", "format": "xml-link"}, "format"),
        ("policies/policy", {"value": ""}, "value"),
        # Products
        ("products/x", {}, "displayName"),
        ("products/x", {"displayName": "d" * 301}, "displayName"),
        ("products/x", {"displayName": "P", "description": "d" * 1001}, "description"),
        ("products/x", {"displayName": "P", "state": "public"}, "state"),
        ("products/x", {"displayName": "P", "subscriptionsLimit": -1}, "subscriptionsLimit"),
        # Groups
        ("groups/x", {}, "displayName"),
        ("groups/x", {"displayName": "G", "type": "internal"}, "type"),
        ("groups/x", {"displayName": "G", "type": "system"}, "type"),
        ("groups/x", {"displayName": "G", "description": "d" * 1001}, "description"),
        # Users
        ("users/x", {"firstName": "A", "lastName": "B"}, "email"),
        ("users/x", {"email": "a@b.c", "lastName": "B"}, "firstName"),
        ("users/x", {"email": "a@b.c", "firstName": "A"}, "lastName"),
        ("users/x", {"email": "not-an-email", "firstName": "A", "lastName": "B"}, "email"),
        ("users/x", {"email": "a" * 250 + "@b.cc", "firstName": "A", "lastName": "B"}, "email"),
        ("users/x", {"email": "a@b.c", "firstName": "f" * 101, "lastName": "B"}, "firstName"),
        ("users/x", {"email": "a@b.c", "firstName": "A", "lastName": "B", "state": "gone"}, "state"),
        (
            "users/x",
            {"email": "a@b.c", "firstName": "A", "lastName": "B", "confirmation": "maybe"},
            "confirmation",
        ),
        # Subscriptions
        ("subscriptions/x", {"displayName": "S"}, "scope"),
        ("subscriptions/x", {"scope": "/apis"}, "displayName"),
        ("subscriptions/x", {"scope": "/apis", "displayName": "d" * 101}, "displayName"),
        ("subscriptions/x", {"scope": "/apis", "displayName": "S", "state": "on"}, "state"),
        ("subscriptions/x", {"scope": "/apis", "displayName": "S", "primaryKey": "k" * 257}, "primaryKey"),
        (
            "subscriptions/x",
            {"scope": "/apis", "displayName": "S", "primaryKey": "same", "secondaryKey": "same"},
            "secondaryKey",
        ),
        ("subscriptions/x", {"scope": "/products/missing", "displayName": "S"}, "scope"),
        ("subscriptions/x", {"scope": "/apis/missing", "displayName": "S"}, "scope"),
        ("subscriptions/x", {"scope": "/users/u", "displayName": "S"}, "scope"),
        ("subscriptions/x", {"scope": "/apis", "displayName": "S", "ownerId": "/users/missing"}, "ownerId"),
        (
            "subscriptions/x",
            {"scope": "/apis", "displayName": "S", "ownerId": "/groups/developers"},
            "ownerId",
        ),
        # Named values
        ("namedValues/x", {"value": "v"}, "displayName"),
        ("namedValues/x", {"displayName": "has space", "value": "v"}, "displayName"),
        ("namedValues/x", {"displayName": "n" * 257, "value": "v"}, "displayName"),
        ("namedValues/x", {"displayName": "nv", "value": "v" * 4097}, "value"),
        ("namedValues/x", {"displayName": "nv"}, "value"),
        ("namedValues/x", {"displayName": "nv", "value": "v", "tags": ["t"] * 33}, "tags"),
        # Backends
        ("backends/x", {"protocol": "http"}, "url"),
        ("backends/x", {"url": "https://b"}, "protocol"),
        ("backends/x", {"url": "https://b", "protocol": "grpc"}, "protocol"),
        ("backends/x", {"url": "b.example", "protocol": "http"}, "url"),
        ("backends/x", {"url": "https://" + "b" * 2000, "protocol": "http"}, "url"),
        ("backends/x", {"url": "https://b", "protocol": "http", "title": ""}, "title"),
        ("backends/x", {"url": "https://b", "protocol": "http", "type": "Multi"}, "type"),
        (
            "backends/x",
            {"url": "https://b", "protocol": "http", "credentials": {"authorization": {"scheme": "Basic"}}},
            "parameter",
        ),
        ("backends/x", {"url": "https://b", "protocol": "http", "proxy": {"username": "u"}}, "url"),
        (
            "backends/x",
            {"url": "https://b", "protocol": "http", "pool": {"services": [{"id": "x", "priority": 101}]}},
            "priority",
        ),
        # Tags, version sets, schemas
        ("tags/x", {}, "displayName"),
        ("tags/x", {"displayName": "t" * 161}, "displayName"),
        ("apiVersionSets/x", {"displayName": "V"}, "versioningScheme"),
        ("apiVersionSets/x", {"displayName": "V", "versioningScheme": "Path"}, "versioningScheme"),
        ("apis/base/schemas/x", {"document": {}}, "contentType"),
    ],
)
async def test_invalid_entities(s: Svc, path: str, props: dict[str, Any], field: str) -> None:
    err = await s.bad(path, props, 409 if field == "conflict" else 400, field)
    assert err["code"] in ("ValidationError", "InvalidParameters")
    assert_arm_error(await s.get(path), 404)  # nothing was stored


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("apis/{}", 256),
        ("apis/base/operations/{}", 80),
        ("products/{}", 256),
        ("groups/{}", 256),
        ("users/{}", 80),
        ("subscriptions/{}", 256),
        ("namedValues/{}", 256),
        ("backends/{}", 80),
        ("tags/{}", 80),
        ("apiVersionSets/{}", 80),
    ],
)
async def test_identifier_length_limits(s: Svc, path: str, limit: int) -> None:
    key = path.split("/{}")[0].split("/")[-1]
    props = next(v for k, v in OK_BODIES.items() if k.rsplit("/", 1)[0].endswith(key))
    if key == "apis":
        props = {"path": "p" + str(limit)}
    assert (await s.put(path.format("i" * limit), props)).status_code == 201
    err = assert_arm_error(await s.put(path.format("i" * (limit + 1)), props), 400, "ValidationError")
    assert str(limit) in err["message"]


@pytest.mark.parametrize(
    "name", ["a*b", "a%23b", "a&b", "a+b", "a:b", "a<b", "a>b", "a%3Fb", "a%25b", "a%5Cb", "a%00b", "a%0Ab"]
)
async def test_identifier_characters(s: Svc, name: str) -> None:
    r = await s.put(f"products/{name}", {"displayName": "P"})
    assert r.status_code in (400, 404), r.text
    assert_arm_error(r, r.status_code)


async def test_policy_names(s: Svc) -> None:
    await s.bad("apis/base/policies/other", {"value": "<policies />"}, 400, "policy")
    assert (await s.put("apis/base/policies/POLICY", {"value": "<policies />"})).status_code == 201
    assert (await s.get("apis/base/policies/policy")).status_code == 200


async def test_policy_header_names_are_checked(s: Svc) -> None:
    """A set-header name of 100 KB, or with characters no header name has, is a 400 naming the
    element and the attribute; the policy is not stored."""
    for name in ("X" * 100_000, "X-Bad Name"):
        xml = (
            f'<policies><inbound><set-header name="{name}" exists-action="override"><value>v</value>'
            "</set-header></inbound></policies>"
        )
        err = await s.bad("apis/base/policies/policy", {"value": xml}, 400, "set-header")
        assert "attribute 'name'" in err["message"] and len(err["message"]) < 400, err
    assert (await s.get("apis/base/policies/policy")).status_code == 404


async def test_defaults(s: Svc) -> None:
    api = (await s.ok("apis/d", {"path": "/d/"}))["properties"]
    assert api["path"] == "d" and api["displayName"] == "d" and api["protocols"] == ["https"]
    assert (
        api["subscriptionRequired"] is True
        and api["isCurrent"] is True
        and api["type"] == "http"
        and api["apiRevision"] == "1"
    )
    op = (await s.ok("apis/d/operations/o", {"displayName": "O", "method": "post", "urlTemplate": "/x"}))[
        "properties"
    ]
    assert op["method"] == "POST"
    prod = (await s.ok("products/d", {"displayName": "D"}))["properties"]
    assert prod["subscriptionRequired"] is True and prod["state"] == "notPublished"
    grp = (await s.ok("groups/d", {"displayName": "D"}))["properties"]
    assert grp["type"] == "custom" and grp["builtIn"] is False
    user = (await s.ok("users/d", {"email": "d@contoso.example", "firstName": "D", "lastName": "E"}))[
        "properties"
    ]
    assert (
        user["state"] == "active"
        and user["registrationDate"]
        and user["identities"] == [{"provider": "Basic", "id": "d@contoso.example"}]
    )
    sub = (await s.ok("subscriptions/d", {"scope": "/apis", "displayName": "D"}))["properties"]
    assert sub["state"] == "submitted" and sub["createdDate"] and "startDate" not in sub
    active = (await s.ok("subscriptions/e", {"scope": "/apis", "displayName": "E", "state": "active"}))[
        "properties"
    ]
    assert active["startDate"]
    nv = (await s.ok("namedValues/d", {"displayName": "d", "value": "v"}))["properties"]
    assert nv["secret"] is False and nv["tags"] == []
    pol = (await s.ok("policies/policy", {"value": "<policies />", "format": "rawxml"}))["properties"]
    assert pol["format"] == "xml"


async def test_unknown_and_read_only_fields_are_dropped(s: Svc) -> None:
    props = (await s.ok("products/u", {"displayName": "U", "bogus": 1, "id": "x"}))["properties"]
    assert "bogus" not in props and "id" not in props
    grp = (await s.ok("groups/u", {"displayName": "U", "builtIn": True}))["properties"]
    assert grp["builtIn"] is False


async def test_builtin_groups(s: Svc) -> None:
    names = [g["name"] for g in (await s.get("groups")).json()["value"]]
    assert names == ["administrators", "developers", "guests"]
    for g in names:
        assert_arm_error(await s.delete(f"groups/{g}"), 400, "MethodNotAllowedInBuiltInGroup")
    # Built-ins may be renamed/described but stay built-in and system.
    props = (await s.ok("groups/developers", {"displayName": "Devs"}))["properties"]
    assert props["builtIn"] is True and props["type"] == "system"
    # Another case names the same group (ARM names ignore case): no second, undeletable look-alike.
    r = await s.put("groups/Developers", {"displayName": "D"})
    assert r.status_code == 200 and r.json()["name"] == "developers"
    assert r.json()["properties"]["builtIn"] is True
    assert [g["name"] for g in (await s.get("groups")).json()["value"]] == names


async def test_secrets_are_never_returned(s: Svc) -> None:
    await s.ok(
        "users/pw",
        {"email": "pw@contoso.example", "firstName": "P", "lastName": "W", "password": "Hunter2-password"},
    )
    await s.ok(
        "subscriptions/k",
        {
            "scope": "/apis",
            "displayName": "K",
            "primaryKey": "PRIMARY-KEY-123",
            "secondaryKey": "SECONDARY-KEY-456",
        },
    )
    await s.ok("namedValues/sec", {"displayName": "sec", "value": "NV-SECRET-789", "secret": True})
    await s.ok(
        "backends/px",
        {
            "url": "https://b",
            "protocol": "http",
            "proxy": {"url": "http://proxy", "username": "u", "password": "PROXY-PW-000"},
        },
    )
    secrets = (
        "Hunter2-password",
        "PRIMARY-KEY-123",
        "SECONDARY-KEY-456",
        "NV-SECRET-789",
        "PROXY-PW-000",
        "passwordHash",
        "scrypt$",
    )
    responses = [
        await s.get(p)
        for p in (
            "users/pw",
            "users",
            "subscriptions/k",
            "subscriptions",
            "namedValues/sec",
            "namedValues",
            "backends/px",
            "backends",
            "groups/developers/users",
        )
    ]
    responses.append(await s.patch("users/pw", {"note": "n"}))
    responses.append(await s.patch("subscriptions/k", {"state": "active"}))
    responses.append(await s.patch("namedValues/sec", {"tags": ["x"]}))
    responses.append(await s.patch("backends/px", {"description": "d"}))
    for r in responses:
        assert r.status_code == 200, r.text
        for secret in secrets:
            assert secret not in r.text, (secret, r.url)
    # The secrets are kept (not lost by PATCH), and readable through the dedicated actions only.
    keys = (await s.node.request("POST", f"{s.base}/subscriptions/k/listSecrets")).json()
    assert keys == {"primaryKey": "PRIMARY-KEY-123", "secondaryKey": "SECONDARY-KEY-456"}
    assert (await s.node.request("POST", f"{s.base}/namedValues/sec/listValue")).json() == {
        "value": "NV-SECRET-789"
    }
    assert (await s.stored("user", "", "pw"))["passwordHash"].startswith("scrypt$")
    assert (await s.stored("backend", "", "px"))["proxy"]["password"] == "PROXY-PW-000"
    # A plain named value shows its value; turning it secret hides it.
    await s.ok("namedValues/plain", {"displayName": "plain", "value": "visible"})
    assert (await s.get("namedValues/plain")).json()["properties"]["value"] == "visible"
    assert "value" not in (await s.patch("namedValues/plain", {"secret": True})).json()["properties"]


async def test_subscription_keys_generated_and_regenerated(s: Svc) -> None:
    await s.ok("subscriptions/g", {"scope": "/apis", "displayName": "G"})
    url = f"{s.base}/subscriptions/g"
    k1 = (await s.node.request("POST", f"{url}/listSecrets")).json()
    assert (
        len(k1["primaryKey"]) >= 32
        and len(k1["secondaryKey"]) >= 32
        and k1["primaryKey"] != k1["secondaryKey"]
    )
    r = await s.node.request("POST", f"{url}/regeneratePrimaryKey")
    assert r.status_code == 204 and r.content == b""
    k2 = (await s.node.request("POST", f"{url}/listSecrets")).json()
    assert k2["primaryKey"] != k1["primaryKey"] and k2["secondaryKey"] == k1["secondaryKey"]
    assert (await s.node.request("POST", f"{url}/regenerateSecondaryKey")).status_code == 204
    k3 = (await s.node.request("POST", f"{url}/listSecrets")).json()
    assert k3["secondaryKey"] != k2["secondaryKey"] and k3["primaryKey"] == k2["primaryKey"]
    # A PUT without keys keeps the existing ones.
    await s.ok("subscriptions/g", {"scope": "/apis", "displayName": "G2"})
    assert (await s.node.request("POST", f"{url}/listSecrets")).json() == k3
    assert_arm_error(await s.node.request("POST", f"{s.base}/subscriptions/none/listSecrets"), 404)


async def test_references_are_stored_relative_and_rendered_absolute(s: Svc) -> None:
    await s.ok("products/starter", {"displayName": "Starter"})
    await s.ok("users/owner", {"email": "o@contoso.example", "firstName": "O", "lastName": "W"})
    await s.ok("apiVersionSets/vs", {"displayName": "VS", "versioningScheme": "Segment"})
    for sid, scope, owner in (
        ("rel", "/products/starter", "/users/owner"),
        ("abs", f"{s.arm_id}/products/starter", f"{s.arm_id}/users/owner"),
        (
            "other-svc",
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.ApiManagement/service/z/products/starter",
            "users/owner",
        ),
        ("upper", "/PRODUCTS/starter", "/users/owner"),
    ):
        out = (await s.ok(f"subscriptions/{sid}", {"scope": scope, "displayName": sid, "ownerId": owner}))[
            "properties"
        ]
        assert out["scope"] == f"{s.arm_id}/products/starter", sid
        assert out["ownerId"] == f"{s.arm_id}/users/owner", sid
        data = await s.stored("subscription", "", sid)
        assert (data["scope"], data["ownerId"]) == ("/products/starter", "/users/owner")
    api = (
        await s.ok(
            "apis/v1",
            {"path": "versioned", "apiVersion": "v1", "apiVersionSetId": f"{s.arm_id}/apiVersionSets/vs"},
        )
    )["properties"]
    assert api["apiVersionSetId"] == f"{s.arm_id}/apiVersionSets/vs"
    assert (await s.stored("api", "", "v1"))["apiVersionSetId"] == "/apiVersionSets/vs"
    assert (await s.get("subscriptions/rel")).json()["properties"]["scope"] == f"{s.arm_id}/products/starter"


async def test_links_require_existing_targets(s: Svc) -> None:
    await s.ok("products/p", {"displayName": "P"})
    await s.ok("tags/t", {"displayName": "T"})
    assert_arm_error(await s.put("products/p/apis/missing", None), 404)
    assert_arm_error(await s.put("products/p/groups/missing", None), 404)
    assert_arm_error(await s.put("groups/developers/users/missing", None), 404)
    assert_arm_error(await s.put("apis/base/tags/missing", None), 404)
    assert_arm_error(await s.put("products/missing/apis/base", None), 404)
    assert_arm_error(await s.put("apis/missing/tags/t", None), 404)
    r = await s.put("products/p/apis/base", None)
    assert r.status_code == 201 and r.json()["properties"]["path"] == "base"
    assert r.json()["id"] == f"{s.arm_id}/products/p/apis/base"
    assert (await s.put("products/p/apis/base", None)).status_code == 200
    assert (await s.delete("products/p/apis/base", if_match=None)).status_code == 200
    assert (await s.delete("products/p/apis/base", if_match=None)).status_code == 204
    assert_arm_error(await s.patch("apis/base/tags/t", {}), 404)


async def test_patch_and_delete_preconditions(s: Svc) -> None:
    r = await s.put("tags/e", {"displayName": "E"})
    etag = r.headers["etag"]
    assert_arm_error(
        await s.node.request("PATCH", f"{s.base}/tags/e", json={"properties": {"displayName": "F"}}),
        400,
        "IfMatchRequired",
    )
    assert_arm_error(await s.delete("tags/e", if_match=None), 400, "IfMatchRequired")
    assert_arm_error(
        await s.patch("tags/e", {"displayName": "F"}, if_match='"stale"'), 412, "PreconditionFailed"
    )
    assert_arm_error(await s.delete("tags/e", if_match="stale"), 412)
    p = await s.patch("tags/e", {"displayName": "F"}, if_match=etag)
    assert p.status_code == 200 and p.json()["properties"]["displayName"] == "F"
    assert_arm_error(
        await s.put("tags/e", {"displayName": "G"}, headers={"If-Match": etag}), 412
    )  # etag moved on
    assert (
        await s.put("tags/e", {"displayName": "G"}, headers={"If-Match": p.headers["etag"]})
    ).status_code == 200
    assert_arm_error(
        await s.put("tags/new", {"displayName": "N"}, headers={"If-Match": "abc"}), 412
    )  # If-Match on a missing entity
    assert_arm_error(await s.patch("tags/none", {"displayName": "N"}), 404)
    assert_arm_error(await s.patch("tags/e", {"displayName": ""}), 400)
    assert (await s.delete("tags/none")).status_code == 204


async def test_subscription_and_user_cascades(s: Svc) -> None:
    await s.ok("products/p", {"displayName": "P"})
    await s.ok("users/u", {"email": "u@contoso.example", "firstName": "U", "lastName": "V"})
    await s.ok("subscriptions/s", {"scope": "/products/p", "displayName": "S", "ownerId": "/users/u"})
    assert (await s.put("groups/developers/users/u", None)).status_code == 201
    assert_arm_error(await s.delete("users/u"), 409, "EntityHasSubscriptions")
    assert (await s.delete("users/u", params={"deleteSubscriptions": "true"})).status_code == 204
    assert_arm_error(await s.get("subscriptions/s"), 404)
    assert (await s.get("groups/developers/users")).json()["value"] == []


async def test_operation_cascade_and_api_path_rules(s: Svc) -> None:
    await s.ok("apis/base/operations/o", {"displayName": "O", "method": "GET", "urlTemplate": "/"})
    await s.ok("apis/base/operations/o/policies/policy", {"value": "<policies />"})
    await s.ok("tags/t", {"displayName": "T"})
    assert (await s.put("apis/base/operations/o/tags/t", None)).status_code == 201
    assert (await s.delete("apis/base/operations/o")).status_code == 200
    assert await s.ok("apis/base/operations/o", {"displayName": "O", "method": "GET", "urlTemplate": "/"})
    missing = assert_arm_error(await s.get("apis/base/operations/o/policies/policy"), 404)
    assert missing["message"].startswith("Policy 'policy' was not found"), missing
    assert (await s.get("apis/base/operations/o/tags")).json()["value"] == []
    # Two APIs on one path conflict, unless versioned.
    assert_arm_error(await s.put("apis/dup", {"path": "BASE"}), 409, "PathAlreadyUsed")
    assert (
        await s.put("apis/base", {"path": "base", "displayName": "same api, same path"})
    ).status_code == 200


async def test_service_level_policy_and_collections(s: Svc) -> None:
    assert (await s.get("policies")).json()["value"] == []
    await s.ok("policies/policy", {"value": "<policies><inbound /></policies>"})
    listed = (await s.get("policies")).json()
    assert [p["name"] for p in listed["value"]] == ["policy"] and listed["count"] == 1
    assert listed["value"][0]["id"] == f"{s.arm_id}/policies/policy"


async def test_non_ascii_names_match_ignoring_case(s: Svc) -> None:
    """Case is ignored beyond ASCII too, by one rule: another case of 'Ärger' or 'ΟΔΟΣ' updates the
    same entity instead of creating a second one."""
    for name, other in (("Ärger", "äRGER"), ("ΟΔΟΣ", "οδοσ")):
        await s.ok(f"apis/{name}", {"path": f"p{len(name)}{ord(name[0])}"})
        r = await s.put(f"apis/{other}", {"path": f"p{len(name)}{ord(name[0])}", "displayName": "Again"})
        assert r.status_code == 200 and r.json()["name"] == name, r.text
        assert (await s.get(f"apis/{other}")).json()["properties"]["displayName"] == "Again"
    names = [v["name"] for v in (await s.get("apis")).json()["value"]]
    assert sorted(n for n in names if n != "base") == sorted(["Ärger", "ΟΔΟΣ"])


async def test_names_match_ignoring_case(s: Svc) -> None:
    """ARM names ignore case: another case reads, updates and deletes the same entity, and
    references are stored under the entity's own name (the gateway keys APIs by lower-cased name)."""
    await s.ok("apis/CaseApi", {"path": "caseapi"})
    r = await s.get("apis/caseapi")
    assert r.status_code == 200 and r.json()["name"] == "CaseApi"
    r = await s.put("apis/CASEAPI", {"path": "caseapi", "displayName": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "CaseApi"  # an update, not a second API
    names = [v["name"] for v in (await s.get("apis")).json()["value"]]
    assert names.count("CaseApi") == 1 and "CASEAPI" not in names
    r = await s.put("apis/caseAPI/operations/Op1", {"displayName": "O", "method": "GET", "urlTemplate": "/"})
    assert r.status_code == 201 and r.json()["id"].endswith("/apis/CaseApi/operations/Op1")
    assert (await s.get("apis/CASEAPI/operations/op1")).json()["name"] == "Op1"
    r = await s.put("subscriptions/casesub", {"scope": "/apis/caseapi", "displayName": "S"})
    assert r.status_code == 201 and r.json()["properties"]["scope"].endswith("/apis/CaseApi")
    await s.ok("products/CaseProd", {"displayName": "P"})
    r = await s.put("products/caseprod/apis/CASEAPI", None)
    assert r.status_code == 201 and r.json()["name"] == "CaseApi"
    listed = (await s.get("products/CaseProd/apis")).json()["value"]
    assert [i["name"] for i in listed] == ["CaseApi"]
    assert (await s.delete("apis/caseapi/operations/OP1")).status_code == 200
    assert (await s.get("apis/CaseApi/operations/Op1")).status_code == 404
    assert (await s.delete("apis/nosuch/operations/op")).status_code == 204  # owner gone: nothing
