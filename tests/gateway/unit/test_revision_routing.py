"""Routing decisions for API revisions: the compiled configuration of a service (its API, version
set and operation rows) and the API a request path resolves to, as Azure addresses revisions
(`;rev=n` appended to the API's URL) and refuses offline ones."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from portico.gateway.config import PolicyCompiling, ServiceConfig
from portico.gateway.expressions import compile_expression
from portico.gateway.jwks import JwksCache
from portico.gateway.keys import _open_product
from portico.gateway.policies.limits import Counters
from portico.gateway.routing import Router, addresses, build_api
from tests.gateway.unit.harness import FakeBackend, request

Rows = list[tuple[str, str, str, Any]]


def compiled(rows: Rows) -> ServiceConfig:
    row = SimpleNamespace(
        id=1, active_store_id=1, name="svc", etag="e", location="West Europe", properties={}
    )
    svc = ServiceConfig(PolicyCompiling(Counters(), JwksCache()), row)
    svc.load_routing([(kind, parent, name, orjson.dumps(data)) for kind, parent, name, data in rows])
    return svc


def api_rows(name: str, path: str, rev: str, **props: Any) -> Rows:
    current = ";rev=" not in name
    data = {"path": path, "apiRevision": rev, "isCurrent": current, "subscriptionRequired": False, **props}
    op = {"method": "GET", "urlTemplate": "/items/{id}", "displayName": "item"}
    return [("api", "", name, data), ("operation", f"apis/{name}", "get-item", op)]


def resolved(
    svc: ServiceConfig, path: str, query: str = "", headers: dict[str, str] | None = None
) -> tuple[str, str] | None:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    hit = svc.router.resolve(path, query, raw)
    return None if hit is None else (hit[0].name, hit[1])


def version_set(scheme: str) -> Rows:
    props = {"displayName": "vs", "versioningScheme": scheme, "versionHeaderName": "Api-Version"}
    return [("apiVersionSet", "", "vs", {**props, "versionQueryName": "api-version"})]


def test_unversioned_revisions_and_the_current_one() -> None:
    svc = compiled(api_rows("echo", "echo", "1") + api_rows("echo;rev=2", "echo", "2"))
    assert resolved(svc, "/echo/items/7") == ("echo", "/items/7")
    assert resolved(svc, "/echo;rev=2/items/7") == ("echo;rev=2", "/items/7")
    assert resolved(svc, "/ECHO;REV=2/items/7") == ("echo;rev=2", "/items/7")  # paths ignore case
    assert resolved(svc, "/echo%3Brev=2/items/7") == ("echo;rev=2", "/items/7")
    # the current revision answers on its own revision URL too; an unknown revision nowhere
    assert resolved(svc, "/echo;rev=1/items/7") == ("echo", "/items/7")
    assert resolved(svc, "/echo;rev=3/items/7") is None
    rev2 = svc.apis["echo;rev=2"]
    assert (rev2.path, rev2.current, rev2.base_id) == ("echo", False, "echo")
    assert svc.apis["echo"].current


def test_offline_revision_is_not_served_but_the_current_one_always_is() -> None:
    rows = api_rows("echo", "echo", "1", isOnline=False) + api_rows("echo;rev=2", "echo", "2", isOnline=False)
    rows += api_rows("echo;rev=3", "echo", "3", isOnline=True)
    svc = compiled(rows)
    assert resolved(svc, "/echo/items/7") == ("echo", "/items/7")
    assert resolved(svc, "/echo;rev=2/items/7") is None
    assert "echo;rev=2" not in svc.apis
    assert resolved(svc, "/echo;rev=3/items/7") == ("echo;rev=3", "/items/7")


def test_revision_of_a_root_api() -> None:
    svc = compiled(api_rows("root", "", "1") + api_rows("root;rev=2", "", "2"))
    assert resolved(svc, "/items/7") == ("root", "/items/7")
    assert resolved(svc, "/;rev=2/items/7") == ("root;rev=2", "/items/7")


def test_segment_scheme_revision_follows_the_version_segment() -> None:
    vs = {"apiVersionSetId": "/apiVersionSets/vs"}
    rows = version_set("Segment")
    rows += api_rows("orders-v1", "orders", "1", apiVersion="v1", **vs)
    rows += api_rows("orders-v1;rev=2", "orders", "2", apiVersion="v1", **vs)
    rows += api_rows("orders-v2", "orders", "1", apiVersion="v2", **vs)
    rows += api_rows("orders", "orders", "1", **vs)  # the original, without a version
    rows += api_rows("orders;rev=4", "orders", "4", **vs)
    svc = compiled(rows)
    assert resolved(svc, "/orders/v1/items/7") == ("orders-v1", "/items/7")
    assert resolved(svc, "/orders/v1;rev=2/items/7") == ("orders-v1;rev=2", "/items/7")
    assert resolved(svc, "/orders/V1;Rev=2/items/7") == ("orders-v1;rev=2", "/items/7")
    assert resolved(svc, "/orders/v1;rev=1/items/7") == ("orders-v1", "/items/7")
    # v2 has no revision 2: the original (unversioned) API takes it, and has no such operation
    assert resolved(svc, "/orders/v2;rev=2/items/7") == ("orders", "/v2;rev=2/items/7")
    # revision 2 of v1 is not where an unversioned API's revision would be
    assert resolved(svc, "/orders;rev=2/v1/items/7") is None
    assert resolved(svc, "/orders/items/7") == ("orders", "/items/7")
    assert resolved(svc, "/orders;rev=4/items/7") == ("orders;rev=4", "/items/7")


@pytest.mark.parametrize("scheme", ["Header", "Query"])
def test_header_and_query_scheme_revision_is_on_the_path_with_the_version_beside(scheme: str) -> None:
    vs = {"apiVersionSetId": "/apiVersionSets/vs"}
    rows = version_set(scheme)
    rows += api_rows("orders-v1", "orders", "1", apiVersion="v1", **vs)
    rows += api_rows("orders-v1;rev=2", "orders", "2", apiVersion="v1", **vs)
    rows += api_rows("orders-v2", "orders", "1", apiVersion="v2", **vs)
    svc = compiled(rows)

    def ask(path: str, version: str | None) -> tuple[str, str] | None:
        if version is None:
            return resolved(svc, path)
        if scheme == "Header":
            return resolved(svc, path, headers={"Api-Version": version})
        return resolved(svc, path, query=f"api-version={version}")

    assert ask("/orders/items/7", "v1") == ("orders-v1", "/items/7")
    assert ask("/orders;rev=2/items/7", "v1") == ("orders-v1;rev=2", "/items/7")
    assert ask("/orders;rev=2/items/7", "v2") is None
    assert ask("/orders;rev=2/items/7", None) is None
    assert ask("/orders;rev=1/items/7", "v2") == ("orders-v2", "/items/7")


def test_offline_revision_of_a_versioned_api() -> None:
    vs = {"apiVersionSetId": "/apiVersionSets/vs"}
    rows = version_set("Segment")
    rows += api_rows("orders-v1", "orders", "1", apiVersion="v1", **vs)
    rows += api_rows("orders-v1;rev=2", "orders", "2", apiVersion="v1", isOnline=False, **vs)
    svc = compiled(rows)
    assert resolved(svc, "/orders/v1;rev=2/items/7") is None
    assert resolved(svc, "/orders/v1/items/7") == ("orders-v1", "/items/7")


def test_addresses() -> None:
    cur = build_api("a", {"path": "p", "apiRevision": "3", "apiVersion": "V1"})
    rev = build_api("a;rev=4", {"path": "p", "apiRevision": "4", "apiVersion": "V1"})
    assert addresses(cur, None) == [("p", "v1"), ("p;rev=3", "v1")]
    assert addresses(rev, "Segment") == [("p", "v1;rev=4")]
    assert addresses(rev, "Header") == [("p;rev=4", "v1")]
    # a router without version sets ignores the version
    router = Router([rev], {})
    assert router.resolve("/p;rev=4/x", "", []) == (rev, "/x")


def test_revision_shares_its_api_products_and_subscriptions() -> None:
    rows = api_rows("echo", "echo", "1", subscriptionRequired=True)
    rows += api_rows("echo;rev=2", "echo", "2", subscriptionRequired=True)
    rows.append(
        ("product", "", "open", {"displayName": "Open", "state": "published", "subscriptionRequired": False})
    )
    rows.append(("productApi", "products/open", "echo", {}))
    svc = compiled(rows)
    product = _open_product(svc, svc.apis["echo;rev=2"])  # what a request without a key gets
    assert product is not None and product.name == "open"


def test_policy_expressions_see_the_revision() -> None:
    svc = compiled(api_rows("echo", "echo", "1") + api_rows("echo;rev=2", "echo", "2"))
    seen = []
    for path in ("/echo/items/7", "/echo;rev=2/items/7"):
        ctx = request(svc, FakeBackend(), path=path)
        hit = svc.router.resolve(path, "", [])
        assert hit is not None
        ctx.api = hit[0]
        expr = 'context.Api.Path + " " + context.Api.Revision + " " + context.Api.IsCurrentRevision'
        seen.append(compile_expression(f"@({expr})").evaluate(ctx))
    assert seen == ["/echo 1 True", "/echo 2 False"]
