"""The expression language against a real request context (no server): what `context` shows of
the request, its API, operation, subscription and user, and run-time failures."""

from __future__ import annotations

from typing import Any

import pytest

from portico.gateway.expressions import ExpressionError, Value, compile_expression
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, service, subscription

USERS = {"ann": {"email": "ann@example.com", "firstName": "Ann", "lastName": "Lee"}}


@pytest.mark.parametrize(
    ("src", "value"),
    [
        ("@(context.Request.Method)", "GET"),
        ("@(context.Request.Url.Path)", "/echo/items/7"),
        ('@(context.Request.Url.Query.GetValueOrDefault("a", ""))', "1"),
        ('@(context.Request.Headers.GetValueOrDefault("X-Tenant", "none"))', "contoso"),
        ('@(context.Request.MatchedParameters["id"])', "7"),
        ("@(context.Request.IpAddress)", "10.0.0.1"),
        ("@(context.Api.Id + context.Api.Path)", "echo/echo"),
        ('@(context.Operation.Id + " " + context.Operation.UrlTemplate)', "op /items/{id}"),
        ('@(context.Subscription.Id + "/" + context.Subscription.Key)', "sub1/pk-sub1"),
        ("@(context.User.Email)", "ann@example.com"),
        ('@(context.Deployment.ServiceName + "@" + context.Deployment.Region)', "contoso@West Europe"),
        ("@(context.Product == null)", True),
        ("@(context.Response.StatusCode)", 0),
        ('@{ var n = context.Request.Headers.GetValueOrDefault("X-N", "0"); return int.Parse(n) * 2; }', 42),
    ],
)
def test_context_seen_by_expressions(src: str, value: Any) -> None:
    svc = service(users=USERS)
    ctx = request(
        svc, FakeBackend(), query="a=1", headers={"X-Tenant": "contoso", "X-N": "21"}, sub=subscription()
    )
    assert compile_expression(src).evaluate(ctx) == value


def test_values_literal_and_evaluated() -> None:
    ctx = request(service(), FakeBackend())
    assert Value("plain").constant and Value("plain").text(ctx) == "plain"
    assert Value("@(1 + 1)").text(ctx) == "2"


def test_run_time_failures_are_expression_errors() -> None:
    ctx = request(service(), FakeBackend())  # no subscription, no user
    for src in ('@(context.Variables["missing"].ToString())', "@(context.Subscription.Id)"):
        with pytest.raises(ExpressionError):
            compile_expression(src).evaluate(ctx)


async def test_failing_expression_stops_the_pipeline() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<set-header name="X-Boom" exists-action="override"><value>@(context.Variables["missing"].ToString())</value></set-header>',
    )
    with pytest.raises(ExpressionError):
        await rejected(pipe, request(svc, be))
    assert not be.sent


def test_interpolated_strings() -> None:
    ctx = request(service(), FakeBackend(), headers={"X-Tenant": "contoso"})
    cases = {
        '@($"{context.Request.Method} {context.Request.Headers.GetValueOrDefault("X-Tenant")}")': "GET contoso",
        '@($"a{1 + 2}b{{c}}\\t")': "a3b{c}\t",
        '@{ var n = 4; return $"n={n}, m={(n > 3 ? "big" : "small")}"; }': "n=4, m=big",
        '@($"{context.Request.Url.Query.GetValueOrDefault("a", "")}")': "",
    }
    for src, want in cases.items():
        assert compile_expression(src).evaluate(ctx) == want, src
    for bad in ('@($"{x:D2}")', '@($"open)', '@($"{}")', '@($"a}b")', '@($"{context.Nope}")'):
        with pytest.raises(ExpressionError):
            compile_expression(bad)
