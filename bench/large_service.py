"""The BRIEF's "large service", written straight into a Portico database (benchmark set-up only)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from portico.secrets_box import SecretBox
from portico.store.db import Database
from portico.store.schema import entities, services, stores
from portico.store.sealing import seal_json

# BRIEF "Goals": 1,000 APIs, 20,000 operations, 1,000 API policies, 200 products, 50 groups,
# 100,000 users, 200,000 subscriptions, 5,000 named values, 500 backends, 100 tags.
FULL = {
    "apis": 1000,
    "operations_per_api": 20,
    "products": 200,
    "groups": 50,
    "users": 100_000,
    "subscriptions_per_user": 2,
    "named_values": 5000,
    "backends": 500,
    "tags": 100,
}

POLICY = (
    '<policies><inbound><base /><set-header name="x-request-source" exists-action="override"><value>portico</value>'
    '</set-header><rate-limit calls="100" renewal-period="60" /><set-backend-service base-url="https://backend-{i}.contoso.net" />'
    '</inbound><backend><base /></backend><outbound><base /><set-header name="x-powered-by" exists-action="delete" /></outbound>'
    "<on-error><base /></on-error></policies>"
)


def scaled(factor: float) -> dict[str, int]:
    return {
        k: (v if k.endswith("per_api") or k.endswith("per_user") else max(1, int(v * factor)))
        for k, v in FULL.items()
    }


def _row(
    store: int, kind: str, parent: str, name: str, data: dict[str, Any], display: str | None = None
) -> dict[str, Any]:
    return {
        "store_id": store,
        "kind": kind,
        "parent": parent,
        "name": name,
        "display_name": display,
        "etag": secrets.token_hex(8),
        "data": orjson.dumps(data).decode(),
    }


def rows(store: int, size: dict[str, int]) -> Iterator[dict[str, Any]]:
    for i in range(size["apis"]):
        api = f"api-{i:05d}"
        yield _row(
            store,
            "api",
            "",
            api,
            {
                "path": f"svc{i}/v1",
                "displayName": f"Service {i} API",
                "serviceUrl": f"https://backend-{i}.contoso.net/api",
                "protocols": ["https"],
                "description": f"Business API number {i} of the large benchmark service.",
                "subscriptionRequired": True,
                "apiRevision": "1",
                "isCurrent": True,
                "type": "http",
                "subscriptionKeyParameterNames": {
                    "header": "Ocp-Apim-Subscription-Key",
                    "query": "subscription-key",
                },
            },
            f"Service {i} API",
        )
        yield _row(store, "policy", f"apis/{api}", "policy", {"value": POLICY.format(i=i), "format": "xml"})
        for j in range(size["operations_per_api"]):
            method = ("GET", "POST", "PUT", "DELETE")[j % 4]
            yield _row(
                store,
                "operation",
                f"apis/{api}",
                f"op-{j:03d}",
                {
                    "displayName": f"Operation {j}",
                    "method": method,
                    "urlTemplate": f"/resources{j}/{{id}}",
                    "templateParameters": [{"name": "id", "type": "string", "required": True}],
                    "description": f"Operation {j} of API {i}",
                    "responses": [{"statusCode": 200, "description": "OK"}],
                },
                f"Operation {j}",
            )
    for p in range(size["products"]):
        yield _row(
            store,
            "product",
            "",
            f"product-{p:04d}",
            {
                "displayName": f"Product {p}",
                "description": "A product of the benchmark",
                "subscriptionRequired": True,
                "approvalRequired": False,
                "state": "published",
            },
            f"Product {p}",
        )
        for k in range(5):
            yield _row(
                store, "productApi", f"products/product-{p:04d}", f"api-{(p * 5 + k) % size['apis']:05d}", {}
            )
    for g in range(size["groups"]):
        yield _row(
            store,
            "group",
            "",
            f"group-{g:03d}",
            {"displayName": f"Group {g}", "description": "Partner group", "type": "custom", "builtIn": False},
            f"Group {g}",
        )
    for gid, name in (
        ("administrators", "Administrators"),
        ("developers", "Developers"),
        ("guests", "Guests"),
    ):
        yield _row(store, "group", "", gid, {"displayName": name, "builtIn": True, "type": "system"}, name)
    for u in range(size["users"]):
        uid = f"user-{u:06d}"
        yield _row(
            store,
            "user",
            "",
            uid,
            {
                "email": f"{uid}@example.com",
                "firstName": "Test",
                "lastName": f"User {u}",
                "state": "active",
                "registrationDate": "2026-01-01T00:00:00Z",
                "identities": [{"provider": "Basic", "id": f"{uid}@example.com"}],
                "passwordHash": "scrypt$" + secrets.token_hex(16) + "$" + secrets.token_hex(32),
            },
        )
        for s in range(size["subscriptions_per_user"]):
            sid = f"sub-{u:06d}-{s}"
            yield _row(
                store,
                "subscription",
                "",
                sid,
                {
                    "scope": f"/products/product-{(u + s) % size['products']:04d}",
                    "displayName": sid,
                    "ownerId": f"/users/{uid}",
                    "state": "active",
                    "primaryKey": secrets.token_hex(16),
                    "secondaryKey": secrets.token_hex(16),
                    "createdDate": "2026-01-01T00:00:00Z",
                    "startDate": "2026-01-01T00:00:00Z",
                },
                sid,
            )
    for n in range(size["named_values"]):
        yield _row(
            store,
            "namedValue",
            "",
            f"nv-{n:05d}",
            {
                "displayName": f"nv-{n:05d}",
                "value": secrets.token_urlsafe(24),
                "secret": n % 2 == 0,
                "tags": [],
            },
            f"nv-{n:05d}",
        )
    for b in range(size["backends"]):
        yield _row(
            store,
            "backend",
            "",
            f"backend-{b:04d}",
            {
                "url": f"https://backend-{b}.contoso.net/api",
                "protocol": "http",
                "title": f"Backend {b}",
                "tls": {"validateCertificateChain": True, "validateCertificateName": True},
            },
            None,
        )
    for t in range(size["tags"]):
        yield _row(store, "tag", "", f"tag-{t:03d}", {"displayName": f"Tag {t}"}, f"Tag {t}")


async def seed(db_url: str, service: str, size: dict[str, int], box: SecretBox | None = None) -> int:
    """`box`: the server's secrets box, to store the secrets sealed as the server would."""
    db = Database(db_url)
    count = 0
    try:
        async with db.write() as conn:
            store = (
                await conn.execute(
                    select(services.c.active_store_id).where(services.c.name_key == service.lower())
                )
            ).scalar_one()
            # Load like a restore does: the store is not active while it fills, so the gateway's
            # change-log triggers stay out of the way (one bump per row is quadratic on PostgreSQL).
            await conn.execute(update(stores).where(stores.c.id == store).values(state="staging"))
            await conn.execute(entities.delete().where(entities.c.store_id == store))
            batch: list[dict[str, Any]] = []
            for r in rows(store, size):
                if box is not None:
                    r["data"] = seal_json(box, r["kind"], r["parent"], r["name"], r["data"])
                batch.append(r)
                if len(batch) == 10_000:
                    await conn.execute(insert(entities), batch)
                    count += len(batch)
                    batch = []
            if batch:
                await conn.execute(insert(entities), batch)
                count += len(batch)
            await conn.execute(update(stores).where(stores.c.id == store).values(state="active"))
    finally:
        await db.close()
    return count
