"""Helpers of the backup/restore end-to-end tests: populate a service, snapshot it, seed it in bulk."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
from typing import Any

import httpx
import orjson
from sqlalchemy import insert, select, update

from portico.dr.drill import CHILDREN, COLLECTIONS, GRANDCHILDREN
from tests.support.server import PorticoServer

API = "2024-05-01"
SUB = "00000000-0000-0000-0000-000000000001"


class Rest:
    """Plain HTTPS calls with a bearer token (what the SDK does, without its models)."""

    def __init__(self, server: PorticoServer, sub: str = SUB) -> None:
        self.server = server
        self.sub = sub
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=server.ca),
            headers={"Authorization": f"Bearer {server.token()}"},
            timeout=60,
        )

    def url(self, path: str) -> str:
        return f"{self.server.url}/subscriptions/{self.sub}/{path.lstrip('/')}"

    def svc(self, rg: str, name: str, rest: str = "") -> str:
        return self.url(
            f"resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"
            + (f"/{rest}" if rest else "")
        )

    def call(
        self,
        method: str,
        url: str,
        body: Any = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
        **kw: Any,
    ) -> httpx.Response:
        params = {"api-version": API} if "api-version=" not in url else None
        r = self.http.request(method, url, params=params, json=body, **kw)
        assert r.status_code in expect, f"{method} {url} -> {r.status_code} {r.text[:500]}"
        return r

    def group(self, rg: str) -> None:
        self.call(
            "PUT", self.url(f"resourcegroups/{rg}") + "?api-version=2021-04-01", {"location": "westeurope"}
        )

    def service(
        self, rg: str, name: str, sku: str = "Developer", capacity: int = 1, **props: Any
    ) -> dict[str, Any]:
        self.group(rg)
        body = {
            "location": "westeurope",
            "sku": {"name": sku, "capacity": capacity},
            "properties": {"publisherEmail": "ops@contoso.com", "publisherName": "Contoso", **props},
        }
        return self.call("PUT", self.svc(rg, name), body).json()

    def put(self, rg: str, name: str, rest: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.call("PUT", self.svc(rg, name, rest), {"properties": props or {}})
        return r.json() if r.content else {}

    def wait(self, location: str, timeout: float = 60) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(location)
            if r.status_code != 202:
                return r
            time.sleep(0.1)
        raise AssertionError(f"operation {location} did not finish in {timeout}s")

    def status(self, location: str) -> dict[str, Any]:
        return dict(self.http.get(location.replace("/operationresults/", "/operationstatuses/")).json())


def populate(rest: Rest, rg: str, name: str) -> None:
    """A service with one of everything, links and secrets included."""
    p = lambda sub, props=None: rest.put(rg, name, sub, props)  # noqa: E731
    p("apiVersionSets/vs1", {"displayName": "Orders", "versioningScheme": "Segment"})
    p(
        "apis/echo",
        {
            "path": "echo",
            "displayName": "Echo",
            "serviceUrl": "http://127.0.0.1:9/echo",
            "protocols": ["https"],
        },
    )
    p(
        "apis/orders-v1",
        {
            "path": "orders",
            "displayName": "Orders v1",
            "apiVersion": "v1",
            "apiVersionSetId": "/apiVersionSets/vs1",
            "serviceUrl": "http://127.0.0.1:9/orders",
        },
    )
    p(
        "apis/echo/operations/get-item",
        {
            "displayName": "Get item",
            "method": "GET",
            "urlTemplate": "/items/{id}",
            "templateParameters": [{"name": "id", "type": "string", "required": True}],
        },
    )
    p(
        "apis/echo/operations/post-item",
        {"displayName": "Post item", "method": "POST", "urlTemplate": "/items"},
    )
    p(
        "policies/policy",
        {
            "value": '<policies><inbound><set-header name="x-global" exists-action="override"><value>1</value></set-header></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>'
        },
    )
    p(
        "apis/echo/policies/policy",
        {
            "value": "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
        },
    )
    p(
        "apis/echo/operations/get-item/policies/policy",
        {
            "value": "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
        },
    )
    p(
        "apis/echo/schemas/s1",
        {
            "contentType": "application/vnd.oai.openapi.components+json",
            "document": {"components": {"schemas": {"Item": {"type": "object"}}}},
        },
    )
    p("products/starter", {"displayName": "Starter", "state": "published", "subscriptionRequired": True})
    p("products/starter/apis/echo")
    p("products/starter/groups/developers")
    p(
        "products/starter/policies/policy",
        {
            "value": "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
        },
    )
    p("groups/partners", {"displayName": "Partners", "description": "External partners"})
    p(
        "users/alice",
        {"email": "alice@contoso.com", "firstName": "Alice", "lastName": "Doe", "password": "P@ssw0rd!"},
    )
    p("users/bob", {"email": "bob@contoso.com", "firstName": "Bob", "lastName": "Roe", "state": "blocked"})
    p("groups/partners/users/alice")
    p(
        "subscriptions/alice-starter",
        {
            "scope": "/products/starter",
            "displayName": "Alice starter",
            "ownerId": "/users/alice",
            "state": "active",
        },
    )
    p(
        "subscriptions/all-apis",
        {
            "scope": "/apis",
            "displayName": "All APIs",
            "state": "active",
            "primaryKey": "pk-all-apis-0001",
            "secondaryKey": "sk-all-apis-0001",
        },
    )
    p(
        "subscriptions/echo-only",
        {"scope": "/apis/echo", "displayName": "Echo only", "ownerId": "/users/bob", "state": "suspended"},
    )
    p("namedValues/plain", {"displayName": "plain", "value": "hello"})
    p("namedValues/secret", {"displayName": "secret", "value": "s3cr3t-value", "secret": True})
    p(
        "backends/b1",
        {
            "url": "https://backend.contoso.com/api",
            "protocol": "http",
            "title": "Backend 1",
            "credentials": {"header": {"x-key": ["abc"]}},
            "tls": {"validateCertificateChain": True, "validateCertificateName": True},
        },
    )
    p("tags/public", {"displayName": "Public"})
    p("apis/echo/tags/public")
    p("products/starter/tags/public")
    p("apis/echo/operations/get-item/tags/public")


def _list(rest: Rest, url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    r = rest.call("GET", url + "?api-version=2024-05-01&$top=1000").json()
    items += r["value"]
    while r.get("nextLink"):
        r = rest.http.get(r["nextLink"]).json()
        items += r["value"]
    return items


def snapshot(rest: Rest, rg: str, name: str) -> dict[str, Any]:
    """Every entity of a service, with ids made relative and secrets fetched through their actions."""
    base = rest.svc(rg, name)
    out: dict[str, Any] = {}
    for coll in COLLECTIONS:
        for item in _list(rest, f"{base}/{coll}"):
            path = f"{coll}/{item['name']}"
            out[path] = item["properties"]
            for child in CHILDREN.get(coll, []):
                for sub in _list(rest, f"{base}/{path}/{child}"):
                    out[f"{path}/{child}/{sub['name']}"] = sub["properties"]
                    if coll == "apis" and child == "operations":
                        for grand in GRANDCHILDREN[("apis", "operations")]:
                            for g in _list(rest, f"{base}/{path}/operations/{sub['name']}/{grand}"):
                                out[f"{path}/operations/{sub['name']}/{grand}/{g['name']}"] = g["properties"]
            if coll == "subscriptions" and not item["name"].startswith(
                "bulk-"
            ):  # bulk rows: keys compared by listing below
                out[path + "#secrets"] = rest.call("POST", f"{base}/{path}/listSecrets").json()
            if coll == "namedValues":
                out[path + "#value"] = rest.call("POST", f"{base}/{path}/listValue").json()
    text = json.dumps(out, sort_keys=True).replace(
        base.split("/subscriptions/", 1)[1].join(["/subscriptions/", ""]), "<svc>"
    )
    return dict(json.loads(text))


# --- bulk seeding straight into the database (test set-up for large services) ------------------------
async def _seed(db_url: str, service: str, users: int, subs_per_user: int) -> None:
    from portico.store.db import Database
    from portico.store.schema import entities, services, stores

    db = Database(db_url)
    try:
        async with db.write() as conn:
            store = (
                await conn.execute(
                    select(services.c.active_store_id).where(services.c.name_key == service.lower())
                )
            ).scalar_one()
            # Loaded as a restore loads (store not active meanwhile), then switched back on.
            await conn.execute(update(stores).where(stores.c.id == store).values(state="staging"))
            rows: list[dict[str, Any]] = []
            for i in range(users):
                uid = f"bulk-user-{i:06d}"
                rows.append(
                    {
                        "store_id": store,
                        "kind": "user",
                        "parent": "",
                        "name": uid,
                        "display_name": None,
                        "etag": secrets.token_hex(8),
                        "data": orjson.dumps(
                            {
                                "email": f"{uid}@example.com",
                                "firstName": "Bulk",
                                "lastName": f"User {i}",
                                "state": "active",
                                "registrationDate": "2026-01-01T00:00:00Z",
                                "identities": [{"provider": "Basic", "id": f"{uid}@example.com"}],
                            }
                        ).decode(),
                    }
                )
                for j in range(subs_per_user):
                    sid = f"bulk-sub-{i:06d}-{j}"
                    rows.append(
                        {
                            "store_id": store,
                            "kind": "subscription",
                            "parent": "",
                            "name": sid,
                            "display_name": sid,
                            "etag": secrets.token_hex(8),
                            "data": orjson.dumps(
                                {
                                    "scope": "/apis",
                                    "displayName": sid,
                                    "ownerId": f"/users/{uid}",
                                    "state": "active",
                                    "primaryKey": secrets.token_hex(16),
                                    "secondaryKey": secrets.token_hex(16),
                                    "createdDate": "2026-01-01T00:00:00Z",
                                }
                            ).decode(),
                        }
                    )
                if len(rows) >= 5000:
                    await conn.execute(insert(entities), rows)
                    rows = []
            if rows:
                await conn.execute(insert(entities), rows)
            await conn.execute(update(stores).where(stores.c.id == store).values(state="active"))
    finally:
        await db.close()


def seed_bulk(server: PorticoServer, service: str, users: int, subs_per_user: int = 2) -> None:
    url = server.env.get("PORTICO_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir / 'portico.db'}"
    asyncio.run(_seed(url, service, users, subs_per_user))
