"""Transformation policies against a hand-built request and a fake backend (no server)."""

from __future__ import annotations

from tests.gateway.unit.harness import FakeBackend, pipeline, request, run, service, subscription


async def test_headers_query_and_method_reach_the_backend() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<set-header name="X-Sub" exists-action="override"><value>@(context.Subscription.Id + "/" + context.Request.Method)</value></set-header>'
        '<set-header name="X-Remove" exists-action="delete" />'
        '<set-header name="X-Multi" exists-action="append"><value>b</value></set-header>'
        '<set-query-parameter name="added" exists-action="override"><value>@(context.Api.Id)</value></set-query-parameter>'
        '<set-query-parameter name="gone" exists-action="delete" /><set-method>PUT</set-method>',
        outbound='<set-header name="X-Out" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header>'
        '<set-status code="201" reason="Made" />',
    )
    ctx = request(
        svc, be, query="gone=1&keep=2", headers={"X-Remove": "x", "X-Multi": "a"}, sub=subscription()
    )
    answer = await run(pipe, ctx)
    [sent] = be.sent
    assert sent.method == "PUT"
    assert sent.url == "http://backend.test/svc/items/7?keep=2&added=echo"
    assert sent.headers["x-sub"] == "sub1/GET" and "x-remove" not in sent.headers
    assert sent.headers["x-multi"] == "a, b"
    assert sent.headers["x-forwarded-for"] == "10.0.0.1"
    assert answer.status == 201 and answer.headers["x-out"] == "200"
    assert answer.json() == {"ok": True}


async def test_rewrite_uri_and_set_backend_service() -> None:
    svc = service(
        backends={"be1": {"url": "http://other.test/be1", "credentials": {"header": {"x-k": ["s"]}}}}
    )
    be = FakeBackend()
    await run(
        pipeline(svc, inbound='<rewrite-uri template="/v2/things/{id}?fixed=1" />'),
        request(svc, be, query="extra=x"),
    )
    assert be.sent[-1].url == "http://backend.test/svc/v2/things/7?fixed=1&extra=x"
    pipe = pipeline(svc, inbound='<rewrite-uri template="/only" copy-unmatched-params="false" />')
    await run(pipe, request(svc, be, query="extra=x"))
    assert be.sent[-1].url == "http://backend.test/svc/only"
    await run(
        pipeline(svc, inbound='<set-backend-service base-url="http://elsewhere.test/x" />'), request(svc, be)
    )
    assert be.sent[-1].url == "http://elsewhere.test/x/items/7"
    await run(pipeline(svc, inbound='<set-backend-service backend-id="be1" />'), request(svc, be))
    assert be.sent[-1].url == "http://other.test/be1/items/7" and be.sent[-1].headers["x-k"] == "s"


async def test_return_response_choose_and_variables_answer_without_the_backend() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<choose><when condition="@(context.Request.Headers.GetValueOrDefault(&quot;x-mode&quot;, &quot;&quot;) == &quot;teapot&quot;)">'
        '<return-response><set-status code="418" reason="Teapot" /><set-header name="X-R" exists-action="override"><value>r</value></set-header>'
        '<set-body>@("short and stout: " + context.Variables.GetValueOrDefault&lt;string&gt;("who", "nobody"))</set-body></return-response></when>'
        '<otherwise><set-variable name="who" value="tea" /></otherwise></choose>'
        '<set-header name="X-Who" exists-action="override"><value>@((string)context.Variables["who"])</value></set-header>',
    )
    answer = await run(pipe, request(svc, be, headers={"x-mode": "teapot"}))
    assert (answer.status, answer.body, answer.headers["x-r"]) == (418, b"short and stout: nobody", "r")
    assert not be.sent
    answer = await run(pipe, request(svc, be))
    assert answer.status == 200 and be.sent[-1].headers["x-who"] == "tea"


async def test_set_body_on_both_sides() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<set-body>@("in:" + context.Request.Method)</set-body>',
        outbound="<set-body>replaced</set-body>",
    )
    answer = await run(pipe, request(svc, be, method="POST", template="/items/{id}"))
    assert be.sent[-1].body == b"in:POST"
    assert answer.body == b"replaced" and answer.headers["content-length"] == "8"


async def test_forward_request_fail_on_error_status_code() -> None:
    svc, be = service(), FakeBackend(status=503, body=b"down")
    pipe = pipeline(svc, backend='<forward-request fail-on-error-status-code="true" />')
    try:
        await run(pipe, request(svc, be))
    except Exception as exc:  # Reject: on-error runs next in the gateway
        assert getattr(exc, "status", None) == 503 and getattr(exc, "reason", None) == "BackendError"
    else:
        raise AssertionError("a 503 from the backend was not an error")
    answer = await run(pipeline(svc), request(svc, be))
    assert (answer.status, answer.body) == (503, b"down")
