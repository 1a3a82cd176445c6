"""Synthetic GraphQL: resolver policies compiled and validated, and queries executed against a
schema with data sources behind a fake backend (no server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.gql import DataSource, GraphqlEndpoint, graphql_endpoints, validate_data_source
from portico.gateway.gql.executor import (
    GraphqlRequest,
    RequestError,
    execute_request,
    read_request,
    schema_of,
)
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext
from portico.gateway.policies.xmltree import PolicyDocumentError
from portico.gateway.proxy import request_headers
from portico.gateway.routing import build_api
from tests.gateway.unit.harness import request, service, subscription

SDL = """
type Query { user(id: Int!): User  users: [User]  version: String  broken: String  slow: String }
type Mutation { makeUser(name: String!): User }
type User { id: Int!  name: String  team: Team  posts(limit: Int): [Post] }
type Team { name: String }
type Post { title: String }
"""

USERS = {1: {"id": 1, "name": "Ann", "team": {"name": "core"}}, 2: {"id": 2, "name": "Bob", "team": None}}


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class DataBackend:
    """A fake data service behind the backend seam, answering by URL."""

    calls: list[Call] = field(default_factory=list)

    def _answer(self, ctx: Context) -> None:
        query = ctx.current_query()
        url = ctx.backend_base + ctx.backend_suffix + ("?" + query if query else "")
        headers = {n.decode(): v.decode() for n, v in request_headers(ctx)}
        self.calls.append(Call(ctx.method, url, headers, ctx.request_body))
        path = url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        status, body = 200, b""
        if path == "users":
            body = orjson.dumps(list(USERS.values()))
        elif path.startswith("users/") and path.endswith("/posts"):
            uid = int(path.split("/")[1])
            body = orjson.dumps([{"title": f"p{uid}-{i}"} for i in range(3)])
        elif path.startswith("users/"):
            user = USERS.get(int(path.split("/")[1]))
            status, body = (200, orjson.dumps(user)) if user else (404, b"")
        elif path == "create":
            body = orjson.dumps({"id": 3, "name": orjson.loads(ctx.request_body or b"{}")["name"]})
        elif path == "empty":
            body = b"  "  # no content: the field is null
        elif path == "version":
            body = b"v1.2"  # not JSON: the field gets the text
        else:
            status = 500
        h = HeaderMap()
        h.set("Content-Type", ["application/json"])
        ctx.response = Response(status, h, body)

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109
        if "slow" in ctx.backend_base:
            await asyncio.sleep(0.05)
        self._answer(ctx)

    def forward_nowait(self, ctx: Context, timeout: float | None, done: Any) -> None:
        self._answer(ctx)
        done(None)


def ds(request_xml: str, response_xml: str = "", backend_xml: str = "") -> str:
    return (
        f"<http-data-source><http-request>{request_xml}</http-request>{backend_xml}"
        f"{'<http-response>' + response_xml + '</http-response>' if response_xml else ''}</http-data-source>"
    )


def get(url: str) -> str:
    return ds(f"<set-method>GET</set-method><set-url>{url}</set-url>")


RESOLVERS = {
    ("Query", "users"): get("http://data.test/users"),
    ("Query", "user"): get('@($"http://data.test/users/{context.GraphQL.Arguments["id"]}")'),
    ("Query", "version"): get("http://data.test/version"),
    ("Query", "broken"): get("http://data.test/fails"),
    ("User", "posts"): ds(
        '<set-method>GET</set-method><set-url>@($"http://data.test/users/{context.GraphQL.Parent["id"]}/posts")</set-url>'
        '<set-header name="X-Caller" exists-action="override"><value>@(context.Subscription.Id)</value></set-header>'
    ),
    ("Mutation", "makeUser"): ds(
        "<set-method>POST</set-method><set-url>http://data.test/create</set-url>"
        '<set-header name="Content-Type" exists-action="override"><value>application/json</value></set-header>'
        '<set-body>@("{\\"name\\": \\"" + context.GraphQL.Arguments["name"] + "\\"}")</set-body>'
    ),
}


def endpoint(resolvers: dict[tuple[str, str], str] | None = None) -> GraphqlEndpoint:
    cc = CompileContext(scope="test")
    compiled: dict[tuple[str, str], DataSource | str] = {
        k: DataSource(v, cc) for k, v in (resolvers or RESOLVERS).items()
    }
    return GraphqlEndpoint(schema_of(SDL), compiled)


async def run(query: str, variables: dict[str, Any] | None = None, **kw: Any) -> tuple[int, Any, DataBackend]:
    svc, be = service(), DataBackend()
    ctx = request(svc, be, method="POST", path="/echo", sub=subscription())
    status, doc = await execute_request(
        kw.get("ep") or endpoint(), ctx, be, GraphqlRequest(query, variables, kw.get("op"))
    )
    return status, doc, be


async def test_nested_fields_arguments_and_parent() -> None:
    status, doc, be = await run("{ users { id name team { name } posts(limit: 2) { title } } }")
    assert status == 200 and "errors" not in doc
    ann, bob = doc["data"]["users"]
    assert ann == {
        "id": 1,
        "name": "Ann",
        "team": {"name": "core"},
        "posts": [{"title": f"p1-{i}"} for i in range(3)],
    }
    assert bob["team"] is None and bob["posts"][0] == {"title": "p2-0"}
    urls = sorted(c.url for c in be.calls)
    assert urls == [
        "http://data.test/users",
        "http://data.test/users/1/posts",
        "http://data.test/users/2/posts",
    ]
    posts_call = next(c for c in be.calls if c.url.endswith("/1/posts"))
    assert posts_call.headers["x-caller"] == "sub1"  # the client's context is readable, not forwarded
    assert "ocp-apim-subscription-key" not in posts_call.headers and posts_call.method == "GET"


async def test_variables_mutation_and_text_answers() -> None:
    status, doc, _ = await run("query($id: Int!) { user(id: $id) { name } version }", {"id": 2})
    assert (status, doc) == (200, {"data": {"user": {"name": "Bob"}, "version": "v1.2"}})
    status, doc, be = await run('mutation { makeUser(name: "Cy") { id name } }')
    assert (status, doc["data"]) == (200, {"makeUser": {"id": 3, "name": "Cy"}})
    assert be.calls[0].method == "POST" and orjson.loads(be.calls[0].body or b"") == {"name": "Cy"}


async def test_data_source_errors_are_field_errors() -> None:
    status, doc, _ = await run("{ version broken user(id: 9) { name } }")
    assert status == 200
    assert doc["data"] == {"version": "v1.2", "broken": None, "user": None}
    messages = {tuple(e["path"]): e["message"] for e in doc["errors"]}
    assert "status 500" in messages[("broken",)] and "status 404" in messages[("user",)]
    assert doc["errors"][0]["locations"]


async def test_request_errors_answer_400_without_data() -> None:
    for query in ("{ users { ", "{ nosuch }", "{ user { name } }"):
        status, doc, be = await run(query)
        assert status == 400 and "data" not in doc and doc["errors"][0]["message"], query
        assert be.calls == []
    status, doc, _ = await run("query($id: Int!) { user(id: $id) { name } }", {"id": "x"})
    assert status == 400 and "data" not in doc
    status, doc, _ = await run("query A { version } query B { users { id } }")
    assert status == 400 and "operationName" in doc["errors"][0]["message"]
    status, doc, _ = await run("query A { version } query B { users { id } }", op="A")
    assert (status, doc) == (200, {"data": {"version": "v1.2"}})


async def test_fields_without_resolver_and_broken_resolvers() -> None:
    ep = endpoint({("Query", "users"): get("http://data.test/users")})
    ep.resolvers[("Query", "version")] = "named value(s) x not found"
    status, doc, _ = await run("{ users { name } slow version }", ep=ep)
    assert status == 200 and doc["data"] == {
        "users": [{"name": "Ann"}, {"name": "Bob"}],
        "slow": None,
        "version": None,
    }
    assert "cannot run: named value(s) x not found" in doc["errors"][0]["message"]
    status, doc, _ = await run("{ version }", ep=GraphqlEndpoint(None))
    assert status == 500 and "no GraphQL schema" in doc["errors"][0]["message"]


async def test_response_steps_and_relative_urls() -> None:
    svc = service(backends={"data": {"url": "http://data.test"}})
    be = DataBackend()
    ep = GraphqlEndpoint(
        schema_of(SDL),
        {
            ("Query", "version"): DataSource(
                ds(
                    '<set-backend-service backend-id="data" /><set-method>GET</set-method><set-url>/version</set-url>',
                    '<set-body>@("v" + context.Response.StatusCode)</set-body>',
                    '<backend><forward-request timeout="5" /></backend>',
                ),
                CompileContext(scope="t", backends=svc.backends),
            )
        },
    )
    ctx = request(svc, be, method="POST", path="/echo")
    status, doc = await execute_request(ep, ctx, be, GraphqlRequest("{ version }"))
    assert (status, doc) == (200, {"data": {"version": "v200"}})
    assert be.calls[0].url == "http://data.test/version"


@pytest.mark.parametrize(
    ("xml", "named"),
    [
        ("<policies><inbound /></policies>", "http-data-source"),
        ("<sql-data-source />", "sql-data-source"),
        (ds("<set-method>GET</set-method>"), "set-url"),
        (ds("<set-url>http://x.test/</set-url>"), "set-method"),
        (ds("<set-method>GET</set-method><set-url>/rel</set-url>"), "set-url"),
        (
            ds(
                '<set-method>GET</set-method><set-url>http://x.test</set-url><set-body template="jinja">{}</set-body>'
            ),
            "liquid",
        ),
        (
            ds(
                '<set-method>GET</set-method><set-url>http://x.test</set-url><authentication-managed-identity resource="r" />'
            ),
            "authentication-managed-identity",
        ),
        (
            ds(
                "<set-method>GET</set-method><set-url>http://x.test</set-url>"
                '<xml-to-json kind="direct" apply="always" consider-accept-header="false" />'
            ),
            "xml-to-json",
        ),
        (
            ds(
                "<set-method>GET</set-method><set-url>http://x.test</set-url>",
                '<json-to-xml apply="sometimes" />',
            ),
            "apply",
        ),
        (
            ds(
                '<set-method>GET</set-method><set-url>http://x.test</set-url><rate-limit calls="1" renewal-period="1" />'
            ),
            "rate-limit",
        ),
        (ds("<set-method>GET</set-method><set-url>@(context.GraphQL.Nope)</set-url>"), "Nope"),
        ("<http-data-source><http-response /><http-request /></http-data-source>", "out of order"),
    ],
)
def test_unsupported_documents_are_refused_naming_the_element(xml: str, named: str) -> None:
    with pytest.raises(PolicyDocumentError) as exc:
        validate_data_source(xml)
    assert named in str(exc.value)


def test_supported_document_validates() -> None:
    validate_data_source(
        ds(
            '<set-backend-service base-url="http://b.test" /><set-method>GET</set-method>'
            '<set-url>@($"/u/{context.GraphQL.Arguments["id"]}")</set-url>'
            '<set-header name="A" exists-action="override"><value>1</value></set-header>'
            '<authentication-certificate certificate-id="c1" />',
            '<set-header name="X" exists-action="delete" /><set-body>@(context.Response.StatusCode.ToString())</set-body>',
            '<backend><forward-request timeout="10" /></backend>',
        )
    )


async def test_response_conversions_of_a_data_source() -> None:
    """xml-to-json, json-to-xml and find-and-replace on a resolver's answer (as API Management
    allows in <http-response>); consider-accept-header reads the client's Accept header."""
    steps = (
        '<json-to-xml apply="content-type-json" />'  # the client asks for JSON: left as it is
        '<json-to-xml apply="content-type-json" consider-accept-header="false" />'
        '<xml-to-json kind="direct" apply="always" consider-accept-header="false" />'
        '<json-to-xml apply="always" consider-accept-header="false" />'
        '<find-and-replace from="Ann" to="Anna" />'
    )
    ep = GraphqlEndpoint(
        schema_of(SDL),
        {
            ("Query", "version"): DataSource(
                ds("<set-method>GET</set-method><set-url>http://data.test/users/1</set-url>", steps),
                CompileContext(),
            )
        },
    )
    svc, be = service(), DataBackend()
    ctx = request(svc, be, method="POST", path="/echo", headers={"Accept": "application/json"})
    status, doc = await execute_request(ep, ctx, be, GraphqlRequest("{ version }"))
    assert status == 200 and "errors" not in doc, doc
    assert doc["data"]["version"] == (
        "<Document><id>1</id><name>Anna</name><team><name>core</name></team></Document>"
    )


async def test_graphql_requests_over_http() -> None:
    svc, be = service(), DataBackend()
    post = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    post.request_body = b'{"query": "{ version }", "variables": null, "operationName": null}'
    assert (await read_request(post, 1000)) == GraphqlRequest("{ version }")
    raw = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/graphql"})
    raw.request_body = b"{ users { id } }"
    assert (await read_request(raw, 1000)).query == "{ users { id } }"
    got = request(
        svc, be, path="/echo", query="query=query%20Q(%24a%3AInt)%7Bversion%7D&variables=%7B%22a%22%3A1%7D"
    )
    assert await read_request(got, 1000) == GraphqlRequest("query Q($a:Int){version}", {"a": 1})
    bad = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    for body in (b"[]", b"{}", b"nope", b'{"query": "{x}", "variables": 3}'):
        bad.request_body = body
        with pytest.raises(RequestError) as refused:
            await read_request(bad, 1000)
        assert refused.value.status == 400
    mutation = request(svc, be, path="/echo", query="query=mutation%7BmakeUser(name%3A%22a%22)%7Bid%7D%7D")
    status, _doc = await execute_request(endpoint(), mutation, be, await read_request(mutation, 1000))
    assert status == 405 and be.calls == []


async def test_backend_seam_answers_json() -> None:
    svc, be = service(), DataBackend()
    ctx = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    ctx.request_body = b'{"query": "{ users { name } }"}'
    await endpoint().backend(be).forward(ctx, None)
    assert ctx.response is not None and ctx.response.status == 200
    assert ctx.response.header_map().get("content-type") == "application/json; charset=utf-8"
    assert orjson.loads(ctx.response.body) == {"data": {"users": [{"name": "Ann"}, {"name": "Bob"}]}}
    slow = GraphqlEndpoint(
        schema_of(SDL), {("Query", "slow"): DataSource(get("http://slow.test/x"), CompileContext())}
    )
    ctx = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    ctx.request_body = b'{"query": "{ slow }"}'
    with pytest.raises(Reject) as exc:
        await slow.backend(be).forward(ctx, 0.01)
    assert exc.value.status == 504


def test_endpoints_from_configuration_rows() -> None:
    api = build_api("gql", {"path": "gql", "type": "graphql"})
    passthrough = build_api("pt", {"path": "pt", "type": "graphql", "serviceUrl": "http://b.test/graphql"})
    rest = build_api("rest", {"path": "rest"})
    schema = orjson.dumps(
        {"contentType": "application/vnd.ms-azure-apim.graphql.schema", "document": {"value": SDL}}
    )
    raw: dict[str, dict[tuple[str, str], Any]] = {
        "schema": {("apis/GQL", "graphql"): schema, ("apis/pt", "graphql"): schema},
        "resolver": {
            ("apis/gql", "users"): {"path": "Query/users"},
            ("apis/gql", "nopolicy"): {"path": "Query/version"},
        },
        "policy": {
            ("apis/gql/resolvers/users", "policy"): {"value": get("http://data.test/users")},
            ("apis/gql", "policy"): {"value": "<policies />"},
        },
    }
    compiled: list[str] = []

    def compile_resolver(scope: str, xml: str) -> DataSource | str:
        compiled.append(scope)
        return DataSource(xml, CompileContext())

    eps = graphql_endpoints({"gql": api, "pt": passthrough, "rest": rest}, raw, compile_resolver)
    assert set(eps) == {"gql", "pt"} and compiled == ["apis/gql/resolvers/users"]
    assert eps["gql"].synthetic and set(eps["gql"].resolvers) == {("Query", "users")}
    assert not eps["pt"].synthetic and eps["pt"].resolvers == {}


async def test_liquid_bodies_on_both_sides() -> None:
    mutation = ds(
        "<set-method>POST</set-method><set-url>http://data.test/create</set-url>"
        '<set-body template="liquid">{"name": "{{ body.arguments.name | Upcase }}", '
        '"by": "{{ context.Request.Headers.x-who }}"}</set-body>'
    )
    users = ds(
        "<set-method>GET</set-method><set-url>http://data.test/users</set-url>",
        '<set-body template="liquid">[{% JSONArrayFor u in body %}{"id": {{ u.id }}, "name": "{{ u.name | Downcase }}"}'
        "{% endJSONArrayFor %}]</set-body>",
    )
    svc, be = service(), DataBackend()
    ep = endpoint({("Mutation", "makeUser"): mutation, ("Query", "users"): users})
    ctx = request(svc, be, method="POST", path="/echo", headers={"X-Who": "ann"})
    status, doc = await execute_request(
        ep, ctx, be, GraphqlRequest('mutation { makeUser(name: "cy") { name } }')
    )
    assert (status, doc) == (200, {"data": {"makeUser": {"name": "CY"}}})
    assert orjson.loads(be.calls[0].body or b"") == {"name": "CY", "by": "ann"}
    status, doc = await execute_request(ep, ctx, be, GraphqlRequest("{ users { id name } }"))
    assert doc == {"data": {"users": [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]}}
    with pytest.raises(PolicyDocumentError, match="Liquid"):
        validate_data_source(
            ds(
                '<set-method>GET</set-method><set-url>http://x.test</set-url><set-body template="liquid">{% for %}</set-body>'
            )
        )


async def test_fallback_endpoint_takes_operations_without_resolvers() -> None:
    svc, be = service(), DataBackend()
    ep = GraphqlEndpoint(
        schema_of(SDL),
        {("Query", "users"): DataSource(get("http://data.test/users"), CompileContext())},
        fallback=True,
    )
    ctx = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    ctx.request_body = b'{"query": "{ version }"}'
    await ep.backend(be).forward(ctx, None)
    [sent] = be.calls
    assert sent.url == "http://backend.test/svc" and sent.body == b'{"query": "{ version }"}'
    mixed = request(svc, be, method="POST", path="/echo", headers={"Content-Type": "application/json"})
    mixed.request_body = b'{"query": "{ users { name } version }"}'
    await ep.backend(be).forward(mixed, None)
    assert mixed.response is not None
    doc = orjson.loads(mixed.response.body)
    assert doc["data"] == {"users": [{"name": "Ann"}, {"name": "Bob"}], "version": None}
    assert doc["errors"][0]["path"] == ["version"] and "fallback" in doc["errors"][0]["message"]


async def test_an_empty_answer_is_null() -> None:
    ep = endpoint({("Query", "user"): get("http://data.test/empty")})
    status, doc, _ = await run("{ user(id: 1) { name } }", ep=ep)
    assert (status, doc) == (200, {"data": {"user": None}})


async def test_data_source_answers_are_bounded_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    users = len(orjson.dumps(list(USERS.values())))
    monkeypatch.setattr("portico.gateway.gql.executor.MAX_READ_BYTES", users + 10)
    status, doc, _be = await run("{ users { name posts { title } } }")
    assert status == 200 and [u["name"] for u in doc["data"]["users"]] == ["Ann", "Bob"]
    assert all(u["posts"] is None for u in doc["data"]["users"])
    assert {"too large" in e["message"] or "more than" in e["message"] for e in doc["errors"]} == {True}
