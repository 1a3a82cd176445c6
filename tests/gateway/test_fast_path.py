"""The fast path (Gateway.handle_nowait) answers exactly as the ASGI path (Gateway.handle): the same
requests, over real sockets, to the shared gateway server (fast path on) and to a gateway-only node
on the same database with `PORTICO_GATEWAY_FAST_PATH=false`."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import RG, GatewayEnv, closed_port, eventually, gateway_node
from tests.support.server import free_port

pytestmark = pytest.mark.slow

POLICY = (
    "<policies><inbound><base />{inbound}</inbound><backend><base /></backend>"
    "<outbound><base />{outbound}</outbound><on-error><base />{on_error}</on-error></policies>"
)
# What differs between two nodes whatever the path: dates, and ids the gateway makes up.
VOLATILE = {"date", "x-request-id", "server", "content-length"}


@pytest.fixture(scope="module")
def asgi_node(gw: GatewayEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = gateway_node(
        gw.server,
        tmp_path_factory.mktemp("asgi-node"),
        port,
        workers=1,
        PORTICO_GATEWAY_FAST_PATH="false",
        PORTICO_GATEWAY_MAX_BODY_BYTES=gw.server.env["PORTICO_GATEWAY_MAX_BODY_BYTES"],
    )
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def _answer(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in r.headers.items() if k not in VOLATILE}
    return r.status_code, headers, r.content


def test_both_paths_answer_alike(gw: GatewayEnv, asgi_node: int, backend: str) -> None:
    gw.api(
        "diff",
        "diff",
        backend + "/base",
        ops=[
            ("get-all", "GET", "/*"),
            ("post-all", "POST", "/*"),
            ("head-all", "HEAD", "/*"),
            ("mock", "GET", "/mock"),
            ("ret", "GET", "/ret"),
            ("limited", "GET", "/limited"),
            ("broken", "GET", "/broken"),
            ("strict", "GET", "/strict/*"),
            ("cached", "GET", "/cached/*"),
            ("convert", "POST", "/convert/*"),
            ("oneway", "GET", "/oneway"),
            ("bodyread", "POST", "/bodyread/*"),
        ],
    )
    gw.api("diffdown", "diffdown", f"http://127.0.0.1:{closed_port()}")
    gw.policy(
        POLICY.format(
            inbound='<set-header name="X-In" exists-action="override"><value>@(context.Request.Method)</value></set-header>'
            "<cors><allowed-origins><origin>https://app.test</origin></allowed-origins>"
            "<allowed-methods><method>GET</method></allowed-methods></cors>",
            outbound='<set-header name="X-Out" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header>',
            on_error='<set-header name="X-Err" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>',
        ),
        api="diff",
    )
    gw.policy(
        POLICY.format(
            inbound='<mock-response status-code="202" content-type="application/json" />',
            outbound="",
            on_error="",
        ),
        api="diff",
        operation="mock",
    )
    gw.policy(
        POLICY.format(
            inbound='<return-response><set-status code="418" reason="Teapot" />'
            '<set-header name="X-R" exists-action="override"><value>r</value></set-header>'
            "<set-body>short and stout</set-body></return-response>",
            outbound="",
            on_error="",
        ),
        api="diff",
        operation="ret",
    )
    gw.policy(
        POLICY.format(inbound='<rate-limit calls="2" renewal-period="300" />', outbound="", on_error=""),
        api="diff",
        operation="limited",
    )
    gw.policy(
        POLICY.format(
            inbound='<set-variable name="n" value="@(int.Parse(&quot;x&quot;))" />', outbound="", on_error=""
        ),
        api="diff",
        operation="broken",
    )
    gw.policy(
        '<policies><inbound><base /></inbound><backend><forward-request fail-on-error-status-code="true" /></backend>'
        "<outbound><base /></outbound><on-error><base /></on-error></policies>",
        api="diff",
        operation="strict",
    )
    nonce = '<set-header name="{}" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault(&quot;x-nonce&quot;, &quot;&quot;))</value></set-header>'
    gw.policy(
        POLICY.format(
            inbound='<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" />',
            outbound=nonce.format("X-Before") + '<cache-store duration="300" />' + nonce.format("X-After"),
            on_error="",
        ),
        api="diff",
        operation="cached",
    )
    gw.policy(  # body conversions await the whole body: the fast path hands them over
        POLICY.format(
            inbound='<xml-to-json kind="direct" apply="always" consider-accept-header="false" />',
            outbound='<json-to-xml apply="content-type-json" consider-accept-header="false" />'
            '<find-and-replace from="convert" to="converted" />',
            on_error="",
        ),
        api="diff",
        operation="convert",
    )
    # An OData API has no operations: routed as a whole, with validate-odata-request (synchronous)
    gw.client.api.begin_create_or_update(
        RG,
        gw.service,
        "diffodata",
        {
            "properties": {
                "path": "diffodata",
                "displayName": "O",
                "serviceUrl": backend + "/od",
                "type": "odata",
                "protocols": ["http", "https"],
            }
        },
    ).result()
    gw.policy(
        POLICY.format(
            inbound='<validate-odata-request max-odata-version="4.01" />',
            outbound="",
            on_error='<set-header name="X-Err" exists-action="override"><value>@(context.LastError.Source)</value></set-header>',
        ),
        api="diffodata",
    )
    gw.policy(  # synchronous: the fast path starts it from its callbacks
        POLICY.format(
            inbound=f'<send-one-way-request mode="new"><set-url>{backend}/audit</set-url>'
            "<set-method>POST</set-method><set-body>seen</set-body></send-one-way-request>",
            outbound="",
            on_error="",
        ),
        api="diff",
        operation="oneway",
    )
    gw.policy(  # the request body is whole on the fast path; reading the response's awaits
        POLICY.format(
            inbound='<set-header name="X-Id" exists-action="override"><value>'
            "@((string)context.Request.Body.As&lt;JObject&gt;(preserveContent: true)[&quot;id&quot;])"
            "</value></set-header>",
            outbound='<set-header name="X-Len" exists-action="override"><value>'
            "@(context.Response.Body.As&lt;string&gt;(true).Length.ToString())</value></set-header>",
            on_error="",
        ),
        api="diff",
        operation="bodyread",
    )
    key = gw.subscription("diff-sub", "/apis")
    requests: list[tuple[str, str, dict[str, Any]]] = [
        (
            "GET",
            "/diff/items/1?a=1&b=two%20words",
            {"key": key, "headers": {"X-Keep": "k", "Connection": "keep-alive, X-Hop", "X-Hop": "h"}},
        ),
        ("HEAD", "/diff/items/1", {"key": key}),
        ("POST", "/diff/items", {"key": key, "content": b"a small body"}),
        ("GET", "/diff/items/1", {}),
        ("GET", "/diff/items/1", {"key": "not-a-key"}),
        ("GET", "/nothing/here", {"key": key}),
        ("GET", "/diff/items/1", {"key": key, "host": "unknown.example"}),
        ("GET", "/diff/mock", {"key": key}),
        ("GET", "/diff/ret", {"key": key}),
        ("GET", "/diff/limited", {"key": key}),
        ("GET", "/diff/limited", {"key": key}),
        ("GET", "/diff/limited", {"key": key}),
        ("GET", "/diff/broken", {"key": key}),
        ("GET", "/diff/strict/status/404", {"key": key}),
        ("GET", "/diff/strict/status/200", {"key": key}),
        ("GET", "/diffdown/x", {"key": key}),
        (
            "OPTIONS",
            "/diff/items/1",
            {"headers": {"Origin": "https://app.test", "Access-Control-Request-Method": "GET"}},
        ),
        ("GET", "/diff/items/1", {"key": key, "headers": {"Origin": "https://app.test"}}),
        ("GET", "/diffodata/People('russell')?$top=1", {"key": key}),
        ("GET", "/diffodata/People", {"key": key, "headers": {"OData-Version": "5.0"}}),
        ("GET", "/diff/oneway", {"key": key}),
        ("GET", "/diff/cached/1", {"key": key, "headers": {"X-Nonce": "first"}}),
        ("GET", "/diff/cached/1", {"key": key, "headers": {"X-Nonce": "second"}}),  # from the cache
        ("POST", "/diff/convert/1", {"key": key, "content": b"<order><id>1</id></order>"}),
        ("POST", "/diff/bodyread/1", {"key": key, "content": b'{"id": "o-1"}'}),
    ]

    def through(port: int) -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        for method, path, kw in requests:
            h = {"Host": kw.get("host", gw.host), **kw.get("headers", {})}
            if "key" in kw:
                h["Ocp-Apim-Subscription-Key"] = kw["key"]
            r = gw.http.request(
                method, f"http://127.0.0.1:{port}{path}", headers=h, content=kw.get("content")
            )
            out.append(_answer(r))
        return out

    # both nodes have the configuration (each polls it on its own)
    for port in (gw.port, asgi_node):
        eventually(lambda p=port: _ready(gw.http, p, gw.host, key), timeout=30)
    time.sleep(0.5)  # and every policy of it
    fast, asgi = through(gw.port), through(asgi_node)
    for (method, path, _kw), a, b in zip(requests, fast, asgi, strict=True):
        assert a == b, f"{method} {path}:\nfast {a}\nasgi {b}"
    statuses = [a[0] for a in fast]
    assert statuses == [
        200,
        200,
        200,
        401,
        401,
        404,
        404,
        202,
        418,
        200,
        200,
        429,
        500,
        404,
        200,
        502,
        200,
        200,
        200,  # OData
        400,  # validate-odata-request
        200,  # send-one-way-request
        200,
        200,
        200,
        200,  # bodyread
    ]
    bodyread = fast[-1]
    assert b'"x-id": "o-1"' in bodyread[2] and bodyread[1]["x-len"] == str(len(bodyread[2]))
    assert b"<path>/base/converted/1</path>" in fast[-2][2] and b"&lt;order&gt;" not in fast[-2][2]
    assert b'<body>{"order":{"id":"1"}}</body>' in fast[-2][2]
    odata, refused = fast[-7], fast[-6]
    assert b"/od/People('russell')" in odata[2] and refused[1]["x-err"] == "validate-odata-request"
    first, second = fast[-4], fast[-3]
    assert second[2] == first[2] and b'"x-nonce": "first"' in second[2]  # the backend saw one call
    assert (second[1]["x-before"], second[1]["x-after"]) == ("first", "second")


def _ready(http: httpx.Client, port: int, host: str, key: str, path: str = "/diff/items/0") -> None:
    try:
        r = http.get(
            f"http://127.0.0.1:{port}{path}", headers={"Host": host, "Ocp-Apim-Subscription-Key": key}
        )
    except httpx.HTTPError as exc:  # not listening yet
        raise AssertionError(str(exc)) from None
    assert r.status_code == 200, r.text


def _until_closed(port: int, data: bytes) -> bytes:
    """Everything the node answers to `data` until it closes the connection (which it must)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_malformed_chunked_body_is_a_counted_400(gw: GatewayEnv, asgi_node: int, backend: str) -> None:
    """A bad chunk in a request body: 400 with Connection: close on both nodes (first on its
    connection, and pipelined behind a request the fast path answers), and a usage record of it."""
    start = datetime.now(UTC) - timedelta(seconds=2)
    gw.api("chunky", "chunky", backend)
    key = gw.subscription("chunky-sub", "/apis")
    for port in (gw.port, asgi_node):
        eventually(lambda p=port: _ready(gw.http, p, gw.host, key, "/chunky/x"), timeout=30)
    head = f"Host: {gw.host}\r\nOcp-Apim-Subscription-Key: {key}\r\n"
    bad = f"POST /chunky/x HTTP/1.1\r\n{head}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n".encode()
    first = f"GET /chunky/a HTTP/1.1\r\n{head}\r\n".encode()
    for port in (gw.port, asgi_node):
        for before in (b"", first):
            out = _until_closed(port, before + bad)
            assert out.count(b"HTTP/1.1 ") == (2 if before else 1), out[:300]
            last = out[out.rindex(b"HTTP/1.1 ") :]
            assert last.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out[:300]
            assert b"connection: close\r\n" in last.lower() and b"malformed chunked" in last
    since = f"timestamp ge datetime'{start.strftime('%Y-%m-%dT%H:%M:%S')}' and apiId eq '/apis/chunky'"

    def counted() -> None:
        reqs = list(gw.client.reports.list_by_request(RG, gw.service, since, top=100))
        assert sum(1 for r in reqs if r.response_code == 400 and r.method == "POST") == 4, reqs

    eventually(counted, timeout=10, interval=0.5)
