"""validate-graphql-request against a hand-built GraphQL API (no server)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from portico.arm.errors import ArmError
from portico.gateway.config import ServiceConfig
from portico.gateway.gql import GraphqlEndpoint
from portico.gateway.gql.executor import schema_of
from portico.gateway.policies import validate_policy_document
from tests.gateway.unit.harness import FakeBackend, pipeline, request, run, service

SDL = "type Query { users: [User]  secret: String } type User { name: String  friends: [User] }"


def _svc() -> ServiceConfig:
    svc = service()
    svc.graphql = {"echo": GraphqlEndpoint(schema_of(SDL))}
    return svc


POLICY = (
    '<validate-graphql-request error-variable-name="gqlErrors" max-size="@(200)" max-depth="3">'
    '<authorize><rule path="/__*" action="reject" /><rule path="/Query/secret" '
    'action="@(context.Request.Headers.GetValueOrDefault(&quot;X-Admin&quot;, &quot;&quot;) == &quot;yes&quot; ? &quot;allow&quot; : &quot;reject&quot;)" />'
    "</authorize></validate-graphql-request>"
)


async def _post(query: str, headers: dict[str, str] | None = None) -> tuple[int, Any, FakeBackend, Any]:
    svc, be = _svc(), FakeBackend()
    body = orjson.dumps({"query": query})
    ctx = request(
        svc,
        be,
        method="POST",
        path="/echo",
        body=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    answer = await run(pipeline(svc, inbound=POLICY), ctx)
    return answer.status, answer.json(), be, ctx.variables


async def test_valid_requests_pass_to_the_backend_unchanged() -> None:
    status, doc, be, _v = await _post("{ users { name friends { name } } }")
    assert status == 200 and doc == {"ok": True}
    assert orjson.loads(be.sent[0].body or b"") == {"query": "{ users { name friends { name } } }"}
    status, _doc, _be, _v = await _post("{ secret }", {"X-Admin": "yes"})
    assert status == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ users { nosuch } }", "nosuch"),
        ("{ users {", "Syntax Error"),
        ("{ users { friends { friends { name } } } }", "at most 3"),
        ("{ __schema { types { name } } }", "__schema"),
        ("{ secret }", "/Query/secret"),
        ("{ users { name } " + "x" * 300 + " }", "maximum size"),
    ],
)
async def test_invalid_requests_get_errors_and_no_data(query: str, message: str) -> None:
    status, doc, be, variables = await _post(query)
    assert status == 400 and be.sent == []
    assert variables["gqlErrors"] == variables["GraphQLErrors"] == doc["errors"]
    assert isinstance(doc, dict) and "data" not in doc and message in doc["errors"][0]["message"]


def test_unsupported_settings_are_refused_when_saved() -> None:
    for bad, named in (
        ('<validate-graphql-request max-size="200000" />', "max-size"),
        ('<validate-graphql-request max-size="100" max-depth="0" />', "max-depth"),
        ("<validate-graphql-request />", "max-size"),
        (
            '<validate-graphql-request max-size="10"><authorize><rule path="/Q/f" action="remove" /></authorize></validate-graphql-request>',
            "remove",
        ),
    ):
        with pytest.raises(ArmError) as exc:
            validate_policy_document(f"<policies><inbound>{bad}</inbound></policies>")
        assert named in exc.value.message
