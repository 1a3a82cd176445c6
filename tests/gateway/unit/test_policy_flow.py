"""Flow-control and side-request policies (send-request, send-one-way-request, retry, wait,
limit-concurrency) against a hand-built request and a scripted backend (no server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from portico.arm.errors import ArmError
from portico.gateway.backend import SideRequest, SideRequestFailed, SideResponse
from portico.gateway.config.certificates import Certificates
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.expressions import ExpressionError, compile_expression
from portico.gateway.outcome import Reject
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.limit_concurrency import active
from portico.gateway.policies.retry import delay
from portico.gateway.upstream import ClientCertificate
from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service


@dataclass
class Side:
    status: int = 200
    body: bytes = b"{}"
    headers: list[tuple[bytes, bytes]] = field(
        default_factory=lambda: [(b"content-type", b"application/json")]
    )
    delay: float = 0.0
    fail: SideRequestFailed | None = None


@dataclass
class FlowBackend(FakeBackend):
    """FakeBackend whose forward answers follow `statuses` (then 200), with scripted side requests."""

    statuses: list[int | Reject] = field(default_factory=list)
    side: dict[str, Side] = field(default_factory=dict)
    side_sent: list[SideRequest] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    gate: asyncio.Event | None = None
    buffered: int = 0

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109
        self._answer(ctx)
        outcome = self.statuses.pop(0) if self.statuses else 200
        if isinstance(outcome, Reject):
            raise outcome
        ctx.response = Response(outcome, HeaderMap(), b"attempt %d" % len(self.sent))

    async def buffer_body(self, ctx: Context) -> None:
        self.buffered += 1

    async def send(self, ctx: Context, request: SideRequest, timeout: float, limit: int) -> SideResponse:  # noqa: ASYNC109
        self.side_sent.append(request)
        script = self.side.get(request.url, Side(status=404, body=b""))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if script.delay:
                await asyncio.sleep(script.delay)
        finally:
            self.in_flight -= 1
        if script.fail is not None:
            raise script.fail
        return SideResponse(script.status, "OK", script.headers, script.body)


TOKEN_LOOKUP = (
    '<send-request mode="new" response-variable-name="tok" timeout="5" ignore-error="false">'
    "<set-url>http://auth.test/token</set-url><set-method>POST</set-method>"
    '<set-header name="X-Client" exists-action="override"><value>@(context.Api.Id)</value></set-header>'
    "<set-body>grant=client</set-body></send-request>"
    '<set-header name="Authorization" exists-action="override">'
    '<value>@("Bearer " + (string)((IResponse)context.Variables["tok"]).Body.As&lt;JObject&gt;()["access_token"])</value>'
    "</set-header>"
)


async def test_send_request_answer_is_used_in_a_header() -> None:
    svc = service()
    be = FlowBackend(side={"http://auth.test/token": Side(body=b'{"access_token":"t-123","n":5}')})
    answer = await run(pipeline(svc, inbound=TOKEN_LOOKUP), request(svc, be))
    assert answer.status == 200
    [side] = be.side_sent
    assert (side.method, side.url, side.body) == ("POST", "http://auth.test/token", b"grant=client")
    assert ("X-Client", "echo") in side.headers
    assert be.sent[0].headers["authorization"] == "Bearer t-123"


async def test_send_request_response_members_and_return_response() -> None:
    svc = service()
    be = FlowBackend(
        side={"http://lookup.test/x": Side(status=201, body=b'{"a":{"b":[7,8]}}', headers=[(b"x-k", b"v")])}
    )
    pipe = pipeline(
        svc,
        inbound='<send-request response-variable-name="r"><set-url>http://lookup.test/x</set-url></send-request>'
        '<set-variable name="code" value="@(((IResponse)context.Variables[&quot;r&quot;]).StatusCode)" />'
        '<set-variable name="hdr" value="@(((IResponse)context.Variables[&quot;r&quot;]).Headers.GetValueOrDefault(&quot;X-K&quot;, &quot;&quot;))" />'
        '<set-variable name="deep" value="@(((IResponse)context.Variables[&quot;r&quot;]).Body.As&lt;JObject&gt;().SelectToken(&quot;a.b[1]&quot;))" />'
        '<set-variable name="text" value="@(((IResponse)context.Variables[&quot;r&quot;]).Body.As&lt;string&gt;(preserveContent: true))" />'
        '<return-response response-variable-name="r"><set-header name="X-Extra" exists-action="override"><value>1</value></set-header></return-response>',
    )
    ctx = request(svc, be)
    answer = await run(pipe, ctx)
    assert ctx.variables["code"] == 201 and ctx.variables["hdr"] == "v" and ctx.variables["deep"] == 8
    assert ctx.variables["text"] == '{"a":{"b":[7,8]}}'
    assert be.side_sent[0].method == "GET"  # no set-method: GET
    assert answer.status == 201 and answer.headers["x-k"] == "v" and answer.headers["x-extra"] == "1"
    assert answer.json() == {"a": {"b": [7, 8]}}
    assert be.sent == []  # return-response answered


async def test_send_request_copy_mode_sends_the_client_request() -> None:
    svc = service()
    be = FlowBackend(side={"http://backend.test/svc/items/7?q=1": Side()})
    pipe = pipeline(svc, inbound='<send-request mode="copy" response-variable-name="c" />')
    ctx = request(svc, be, method="POST", query="q=1", headers={"X-In": "a"}, body=b"payload")
    await run(pipe, ctx)
    [side] = be.side_sent
    assert side.method == "POST" and side.body == b"payload" and ("x-in", "a") in side.headers
    assert be.buffered == 1  # the client's body is read once, for both requests
    assert be.sent[0].body == b"payload"


async def test_send_request_errors_and_ignore_error() -> None:
    svc = service()
    be = FlowBackend(
        side={
            "http://slow.test/": Side(fail=SideRequestFailed("no answer within 1 s", timeout=True)),
            "http://down.test/": Side(fail=SideRequestFailed("connection refused")),
        }
    )
    send = '<send-request response-variable-name="r" timeout="1"{}><set-url>http://{}.test/</set-url></send-request>'
    rej = await rejected(pipeline(svc, inbound=send.format("", "slow")), request(svc, be))
    assert (rej.status, rej.source, rej.reason) == (504, "send-request", "Timeout")
    rej = await rejected(pipeline(svc, inbound=send.format("", "down")), request(svc, be))
    assert (rej.status, rej.reason) == (502, "SendRequestFailure")
    ctx = request(svc, be)
    pipe = pipeline(
        svc,
        inbound=send.format(' ignore-error="true"', "slow")
        + '<set-variable name="isnull" value="@(context.Variables[&quot;r&quot;] == null)" />',
    )
    assert (await run(pipe, ctx)).status == 200
    assert ctx.variables["isnull"] is True


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<send-request><set-url>http://a/</set-url></send-request>", "response-variable-name"),
        ('<send-request response-variable-name="r" />', "needs a <set-url>"),
        (
            '<send-request response-variable-name="r" mode="clone"><set-url>http://a/</set-url></send-request>',
            "mode",
        ),
        (
            '<send-request response-variable-name="r" timeout="0"><set-url>http://a/</set-url></send-request>',
            "timeout",
        ),
        (
            '<send-request response-variable-name="r" ignore-error="maybe"><set-url>http://a/</set-url></send-request>',
            "ignore-error",
        ),
        (
            '<send-request response-variable-name="r"><set-url>http://a/</set-url><proxy url="http://p" /></send-request>',
            "proxy",
        ),
        (
            '<send-request response-variable-name="r"><set-url>http://a/</set-url><authentication-managed-identity resource="x" /></send-request>',
            "managed",
        ),
        (
            '<send-request response-variable-name="r" mode="new"><set-url>http://a/</set-url><set-query-parameter name="a" /></send-request>',
            "set-query-parameter",
        ),
        (
            '<send-one-way-request mode="new" response-variable-name="r"><set-url>http://a/</set-url></send-one-way-request>',
            "response-variable-name",
        ),
        ('<retry condition="true" count="0" interval="1"><forward-request /></retry>', "count"),
        ('<retry condition="true" count="51" interval="1"><forward-request /></retry>', "count"),
        ('<retry count="2" interval="1"><forward-request /></retry>', "condition"),
        ('<retry condition="true" count="2"><forward-request /></retry>', "interval"),
        ('<retry condition="sometimes" count="2" interval="1"><forward-request /></retry>', "condition"),
        (
            '<retry condition="true" count="2" interval="1"><wait><choose><when condition="@(true)" /></choose></wait></retry>',
            "wait",
        ),
        ('<wait for="some" />', "for"),
        ('<wait><set-header name="a" exists-action="delete" /></wait>', "set-header"),
        ('<limit-concurrency key="k"><forward-request /></limit-concurrency>', "max-count"),
        ('<limit-concurrency max-count="2"><forward-request /></limit-concurrency>', "key"),
        ('<limit-concurrency key="k" max-count="@(2)"><forward-request /></limit-concurrency>', "max-count"),
        ('<emit-metric name="m" />', "dimension"),
        ('<emit-metric name="@(context.Api.Id)"><dimension name="API ID" /></emit-metric>', "expressions"),
        ('<emit-metric name="m" value="lots"><dimension name="API ID" /></emit-metric>', "value"),
        ('<emit-metric name="m"><dimension name="Region" /></emit-metric>', "needs a 'value'"),
    ],
)
def test_invalid_documents_are_refused_with_400(xml: str, message: str) -> None:
    doc = f"<policies><inbound>{xml}</inbound><backend><base /></backend></policies>"
    if xml.startswith(("<retry", "<limit")):
        doc = f"<policies><inbound /><backend>{xml}</backend></policies>"
    with pytest.raises(ArmError) as err:
        validate_policy_document(doc)
    assert err.value.status == 400 and message in str(err.value)


def test_named_values_are_checked_once_substituted() -> None:
    validate_policy_document(
        "<policies><inbound><send-request mode='{{mode}}' response-variable-name='r' timeout='{{t}}' />"
        "<wait for='{{how}}' /></inbound><backend><retry condition='{{c}}' count='{{n}}' interval='{{i}}'>"
        "<forward-request /></retry></backend></policies>"
    )


def test_sections_follow_the_documentation() -> None:
    with pytest.raises(ArmError, match="not allowed in section 'on-error'"):
        validate_policy_document("<policies><on-error><wait /></on-error></policies>")
    for section in ("inbound", "backend", "outbound", "on-error"):
        validate_policy_document(
            f"<policies><{section}><send-request response-variable-name='r'><set-url>http://a/</set-url>"
            f"</send-request><limit-concurrency key='k' max-count='1' /><retry condition='false' count='1' "
            f"interval='0' /></{section}></policies>"
        )


async def test_send_one_way_request_goes_out_without_waiting() -> None:
    svc = service()
    be = FlowBackend(side={"http://audit.test/log": Side(delay=0.05)})
    pipe = pipeline(
        svc,
        inbound='<send-one-way-request mode="new" timeout="5"><set-url>http://audit.test/log</set-url>'
        "<set-method>PUT</set-method><set-body>@(context.Request.Method)</set-body></send-one-way-request>",
    )
    assert pipe.fast  # nothing to await: the fast path keeps serving it
    answer = await run(pipe, request(svc, be))
    assert answer.status == 200
    for _ in range(200):
        if be.side_sent:
            break
        await asyncio.sleep(0.01)
    [side] = be.side_sent
    assert (side.method, side.body) == ("PUT", b"GET")
    assert not pipeline(svc, inbound='<send-one-way-request mode="copy" />').fast


async def test_retry_replays_forward_request_until_the_condition_is_false() -> None:
    svc = service()
    be = FlowBackend(statuses=[503, 500, 200])
    pipe = pipeline(
        svc,
        backend='<retry condition="@(context.Response.StatusCode &gt;= 500)" count="3" interval="0" '
        'first-fast-retry="true"><forward-request /></retry>',
    )
    assert not pipe.fast
    ctx = request(svc, be, method="POST", body=b'{"order":1}')
    answer = await run(pipe, ctx)
    assert answer.status == 200 and answer.body == b"attempt 3"
    assert [s.body for s in be.sent] == [b'{"order":1}'] * 3
    assert be.buffered == 1


async def test_retry_stops_after_count_retries_and_errors_follow_the_condition() -> None:
    svc = service()
    be = FlowBackend(statuses=[500] * 5)
    pipe = pipeline(
        svc,
        backend='<retry condition="@(context.Response.StatusCode == 500)" count="2" interval="0"><forward-request /></retry>',
    )
    answer = await run(pipe, request(svc, be))
    assert answer.status == 500 and len(be.sent) == 3  # one try and two retries
    down = Reject(502, "unreachable", source="forward-request", reason="BackendConnectionFailure")
    be = FlowBackend(statuses=[down, down, 200])
    pipe = pipeline(
        svc,
        backend='<retry condition="@(context.LastError != null &amp;&amp; context.LastError.Reason == &quot;BackendConnectionFailure&quot;)" '
        'count="3" interval="0"><forward-request /></retry>',
    )
    assert (await run(pipe, request(svc, be))).status == 200 and len(be.sent) == 3
    be = FlowBackend(statuses=[down, 200])
    pipe = pipeline(
        svc, backend='<retry condition="false" count="3" interval="0"><forward-request /></retry>'
    )
    rej = await rejected(pipe, request(svc, be))
    assert rej.reason == "BackendConnectionFailure" and len(be.sent) == 1


def test_retry_delays() -> None:
    assert [delay(n, 2, None, None) for n in (1, 2, 3)] == [2, 2, 2]
    assert [delay(n, 2, 3, None) for n in (1, 2, 3)] == [2, 5, 8]
    exp = [delay(n, 10, 10, 100) for n in range(1, 7)]
    assert exp[0] == 10 and 18 <= exp[1] <= 22 and 34 <= exp[2] <= 46 and 66 <= exp[3] <= 94
    assert exp[4:] == [100, 100]


async def test_wait_all_runs_send_requests_side_by_side() -> None:
    svc = service()
    be = FlowBackend(
        side={
            "http://a.test/": Side(body=b'{"v":"A"}', delay=0.05),
            "http://b.test/": Side(body=b'{"v":"B"}', delay=0.05),
        }
    )
    one = '<send-request response-variable-name="{0}"><set-url>http://{0}.test/</set-url></send-request>'
    pipe = pipeline(
        svc,
        inbound=f'<wait for="all">{one.format("a")}{one.format("b")}</wait>'
        '<set-header name="X-Both" exists-action="override"><value>@((string)((IResponse)context.Variables["a"]).Body.As&lt;JObject&gt;()["v"] + (string)((IResponse)context.Variables["b"]).Body.As&lt;JObject&gt;()["v"])</value></set-header>',
    )
    await run(pipe, request(svc, be))
    assert be.most_in_flight == 2
    assert be.sent[0].headers["x-both"] == "AB"


async def test_wait_any_finishes_with_the_first_and_stops_the_others() -> None:
    svc = service()
    be = FlowBackend(side={"http://fast.test/": Side(), "http://slow.test/": Side(delay=30)})
    one = '<send-request response-variable-name="{0}"><set-url>http://{0}.test/</set-url></send-request>'
    ctx = request(svc, be)
    await asyncio.wait_for(
        run(pipeline(svc, inbound=f'<wait for="any">{one.format("slow")}{one.format("fast")}</wait>'), ctx),
        10,
    )
    assert "fast" in ctx.variables and "slow" not in ctx.variables
    await asyncio.sleep(0)
    assert be.in_flight == 0  # the slow one was cancelled


async def test_wait_reports_a_failed_child() -> None:
    svc = service()
    be = FlowBackend(side={"http://down.test/": Side(fail=SideRequestFailed("refused"))})
    pipe = pipeline(
        svc,
        inbound='<wait><send-request response-variable-name="d"><set-url>http://down.test/</set-url></send-request></wait>',
    )
    assert (await rejected(pipe, request(svc, be))).reason == "SendRequestFailure"


async def test_limit_concurrency_refuses_over_the_limit_with_429() -> None:
    svc = service()
    be = FlowBackend(side={"http://hold.test/": Side()}, gate=asyncio.Event())
    pipe = pipeline(
        svc,
        inbound='<limit-concurrency key="@(context.Api.Id)" max-count="2">'
        '<send-request response-variable-name="h"><set-url>http://hold.test/</set-url></send-request>'
        "</limit-concurrency>",
    )
    first = asyncio.ensure_future(run(pipe, request(svc, be)))
    second = asyncio.ensure_future(run(pipe, request(svc, be)))
    for _ in range(500):
        if be.in_flight == 2:
            break
        await asyncio.sleep(0.01)
    assert active(svc.id, "echo") == 2
    rej = await rejected(pipe, request(svc, be))
    assert (rej.status, rej.source) == (429, "limit-concurrency")
    assert be.gate is not None
    be.gate.set()
    assert [a.status for a in await asyncio.gather(first, second)] == [200, 200]
    assert active(svc.id, "echo") == 0
    assert (await run(pipe, request(svc, be))).status == 200  # free again


def test_iresponse_expressions_check_members_when_saved() -> None:
    with pytest.raises(ExpressionError, match="IResponse' does not contain a definition for 'Bodyy'"):
        compile_expression('@(((IResponse)context.Variables["r"]).Bodyy)')
    with pytest.raises(ExpressionError, match="JObject' does not contain a method 'Frob'"):
        compile_expression('@(((IResponse)context.Variables["r"]).Body.As<JObject>().Frob())')


def test_casts_to_iresponse_and_json() -> None:
    class Ctx:
        def __init__(self, v: Any) -> None:
            self.v = v

        def expr_member(self, name: str) -> Any:
            return self

        def expr_index(self, key: Any) -> Any:
            return self.v

    with pytest.raises(ExpressionError, match="Unable to cast object of type 'string' to type 'IResponse'"):
        compile_expression('@(((IResponse)context.Variables["r"]).StatusCode)').evaluate(Ctx("x"))
    assert compile_expression('@((IResponse)context.Variables["r"] == null)').evaluate(Ctx(None)) is True


async def test_send_request_presents_the_named_client_certificate() -> None:
    svc = service()
    cert = ClientCertificate("AB12", b"pem")
    svc.certificates = Certificates(by_id={"client1": cert}, by_thumbprint={"AB12": cert})
    be = FlowBackend(side={"https://mtls.test/": Side()})
    send = (
        '<send-request response-variable-name="r"><set-url>https://mtls.test/</set-url>'
        "<authentication-certificate {} /></send-request>"
    )
    await run(pipeline(svc, inbound=send.format('certificate-id="client1"')), request(svc, be))
    [side] = be.side_sent
    assert side.tls is not None and side.tls.client == cert and side.tls.verify_chain
    rej = await rejected(pipeline(svc, inbound=send.format('thumbprint="FFFF"')), request(svc, be))
    assert (rej.status, rej.reason) == (500, "CertificateNotFound")
    assert len(be.side_sent) == 1  # nothing sent without it
