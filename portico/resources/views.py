"""Read-only collections Azure computes from a service's entities or from the platform: all
policies, policy descriptions, issues of every API, tag resources, entities by tag, a user's
groups/subscriptions/identities, a product's subscriptions, an API's products, regions, SKUs,
network status, outbound dependencies, private link resources; and a few service-level answers
(SSO tokens, domain ownership identifier, user tokens)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from portico.arm.errors import ArmError, invalid_field
from portico.resources import kinds as K
from portico.resources.engine import EntityEngine
from portico.resources.kind_builtins import new_access_key as new_access_key
from portico.resources.references import to_absolute
from portico.store import entities as E

SKUS = ("Developer", "Basic", "Standard", "Premium", "Consumption", "Isolated", "BasicV2", "StandardV2")
SKU_CAPACITY = {"Developer": 1, "Basic": 2, "Standard": 4, "Premium": 12, "Consumption": 0, "Isolated": 12}
ARM = "Microsoft.ApiManagement/service"

# Azure's policy catalogue as listed by policyDescriptions (name, description, scopes as a bit set:
# 1 tenant, 2 product, 4 api, 8 operation).
POLICY_DESCRIPTIONS = (
    ("base", "Evaluates the policy statements of the parent scope.", 14),
    ("check-header", "Checks the presence and value of an HTTP header.", 15),
    ("choose", "Applies policy statements conditionally.", 15),
    ("cors", "Allows cross-origin requests.", 15),
    ("forward-request", "Forwards the request to the backend service.", 15),
    ("include-fragment", "Inserts a policy fragment.", 15),
    ("ip-filter", "Filters calls by caller IP address.", 15),
    ("json-to-xml", "Converts a JSON body to XML.", 15),
    ("mock-response", "Returns a mocked response.", 15),
    ("quota", "Enforces a call volume and bandwidth quota.", 6),
    ("rate-limit", "Limits the call rate per subscription.", 14),
    ("return-response", "Stops the pipeline and returns a response.", 15),
    ("rewrite-uri", "Rewrites the request URL.", 15),
    ("send-request", "Sends a request to another URL.", 15),
    ("set-backend-service", "Changes the backend service of the request.", 15),
    ("set-body", "Sets the message body.", 15),
    ("set-header", "Sets, appends or removes an HTTP header.", 15),
    ("set-method", "Changes the HTTP method of the request.", 15),
    ("set-query-parameter", "Sets or removes a query string parameter.", 15),
    ("set-status", "Sets the HTTP status code.", 15),
    ("set-variable", "Stores a value in a context variable.", 15),
    ("validate-jwt", "Requires a valid JSON Web Token.", 15),
    ("xml-to-json", "Converts an XML body to JSON.", 15),
)
_SCOPES = ((1, "Tenant"), (2, "Product"), (4, "Api"), (8, "Operation"))


def _item(svc_id: str, path: str, arm_type: str, name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{svc_id}/{path}", "type": arm_type, "name": name, "properties": props}


async def all_policies(eng: EntityEngine) -> list[dict[str, Any]]:
    out = []
    for r in await E.list_all(eng.conn, eng.store, "policy"):
        path = f"{r.parent}/policies/policy" if r.parent else "policies/policy"
        out.append(
            _item(
                eng.svc.arm_id,
                path,
                f"{ARM}/policies",
                r.name,
                {"referencePolicyId": f"{eng.svc.arm_id}/{path}", "complianceState": "Conformant"},
            )
        )
    return out


def policy_descriptions(svc_id: str, scope: str | None) -> list[dict[str, Any]]:
    want = {"tenant": 1, "product": 2, "api": 4, "operation": 8}.get((scope or "").lower(), 15)
    if scope and (scope or "").lower() not in ("tenant", "product", "api", "operation"):
        raise invalid_field("scope", "must be Tenant, Product, Api, Operation or All")
    return [
        _item(
            svc_id,
            f"policyDescriptions/{name}",
            f"{ARM}/policyDescriptions",
            name,
            {"description": text, "scope": bits},
        )
        for name, text, bits in POLICY_DESCRIPTIONS
        if bits & want
    ]


async def issues(eng: EntityEngine) -> list[dict[str, Any]]:
    kind = K.API.children["issues"]
    return [
        eng.render(kind, r.parent, r.name, r.data) for r in await E.list_all(eng.conn, eng.store, "issue")
    ]


async def _tagged(eng: EntityEngine) -> list[tuple[str, str, dict[str, Any]]]:
    """(tag name, owner path, tag data) of every tag link."""
    tags = {r.name: r.data for r in await E.list_children(eng.conn, eng.store, "tag", "")}
    return [
        (r.name, r.parent, tags[r.name])
        for r in await E.list_all(eng.conn, eng.store, "tagLink")
        if r.name in tags
    ]


async def tag_resources(eng: EntityEngine) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sid = eng.svc.arm_id
    for tag, owner, tag_data in await _tagged(eng):
        entry: dict[str, Any] = {"tag": {"id": f"{sid}/tags/{tag}", "name": tag_data.get("displayName")}}
        parts = owner.split("/")
        if parts[0] == "apis":
            api = await E.get(eng.conn, eng.store, "api", "", parts[1])
            if api is None:
                continue
            if len(parts) == 2:
                entry["api"] = {
                    **api.data,
                    "id": f"{sid}/apis/{parts[1]}",
                    "name": api.data.get("displayName"),
                }
            else:
                op = await E.get(eng.conn, eng.store, "operation", "/".join(parts[:2]), parts[3])
                if op is None:
                    continue
                entry["operation"] = {
                    "id": f"{sid}/{owner}",
                    "name": op.data.get("displayName"),
                    "apiName": api.data.get("displayName"),
                    "apiRevision": api.data.get("apiRevision"),
                    "apiVersion": api.data.get("apiVersion"),
                    "description": op.data.get("description"),
                    "method": op.data.get("method"),
                    "urlTemplate": op.data.get("urlTemplate"),
                }
        elif parts[0] == "products":
            prod = await E.get(eng.conn, eng.store, "product", "", parts[1])
            if prod is None:
                continue
            entry["product"] = {
                **prod.data,
                "id": f"{sid}/products/{parts[1]}",
                "name": prod.data.get("displayName"),
            }
        out.append(entry)
    return out


async def by_tags(eng: EntityEngine, segment: str, parent: str = "") -> list[dict[str, Any]]:
    """apisByTags / productsByTags / operationsByTags: each entity with the tag it carries (or none)."""
    kind = {"apis": K.API, "products": K.PRODUCT, "operations": K.OPERATION}[segment]
    tag_of: dict[str, list[dict[str, Any]]] = {}
    for tag, owner, tag_data in await _tagged(eng):
        tag_of.setdefault(owner, []).append(
            {"id": f"{eng.svc.arm_id}/tags/{tag}", "name": tag_data.get("displayName")}
        )
    key = {"apis": "api", "products": "product", "operations": "operation"}[segment]
    out: list[dict[str, Any]] = []
    for r in await E.list_children(eng.conn, eng.store, kind.kind, parent):
        own = f"{parent}/{segment}/{r.name}" if parent else f"{segment}/{r.name}"
        rendered = eng.render(kind, parent, r.name, r.data)
        body = {**rendered["properties"], "id": rendered["id"], "name": r.data.get("displayName")}
        tags = tag_of.get(own)
        if not tags:
            out.append({key: body})
        for tag_ref in tags or []:
            out.append({key: body, "tag": tag_ref})
    return out


async def user_groups(eng: EntityEngine, user: str) -> list[dict[str, Any]]:
    out = []
    for parent, _name in await E.names_by_kind(eng.conn, eng.store, "groupUser", user):
        gid = parent.split("/")[1]
        row = await E.get(eng.conn, eng.store, "group", "", gid)
        if row is not None:
            out.append(eng.render(K.GROUP, "", gid, row.data))
    if await E.get(eng.conn, eng.store, "user", "", user) is not None:
        # Every user is a member of the built-in developers group in Azure.
        dev = await E.get(eng.conn, eng.store, "group", "", "developers")
        if dev is not None and all(g["name"] != "developers" for g in out):
            out.append(eng.render(K.GROUP, "", "developers", dev.data))
    return out


async def subscriptions_where(eng: EntityEngine, field: str, ref: str) -> list[dict[str, Any]]:
    kind = K.TOP_LEVEL["subscriptions"]
    return [
        eng.render(kind, "", r.name, r.data)
        for r in await E.list_children(eng.conn, eng.store, "subscription", "")
        if str(r.data.get(field, "")).lower() == ref.lower()
    ]


async def api_products(eng: EntityEngine, api: str) -> list[dict[str, Any]]:
    """The products that include the API, ordered by name as Azure lists them."""
    out = []
    for parent, _name in sorted(await E.names_by_kind(eng.conn, eng.store, "productApi", api)):
        product = parent.split("/")[1]
        row = await E.get(eng.conn, eng.store, "product", "", product)
        if row is not None:
            out.append(eng.render(K.PRODUCT, "", product, row.data))
    return out


async def require(eng: EntityEngine, kind: str, name: str) -> str:
    found = await E.find_name(eng.conn, eng.store, kind, "", name)
    if found is None:
        raise ArmError(404, "ResourceNotFound", f"{kind.capitalize()} '{name}' was not found.")
    return found


async def user_identities(eng: EntityEngine, user: str) -> list[dict[str, Any]]:
    row = await E.get(eng.conn, eng.store, "user", "", user)
    assert row is not None
    return list(row.data.get("identities") or [])


def regions(location: str) -> list[dict[str, Any]]:
    return [{"name": location, "isMasterRegion": True, "isDeleted": False}]


def service_skus(current: str) -> list[dict[str, Any]]:
    # A service changes SKU within its family only: classic tiers among themselves, v2 likewise.
    family = [s for s in SKUS if s.endswith("V2") == current.endswith("V2") and s != "Consumption"]
    return [
        {
            "resourceType": ARM,
            "sku": {"name": s},
            "capacity": {
                "minimum": 1,
                "maximum": SKU_CAPACITY.get(s, 10),
                "default": 1,
                "scaleType": "none" if s == "Developer" else "automatic",
            },
        }
        for s in family
    ]


def subscription_skus(location: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "service",
            "name": s,
            "tier": s,
            "locations": [location],
            "capacity": {"minimum": 0 if s == "Consumption" else 1, "maximum": SKU_CAPACITY.get(s, 10)},
            "restrictions": [],
        }
        for s in SKUS
    ]


def network_status(location: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "location": location,
        "networkStatus": {
            "dnsServers": [],
            "connectivityStatus": [
                {
                    "name": "database",
                    "status": "success",
                    "lastUpdated": now,
                    "lastStatusChange": now,
                    "resourceType": "Database",
                    "isOptional": False,
                }
            ],
        },
    }


def private_link_resources(svc_id: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{svc_id}/privateLinkResources/Gateway",
            "name": "Gateway",
            "type": f"{ARM}/privateLinkResources",
            "properties": {
                "groupId": "Gateway",
                "requiredMembers": ["Gateway"],
                "requiredZoneNames": ["privatelink.azure-api.net"],
            },
        }
    ]


def sso_redirect(portal_url: str) -> dict[str, str]:
    return {"redirectUri": f"{portal_url}/signin-sso?token={secrets.token_urlsafe(32)}"}


def domain_ownership_identifier(subscription_id: str) -> dict[str, str]:
    digest = hashlib.sha256(f"portico-domain-ownership:{subscription_id}".encode()).hexdigest()
    return {"domainOwnershipIdentifier": base64.b64encode(bytes.fromhex(digest)).decode()}


def user_token(user: str, key: str, body: Any) -> dict[str, str]:
    """The shared access token of a user (`uid&expiry&signature`), signed with the tenant access key."""
    props = body.get("properties", body) if isinstance(body, dict) else {}
    key_type = props.get("keyType")
    if key_type not in ("primary", "secondary"):
        raise invalid_field("properties.keyType", "must be primary or secondary")
    try:
        expiry = datetime.fromisoformat(str(props.get("expiry")).replace("Z", "+00:00"))
    except ValueError:
        raise invalid_field("properties.expiry", "must be an ISO 8601 date-time") from None
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    if expiry <= datetime.now(UTC) or expiry > datetime.now(UTC) + timedelta(days=30):
        raise invalid_field("properties.expiry", "must be in the future and at most 30 days ahead")
    stamp = expiry.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    sig = base64.b64encode(
        hmac.new(key.encode(), f"{user}\n{stamp}".encode(), hashlib.sha512).digest()
    ).decode()
    return {"value": f"uid={user}&ex={stamp}&sn={sig}"}


def absolute(svc_id: str, rel: str) -> str:
    return to_absolute(svc_id, rel)


def provider_operations() -> list[dict[str, Any]]:
    nouns = sorted({k.rbac_noun for k in _all_kinds()})
    out = [_operation("Microsoft.ApiManagement/service", verb) for verb in ("read", "write", "delete")]
    for noun in nouns:
        for verb in ("read", "write", "delete"):
            out.append(_operation(f"{ARM}/{noun}", verb))
    return out


def _operation(resource: str, verb: str) -> dict[str, Any]:
    label = {"read": "Read", "write": "Create or update", "delete": "Delete"}[verb]
    noun = resource.rsplit("/", 1)[-1]
    return {
        "name": f"{resource}/{verb}",
        "isDataAction": False,
        "display": {
            "provider": "Microsoft API Management",
            "resource": noun,
            "operation": f"{label} {noun}",
            "description": f"{label} {noun} of an API Management service.",
        },
        "origin": "user,system",
    }


def _all_kinds() -> list[K.Kind]:
    out: list[K.Kind] = []
    todo = list(K.TOP_LEVEL.values())
    while todo:
        k = todo.pop()
        out.append(k)
        todo.extend(k.children.values())
    return out
