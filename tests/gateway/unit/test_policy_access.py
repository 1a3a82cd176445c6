"""Access policies (ip-filter, check-header, cors, authentication-basic) against a hand-built
request and a fake backend (no server)."""

from __future__ import annotations

import base64

from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service

ALLOW = (
    '<ip-filter action="allow"><address>10.1.2.3</address>'
    '<address-range from="192.168.0.0" to="192.168.0.255" /></ip-filter>'
)


async def test_ip_filter() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound=ALLOW)
    rej = await rejected(pipe, request(svc, be, client_ip="10.0.0.1"))
    assert (rej.status, rej.message, rej.reason) == (403, "Forbidden", "CallerIpNotAllowed")
    for ip in ("10.1.2.3", "192.168.0.77"):
        assert (await run(pipe, request(svc, be, client_ip=ip))).status == 200
    forbid = pipeline(
        svc,
        inbound='<ip-filter action="forbid"><address-range from="127.0.0.0" to="127.255.255.255" /></ip-filter>',
    )
    assert (await rejected(forbid, request(svc, be, client_ip="127.0.0.9"))).status == 403
    assert (await run(forbid, request(svc, be, client_ip="10.0.0.1"))).status == 200
    assert len(be.sent) == 3


async def test_check_header() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<check-header name="X-Tenant" failed-check-httpcode="401" failed-check-error-message="Tenant required" ignore-case="true">'
        "<value>Contoso</value><value>Fabrikam</value></check-header>",
    )
    for headers in ({}, {"X-Tenant": "other"}):
        rej = await rejected(pipe, request(svc, be, headers=headers))
        assert (rej.status, rej.message) == (401, "Tenant required")
    assert (await run(pipe, request(svc, be, headers={"X-Tenant": "contoso"}))).status == 200
    assert len(be.sent) == 1


CORS = (
    '<cors allow-credentials="true"><allowed-origins><origin>https://app.example</origin></allowed-origins>'
    '<allowed-methods preflight-result-max-age="300"><method>GET</method><method>POST</method></allowed-methods>'
    "<allowed-headers><header>content-type</header></allowed-headers>"
    "<expose-headers><header>x-backend</header></expose-headers></cors>"
)


async def test_cors_preflight_and_simple_request() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound=CORS)
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    answer = await run(pipe, request(svc, be, method="OPTIONS", headers=preflight))
    assert answer.status == 200 and not be.sent  # answered by the policy
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert answer.headers["access-control-max-age"] == "300"
    answer = await run(pipe, request(svc, be, headers={"Origin": "https://app.example"}))
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.headers["access-control-expose-headers"] == "x-backend" and len(be.sent) == 1
    answer = await run(
        pipe, request(svc, be, method="OPTIONS", headers={**preflight, "Origin": "https://evil.example"})
    )
    assert "access-control-allow-origin" not in answer.headers


async def test_authentication_basic_replaces_the_callers_authorization() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound='<authentication-basic username="svc-user" password="pa:ss word" />')
    await run(pipe, request(svc, be, headers={"Authorization": "Bearer caller"}))
    expected = "Basic " + base64.b64encode(b"svc-user:pa:ss word").decode()
    assert be.sent[-1].headers["authorization"] == expected
