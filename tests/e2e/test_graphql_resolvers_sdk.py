"""GraphQL resolvers and their policies, and the products of an API, driven by the real Azure SDK
(`graph_ql_api_resolver`, `graph_ql_api_resolver_policy`, `api_product`)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M

from tests.e2e.conftest import Env
from tests.e2e.kinds_support import etag_of

pytestmark = pytest.mark.slow

POLICY = (
    "<http-data-source><http-request><set-method>GET</set-method>"
    "<set-url>https://data.example/users</set-url></http-request></http-data-source>"
)


def _api(env: Env, svc: str, api: str, api_type: str | None) -> None:
    params = M.ApiCreateOrUpdateParameter(
        path=api, display_name=api.upper(), service_url="https://b.example/graphql", api_type=api_type
    )
    env.client.api.begin_create_or_update(env.rg, svc, api, params).result()


def test_resolver_crud_paging_and_policy(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    _api(env, svc, "gql", "graphql")
    created = c.graph_ql_api_resolver.create_or_update(
        rg, svc, "gql", "users", M.ResolverContract(display_name="Users", path="Query/users", description="d")
    )
    assert (created.name, created.display_name, created.path, created.description) == (
        "users",
        "Users",
        "Query/users",
        "d",
    )
    assert created.type == "Microsoft.ApiManagement/service/apis/resolvers"
    assert created.id.endswith(f"/service/{svc}/apis/gql/resolvers/users")

    got = c.graph_ql_api_resolver.get(rg, svc, "GQL", "users")
    assert got.path == "Query/users"
    etag = etag_of(c.graph_ql_api_resolver.get_entity_tag, rg, svc, "gql", "users")
    assert c.graph_ql_api_resolver.get_entity_tag(rg, svc, "gql", "users") is True

    updated = c.graph_ql_api_resolver.update(
        rg, svc, "gql", "users", etag, M.ResolverUpdateContract(description="changed")
    )
    assert (updated.display_name, updated.path, updated.description) == ("Users", "Query/users", "changed")
    with pytest.raises(HttpResponseError) as stale:
        c.graph_ql_api_resolver.update(
            rg, svc, "gql", "users", etag, M.ResolverUpdateContract(description="stale")
        )
    assert stale.value.status_code == 412

    for i in range(3):
        c.graph_ql_api_resolver.create_or_update(
            rg, svc, "gql", f"r{i}", M.ResolverContract(display_name=f"R{i}", path=f"Query/f{i}")
        )
    pages = list(c.graph_ql_api_resolver.list_by_api(rg, svc, "gql", top=2).by_page())
    assert len(pages) == 2
    assert sorted(r.name for p in pages for r in p) == ["r0", "r1", "r2", "users"]
    only = list(c.graph_ql_api_resolver.list_by_api(rg, svc, "gql", filter="displayName eq 'R1'"))
    assert [r.name for r in only] == ["r1"]

    # Required and well-formed properties.
    for bad, field in (
        (M.ResolverContract(display_name="X"), "path"),
        (M.ResolverContract(path="Query/x"), "displayName"),
        (M.ResolverContract(display_name="X", path="users"), "path"),
    ):
        with pytest.raises(HttpResponseError) as exc:
            c.graph_ql_api_resolver.create_or_update(rg, svc, "gql", "bad", bad)
        assert exc.value.status_code == 400 and field in str(exc.value.message)

    # The resolver's policy.
    pol = c.graph_ql_api_resolver_policy.create_or_update(
        rg, svc, "gql", "users", "policy", M.PolicyContract(value=POLICY, format="rawxml")
    )
    assert pol.name == "policy" and pol.type == "Microsoft.ApiManagement/service/apis/resolvers/policies"
    got_pol = c.graph_ql_api_resolver_policy.get(rg, svc, "gql", "users", "policy", format="rawxml")
    assert "<set-url>https://data.example/users</set-url>" in got_pol.value
    assert [p.name for p in c.graph_ql_api_resolver_policy.list_by_resolver(rg, svc, "gql", "users")] == [
        "policy"
    ]
    assert c.graph_ql_api_resolver_policy.get_entity_tag(rg, svc, "gql", "users", "policy") is True
    with pytest.raises(HttpResponseError) as exc:
        c.graph_ql_api_resolver_policy.create_or_update(
            rg, svc, "gql", "r0", "policy", M.PolicyContract(value="<policies><inbound>", format="rawxml")
        )
    assert exc.value.status_code == 400
    # A resolver's policy is its data source: anything else, or a data source the gateway cannot
    # run, is refused rather than stored unused.
    no_url = "<http-data-source><http-request><set-method>GET</set-method></http-request></http-data-source>"
    sections = "<policies><inbound><base /></inbound></policies>"
    for bad, named in ((no_url, "set-url"), (sections, "http-data-source")):
        with pytest.raises(HttpResponseError) as exc:
            c.graph_ql_api_resolver_policy.create_or_update(
                rg, svc, "gql", "r0", "policy", M.PolicyContract(value=bad, format="rawxml")
            )
        assert exc.value.status_code == 400 and named in str(exc.value.message)
    with pytest.raises(ResourceNotFoundError):
        c.graph_ql_api_resolver_policy.create_or_update(
            rg, svc, "gql", "nosuch", "policy", M.PolicyContract(value=POLICY, format="rawxml")
        )
    c.graph_ql_api_resolver_policy.delete(rg, svc, "gql", "users", "policy", "*")
    assert list(c.graph_ql_api_resolver_policy.list_by_resolver(rg, svc, "gql", "users")) == []

    # Deleting a resolver takes its policy; deleting the API takes its resolvers.
    c.graph_ql_api_resolver_policy.create_or_update(
        rg, svc, "gql", "r0", "policy", M.PolicyContract(value=POLICY, format="rawxml")
    )
    c.graph_ql_api_resolver.delete(rg, svc, "gql", "r0", "*")
    with pytest.raises(ResourceNotFoundError):
        c.graph_ql_api_resolver.get(rg, svc, "gql", "r0")
    c.graph_ql_api_resolver.create_or_update(
        rg, svc, "gql", "r0", M.ResolverContract(display_name="R0", path="Query/f0")
    )
    assert list(c.graph_ql_api_resolver_policy.list_by_resolver(rg, svc, "gql", "r0")) == []
    c.graph_ql_api_resolver_policy.create_or_update(
        rg, svc, "gql", "r1", "policy", M.PolicyContract(value=POLICY, format="rawxml")
    )
    c.api.begin_delete(rg, svc, "gql", "*").result()
    _api(env, svc, "gql", "graphql")
    assert list(c.graph_ql_api_resolver.list_by_api(rg, svc, "gql")) == []
    all_policies = env.http.get(f"{env.svc_path(svc)}/allPolicies?api-version=2024-05-01").json()["value"]
    assert not any("/resolvers/" in p["id"] for p in all_policies)


def test_resolvers_only_on_graphql_apis(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    _api(env, svc, "rest", None)
    with pytest.raises(HttpResponseError) as exc:
        c.graph_ql_api_resolver.create_or_update(
            rg, svc, "rest", "users", M.ResolverContract(display_name="Users", path="Query/users")
        )
    assert exc.value.status_code == 400
    assert "http" in str(exc.value.message) and "GraphQL" in str(exc.value.message)
    with pytest.raises(ResourceNotFoundError):
        c.graph_ql_api_resolver.create_or_update(
            rg, svc, "nosuch", "users", M.ResolverContract(display_name="Users", path="Query/users")
        )


def test_products_of_an_api(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    _api(env, svc, "echo", None)
    _api(env, svc, "other", None)
    for pid in ("p1", "p2", "p3"):
        c.product.create_or_update(rg, svc, pid, M.ProductContract(display_name=pid.upper()))
    for pid in ("p1", "p3"):
        c.product_api.create_or_update(rg, svc, pid, "echo")
    c.product_api.create_or_update(rg, svc, "p2", "other")

    products = list(c.api_product.list_by_apis(rg, svc, "ECHO"))
    assert [p.name for p in products] == ["p1", "p3"]
    assert products[0].display_name == "P1" and products[0].id.endswith(f"/service/{svc}/products/p1")
    pages = list(c.api_product.list_by_apis(rg, svc, "echo", top=1).by_page())
    assert [[p.name for p in page] for page in pages] == [["p1"], ["p3"]]
    filtered = list(c.api_product.list_by_apis(rg, svc, "echo", filter="startswith(displayName, 'P3')"))
    assert [p.name for p in filtered] == ["p3"]
    with pytest.raises(HttpResponseError) as exc:
        list(c.api_product.list_by_apis(rg, svc, "echo", filter="displayName eq"))
    assert exc.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        list(c.api_product.list_by_apis(rg, svc, "nosuch"))

    c.product_api.delete(rg, svc, "p1", "echo")
    assert [p.name for p in c.api_product.list_by_apis(rg, svc, "echo")] == ["p3"]
    c.product.delete(rg, svc, "p3", "*")
    assert list(c.api_product.list_by_apis(rg, svc, "echo")) == []
