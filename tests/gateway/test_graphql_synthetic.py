"""Synthetic GraphQL APIs end to end: an API, its schema, resolvers and their `<http-data-source>`
policies created through the Azure SDK, then queries through the gateway resolved by calling a
real backend (nested fields, arguments, the parent object, a mutation, a failing data source),
and a pass-through GraphQL API still forwarded to its serviceUrl."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, GatewayEnv, eventually, make_service, unique
from tests.gateway.test_policies import doc, until

pytestmark = pytest.mark.slow

SDL = """
type Query { call(id: Int!, tag: String): Call  broken: String  plain: Plain }
type Mutation { create(name: String!): Call }
type Call { method: String  path: String  query: Params  body: String  next: Call }
type Params { tag: String  from: String }
type Plain { method: String }
"""


def data_source(request: str, response: str = "") -> str:
    tail = f"<http-response>{response}</http-response>" if response else ""
    return f"<http-data-source><http-request>{request}</http-request>{tail}</http-data-source>"


def _resolver(gw: GatewayEnv, api: str, name: str, path: str, policy: str) -> None:
    c = gw.client
    c.graph_ql_api_resolver.create_or_update(
        RG, gw.service, api, name, M.ResolverContract(display_name=name, path=path)
    )
    c.graph_ql_api_resolver_policy.create_or_update(
        RG, gw.service, api, name, "policy", M.PolicyContract(value=policy, format="rawxml")
    )


def test_synthetic_graphql_api_resolves_through_data_sources(gw: GatewayEnv, backend: str) -> None:
    c, api = gw.client, unique("gql")
    c.api.begin_create_or_update(
        RG,
        gw.service,
        api,
        M.ApiCreateOrUpdateParameter(
            path=api, display_name="Synthetic", api_type="graphql", protocols=["http", "https"]
        ),
    ).result()
    c.api_schema.begin_create_or_update(
        RG,
        gw.service,
        api,
        "graphql",
        M.SchemaContract(content_type="application/vnd.ms-azure-apim.graphql.schema", value=SDL),
    ).result()
    get = "<set-method>GET</set-method>"
    _resolver(
        gw,
        api,
        "call",
        "Query/call",
        data_source(
            get + '<set-url>@($"' + backend + '/svc/calls/{context.GraphQL.Arguments["id"]}'
            '?tag={context.GraphQL.Arguments["tag"]}")</set-url>'
        ),
    )
    _resolver(
        gw,
        api,
        "next",
        "Call/next",
        data_source(
            get + '<set-url>@($"' + backend + '/svc/next?from={context.GraphQL.Parent["method"]}")</set-url>'
        ),
    )
    _resolver(
        gw, api, "broken", "Query/broken", data_source(get + f"<set-url>{backend}/status/500</set-url>")
    )
    _resolver(
        gw,
        api,
        "create",
        "Mutation/create",
        data_source(
            f"<set-method>POST</set-method><set-url>{backend}/svc/create</set-url>"
            '<set-header name="Content-Type" exists-action="override"><value>application/json</value></set-header>'
            "<set-body>@(context.GraphQL.Arguments.ToString())</set-body>"
        ),
    )
    _resolver(
        gw,
        api,
        "plain",
        "Query/plain",
        data_source(
            get + f"<set-url>{backend}/svc/plain</set-url>", '<set-body>{"method": "mocked"}</set-body>'
        ),
    )
    key = gw.subscription(unique("gk"), f"/apis/{api}")
    query = '{ call(id: 7, tag: "x") { method path query { tag } next { path query { from } } } plain { method } }'
    r = until(
        gw,
        f"/{api}",
        key,
        lambda r: r.status_code == 200 and "data" in r.json(),
        method="POST",
        json={"query": query},
    )
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {
        "data": {
            "call": {
                "method": "GET",
                "path": "/svc/calls/7",
                "query": {"tag": "x"},
                "next": {"path": "/svc/next", "query": {"from": "GET"}},
            },
            "plain": {"method": "mocked"},
        }
    }
    # variables, GET with ?query=, a mutation whose body is built from its arguments
    r = gw.call(
        "POST",
        f"/{api}",
        key=key,
        json={"query": "query($i: Int!) { call(id: $i) { path } }", "variables": {"i": 8}},
    )
    assert r.json() == {"data": {"call": {"path": "/svc/calls/8"}}}
    r = gw.get(f"/{api}", key=key, params={"query": "{ call(id: 9) { path } }"})
    assert (r.status_code, r.json()) == (200, {"data": {"call": {"path": "/svc/calls/9"}}})
    r = gw.call(
        "POST", f"/{api}", key=key, json={"query": 'mutation { create(name: "Cy") { method path body } }'}
    )
    assert r.json()["data"]["create"] == {"method": "POST", "path": "/svc/create", "body": '{"name":"Cy"}'}
    # a data source answering 500 is a field error; the other fields still resolve
    r = gw.call("POST", f"/{api}", key=key, json={"query": "{ broken call(id: 1) { path } }"})
    body = r.json()
    assert r.status_code == 200 and body["data"] == {"broken": None, "call": {"path": "/svc/calls/1"}}
    [error] = body["errors"]
    assert error["path"] == ["broken"] and "500" in error["message"]
    # request errors: no data, 400
    r = gw.call("POST", f"/{api}", key=key, json={"query": "{ call(id: 1) { nosuch } }"})
    assert r.status_code == 400 and "data" not in r.json() and "nosuch" in r.json()["errors"][0]["message"]
    r = gw.call(
        "POST", f"/{api}", key=key, content=b"{ call(", headers={"Content-Type": "application/graphql"}
    )
    assert r.status_code == 400 and r.json()["errors"][0]["locations"]
    # the API's policies run around the execution; the subscription key is still required
    gw.policy(
        doc(
            outbound='<base /><set-header name="X-Api" exists-action="override"><value>1</value></set-header>'
        ),
        api=api,
    )
    r = until(
        gw,
        f"/{api}",
        key,
        lambda r: r.headers.get("x-api") == "1",
        method="POST",
        json={"query": "{ plain { method } }"},
    )
    assert r.json() == {"data": {"plain": {"method": "mocked"}}}
    assert gw.call("POST", f"/{api}", json={"query": "{ plain { method } }"}).status_code == 401
    # a resolver policy the gateway cannot honour is refused when saved, naming the element
    with pytest.raises(HttpResponseError) as exc:
        c.graph_ql_api_resolver_policy.create_or_update(
            RG,
            gw.service,
            api,
            "plain",
            "policy",
            M.PolicyContract(
                value=data_source(
                    get + f"<set-url>{backend}/x</set-url>",
                    '<publish-event><targets><graphql-subscription id="s" /></targets></publish-event>',
                ),
                format="rawxml",
            ),
        )
    assert exc.value.status_code == 400 and "publish-event" in str(exc.value.message)
    # deleting a resolver's policy leaves the field to its parent's property (here: none)
    c.graph_ql_api_resolver_policy.delete(RG, gw.service, api, "plain", "policy", if_match="*")
    until(
        gw,
        f"/{api}",
        key,
        lambda r: r.json()["data"] == {"plain": None},
        method="POST",
        json={"query": "{ plain { method } }"},
    )


def test_pass_through_graphql_api_is_forwarded(gw: GatewayEnv, backend: str) -> None:
    api = unique("gqlpt")
    gw.client.api.begin_create_or_update(
        RG,
        gw.service,
        api,
        M.ApiCreateOrUpdateParameter(
            path=api,
            display_name="Pass",
            api_type="graphql",
            service_url=backend + "/upstream/graphql",
            protocols=["http", "https"],
        ),
    ).result()
    key = gw.subscription(unique("pk"), f"/apis/{api}")
    r = until(gw, f"/{api}", key, lambda r: r.status_code == 200, method="POST", json={"query": "{ a }"})
    echoed = r.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/upstream/graphql"
    assert json.loads(echoed["body"]) == {"query": "{ a }"}
    # validate-graphql-request checks requests against the API's schema before they are forwarded
    gw.client.api_schema.begin_create_or_update(
        RG,
        gw.service,
        api,
        "graphql",
        M.SchemaContract(
            content_type="application/vnd.ms-azure-apim.graphql.schema", value="type Query { a: String }"
        ),
    ).result()
    gw.policy(doc(inbound='<base /><validate-graphql-request max-size="1000" max-depth="2" />'), api=api)
    r = until(gw, f"/{api}", key, lambda r: r.status_code == 400, method="POST", json={"query": "{ b }"})
    assert "data" not in r.json() and "'b'" in r.json()["errors"][0]["message"]
    r = gw.call("POST", f"/{api}", key=key, json={"query": "{ a }"})
    assert r.status_code == 200 and json.loads(r.json()["body"]) == {"query": "{ a }"}


def test_resolvers_survive_backup_and_restore_into_the_gateway(gw: GatewayEnv, backend: str) -> None:
    """Resolvers and their policies are configuration: a restore into another service serves them."""
    c, api = gw.client, unique("gqlbr")
    c.api.begin_create_or_update(
        RG,
        gw.service,
        api,
        M.ApiCreateOrUpdateParameter(path=api, display_name="B", api_type="graphql", protocols=["http"]),
    ).result()
    c.api_schema.begin_create_or_update(
        RG,
        gw.service,
        api,
        "graphql",
        M.SchemaContract(content_type="application/vnd.ms-azure-apim.graphql.schema", value=SDL),
    ).result()
    _resolver(
        gw,
        api,
        "call",
        "Query/call",
        data_source(
            '<set-method>GET</set-method><set-url>@($"'
            + backend
            + '/svc/restored/{context.GraphQL.Arguments["id"]}")</set-url>'
        ),
    )
    key = gw.subscription(unique("bk"), f"/apis/{api}")
    account = unique("gqlbackups")
    storage_key = (
        gw.server.cli("storage", "account", "create", account).stdout.strip().splitlines()[-1].strip()
    )
    gw.server.cli("storage", "container", "create", account, "backups")
    params = M.ApiManagementServiceBackupRestoreParameters(
        storage_account=account, container_name="backups", backup_name="gql", access_key=storage_key
    )
    c.api_management_service.begin_backup(RG, gw.service, params).result()
    target = unique("gqlrestored")
    make_service(gw.server, target)
    c.api_management_service.begin_restore(RG, target, params).result()
    host = f"{target}.{DOMAIN}"
    query = {"query": "{ call(id: 5) { path } }"}

    def served() -> Any:
        r = gw.call("POST", f"/{api}", key=key, host=host, json=query)
        assert r.status_code == 200, r.text
        return r

    r = eventually(served, timeout=5)
    assert r.json() == {"data": {"call": {"path": "/svc/restored/5"}}}
