"""WebSocket APIs end to end: created with the Azure SDK (Azure's shape: the onHandshake operation
made with the API, ws/wss only), then real `websockets` clients through the Portico gateway to a
real WebSocket echo backend: the subscription key, an onHandshake policy header the backend sees,
messages both ways, subprotocols, close propagation both ways, the message size and idle limits,
a refusing and an unreachable backend, and the handshake in the usage reports."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M
from cryptography.hazmat.primitives.serialization import Encoding
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway.conftest import RG, GatewayEnv, closed_port, eventually, gateway_env, make_service, unique
from tests.gateway.test_policies import doc
from tests.support.certs import CertificateAuthority
from tests.support.server import PorticoServer
from tests.support.ws_echo import EchoBackend, echo_backend

pytestmark = pytest.mark.slow

MAX_MESSAGE = 65536
IDLE = 3


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoBackend]:
    with echo_backend() as backend:
        yield backend


@pytest.fixture(scope="module")
def wsgw(server_factory: Callable[..., PorticoServer]) -> Iterator[GatewayEnv]:
    server = server_factory(
        db="sqlite",
        env=gateway_env(
            PORTICO_GATEWAY_WEBSOCKET_MAX_MESSAGE_BYTES=str(MAX_MESSAGE),
            PORTICO_GATEWAY_WEBSOCKET_IDLE_SECONDS=str(IDLE),
        ),
    )
    name = unique("wssvc")
    client = make_service(server, name)
    with httpx.Client(timeout=30) as http:
        yield GatewayEnv(server, client, http, name)


def _ws_api(gw: GatewayEnv, name: str, url: str, **props: Any) -> Any:
    return gw.client.api.begin_create_or_update(
        RG,
        gw.service,
        name,
        M.ApiCreateOrUpdateParameter(
            path=name, display_name=name, api_type="websocket", service_url=url, **props
        ),
    ).result()


@pytest.fixture(scope="module")
def api(wsgw: GatewayEnv, echo: EchoBackend) -> dict[str, str]:
    name = unique("chat")
    _ws_api(wsgw, name, echo.url + "/socket", protocols=["ws", "wss"])
    wsgw.policy(
        doc(
            inbound='<base /><set-header name="X-From-Gateway" exists-action="override">'
            "<value>@(context.Operation.Name)</value></set-header>"
        ),
        api=name,
        operation="onHandshake",
    )
    key = wsgw.subscription(unique("wssub"), f"/apis/{name}")
    return {"name": name, "key": key}


def _open(gw: GatewayEnv, path: str, **kw: Any) -> Any:
    """A `websockets` connection to the gateway's HTTP port, addressed to the service's host."""
    return connect(f"ws://{gw.host}:{gw.port}{path}", host="127.0.0.1", port=gw.port, open_timeout=20, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _hello(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 20)))


def _until_live(gw: GatewayEnv, path: str, status: int = 101) -> None:
    """Wait until the handshake on `path` gets `status` (the gateway's configuration, keys
    included, arrives a poll after the write)."""

    async def probe() -> None:
        try:
            async with _open(gw, path):
                got = 101
        except InvalidStatus as exc:
            got = exc.response.status_code
        assert got == status, f"{got}, not yet {status}"

    def check() -> None:
        run(probe())

    eventually(check, timeout=10, interval=0.2)


def test_websocket_api_has_azure_shape(wsgw: GatewayEnv, echo: EchoBackend) -> None:
    c, name = wsgw.client, unique("shape")
    created = _ws_api(wsgw, name, "wss://example.com/socket")
    assert created.api_type == "websocket" and created.protocols == ["wss"]
    again = c.api.begin_create_or_update(
        RG,
        wsgw.service,
        name,
        M.ApiCreateOrUpdateParameter(
            path=name, display_name="renamed", service_url="wss://example.com/socket"
        ),
    ).result()
    assert again.api_type == "websocket" and again.display_name == "renamed"  # a PUT keeps the type
    ops = list(c.api_operation.list_by_api(RG, wsgw.service, name))
    assert [(o.name, o.display_name, o.method, o.url_template) for o in ops] == [
        ("onHandshake", "onHandshake", "GET", "/")
    ]
    refused = [
        lambda: c.api_operation.create_or_update(
            RG,
            wsgw.service,
            name,
            "other",
            M.OperationContract(display_name="o", method="GET", url_template="/x"),
        ),
        lambda: c.api_operation.delete(RG, wsgw.service, name, "onHandshake", if_match="*"),
        lambda: c.api_policy.create_or_update(
            RG, wsgw.service, name, "policy", M.PolicyContract(value=doc(), format="xml")
        ),
        lambda: c.api_operation_policy.create_or_update(
            RG,
            wsgw.service,
            name,
            "onHandshake",
            "policy",
            M.PolicyContract(value=doc(inbound="<mock-response status-code='200' />"), format="xml"),
        ),
        lambda: _ws_api(wsgw, unique("badurl"), "https://example.com/socket"),
        lambda: _ws_api(wsgw, unique("badproto"), "wss://example.com/socket", protocols=["https"]),
        lambda: c.api.begin_create_or_update(
            RG,
            wsgw.service,
            unique("imported"),
            M.ApiCreateOrUpdateParameter(
                path=unique("imp"),
                api_type="websocket",
                format="openapi+json",
                value=json.dumps({"openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "paths": {}}),
            ),
        ).result(),
    ]
    for call in refused:
        with pytest.raises(HttpResponseError) as err:
            call()
        assert err.value.status_code == 400, err.value.message
    assert len(list(c.api_operation.list_by_api(RG, wsgw.service, name))) == 1
    # a template that declares the operation as Azure made it deploys unchanged
    same = c.api_operation.create_or_update(
        RG,
        wsgw.service,
        name,
        "onHandshake",
        M.OperationContract(display_name="onHandshake", method="GET", url_template="/"),
    )
    assert (same.name, same.method, same.url_template) == ("onHandshake", "GET", "/")
    # the one place policies go
    c.api_operation_policy.create_or_update(
        RG, wsgw.service, name, "onHandshake", "policy", M.PolicyContract(value=doc(), format="xml")
    )


def test_messages_keys_policies_and_close(wsgw: GatewayEnv, api: dict[str, str]) -> None:
    path = f"/{api['name']}"
    _until_live(wsgw, f"{path}?subscription-key={api['key']}")
    start = datetime.now(UTC) - timedelta(seconds=5)

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with _open(wsgw, path):
                pass
        assert refused.value.response.status_code == 401
        # the key in the query string, as Azure takes it for WebSocket clients
        async with _open(wsgw, f"{path}?subscription-key={api['key']}&x=1", subprotocols=["chat.v2"]) as ws:
            hello = await _hello(ws)
            assert hello["headers"]["x-from-gateway"] == "onHandshake"
            assert hello["path"] == "/socket" and "x=1" in hello["query"]
            assert hello["subprotocol"] == "chat.v2" and ws.subprotocol == "chat.v2"
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 20) == "hello"
            await ws.send(b"\x00\x01binary")
            assert await asyncio.wait_for(ws.recv(), 20) == b"\x00\x01binary"
            big = "x" * (MAX_MESSAGE - 100)  # under the limit: passes
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 20) == big
            # the backend closes: its code and reason reach the client
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "backend says bye")
        # the key in the header too
        async with _open(wsgw, path, additional_headers={"Ocp-Apim-Subscription-Key": api["key"]}) as ws:
            await _hello(ws)
            await ws.close(4001, "client leaves")

    run(scenario())
    reports = wsgw.client.reports
    f = f"timestamp ge datetime'{start.strftime('%Y-%m-%dT%H:%M:%S')}' and apiId eq '/apis/{api['name']}'"

    def recorded() -> None:
        codes = sorted(r.response_code for r in reports.list_by_request(RG, wsgw.service, f, top=100))
        assert codes.count(101) >= 2 and 401 in codes, codes

    eventually(recorded, timeout=10, interval=0.3)


def test_client_close_reaches_backend(wsgw: GatewayEnv, api: dict[str, str], echo: EchoBackend) -> None:
    path = f"/{api['name']}?subscription-key={api['key']}"
    _until_live(wsgw, path)
    before = len(echo.closes)

    async def scenario() -> None:
        async with _open(wsgw, path) as ws:
            await _hello(ws)
            await ws.close(4002, "done here")

    run(scenario())
    eventually(lambda: _assert(4002 in echo.closes[before:], echo.closes), timeout=10)


def _assert(ok: bool, detail: Any) -> None:
    assert ok, detail


def test_message_size_and_idle_limits(wsgw: GatewayEnv, api: dict[str, str]) -> None:
    path = f"/{api['name']}?subscription-key={api['key']}"
    _until_live(wsgw, path)

    async def scenario() -> None:
        async with _open(wsgw, path) as ws:
            await _hello(ws)
            await ws.send("y" * (MAX_MESSAGE + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        async with _open(wsgw, path, ping_interval=None) as ws:
            await _hello(ws)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), IDLE + 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001

    run(scenario())


def test_refusing_and_unreachable_backends(wsgw: GatewayEnv, api: dict[str, str], echo: EchoBackend) -> None:
    down = unique("down")
    _ws_api(
        wsgw, down, f"ws://127.0.0.1:{closed_port()}/socket", protocols=["ws"], subscription_required=False
    )
    _until_live(wsgw, f"/{down}", 502)

    async def status(path: str) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with _open(wsgw, path):
                pass
        return int(refused.value.response.status_code)

    async def scenario() -> None:
        assert await status(f"/{down}") == 502
        assert await status(f"/{api['name']}?subscription-key={api['key']}&handshake-403=1") == 403

    run(scenario())
    # plain HTTP to a WebSocket API is not routed (its protocols are ws/wss)
    assert wsgw.get(f"/{api['name']}", key=api["key"]).status_code == 404


def test_wss_on_the_https_port(wsgw: GatewayEnv, api: dict[str, str]) -> None:
    path = f"/{api['name']}?subscription-key={api['key']}"
    _until_live(wsgw, path)
    context = ssl.create_default_context(cafile=wsgw.server.ca)

    async def scenario() -> None:
        url = f"wss://{wsgw.host}:{wsgw.https_port}{path}"
        async with connect(url, host="127.0.0.1", port=wsgw.https_port, ssl=context, open_timeout=20) as ws:
            hello = await _hello(ws)
            assert hello["headers"]["x-forwarded-proto"] == "https"
            await ws.send("over tls")
            assert await asyncio.wait_for(ws.recv(), 20) == "over tls"

    run(scenario())


def test_graphql_subscriptions(wsgw: GatewayEnv, echo: EchoBackend) -> None:
    """Pass-through GraphQL APIs relay WebSocket subscriptions (graphql-transport-ws) to their
    serviceUrl; synthetic ones refuse them with a 400."""
    c, passing, synthetic = wsgw.client, unique("gqlpass"), unique("gqlsyn")
    c.api.begin_create_or_update(
        RG,
        wsgw.service,
        passing,
        M.ApiCreateOrUpdateParameter(
            path=passing,
            display_name=passing,
            api_type="graphql",
            service_url=echo.url.replace("ws://", "http://") + "/graphql",
            protocols=["http", "ws"],
            subscription_required=False,
        ),
    ).result()
    c.api.begin_create_or_update(
        RG,
        wsgw.service,
        synthetic,
        M.ApiCreateOrUpdateParameter(
            path=synthetic,
            display_name=synthetic,
            api_type="graphql",
            protocols=["ws"],
            subscription_required=False,
        ),
    ).result()
    c.api_schema.begin_create_or_update(
        RG,
        wsgw.service,
        synthetic,
        "graphql",
        M.SchemaContract(
            content_type="application/vnd.ms-azure-apim.graphql.schema",
            value="type Query { a: String } type Subscription { ticks: Int }",
        ),
    ).result()
    _until_live(wsgw, f"/{synthetic}", 400)
    _until_live(wsgw, f"/{passing}")

    async def scenario() -> None:
        async with _open(wsgw, f"/{passing}", subprotocols=["graphql-transport-ws"]) as ws:
            hello = await _hello(ws)
            assert hello["path"] == "/graphql" and ws.subprotocol == "graphql-transport-ws"
            init = json.dumps({"type": "connection_init", "payload": {}})
            await ws.send(init)
            assert await asyncio.wait_for(ws.recv(), 20) == init

    run(scenario())


def _raw_handshake(gw: GatewayEnv, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """(status, head) of an opening handshake written by hand (what a library would not send)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {gw.host}", "Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split(" ", 2)[1]), head.lower()


def test_invalid_handshakes(wsgw: GatewayEnv, api: dict[str, str]) -> None:
    path = f"/{api['name']}?subscription-key={api['key']}"
    _until_live(wsgw, path)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    status, head = _raw_handshake(wsgw, path, {"Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": key})
    assert status == 426 and "sec-websocket-version: 13" in head
    assert _raw_handshake(wsgw, path, {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "short"})[0] == 400
    status, head = _raw_handshake(wsgw, path, {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key})
    assert status == 101 and "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head


def test_wss_backend_checked_as_http_backends_are(wsgw: GatewayEnv, tmp_path: Path) -> None:
    """A wss:// backend's certificate must be trusted (the service's CA certificates, store Root)."""
    ca = CertificateAuthority()
    chain = tmp_path / "backend.pem"
    chain.write_bytes(ca.server_pem("localhost"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(chain))
    with echo_backend(context) as secure:
        name = unique("secure")
        _ws_api(wsgw, name, secure.url + "/socket", protocols=["ws"], subscription_required=False)
        _until_live(wsgw, f"/{name}", 502)  # an unknown CA: the handshake fails
        der = ca.cert.public_bytes(Encoding.DER)
        wsgw.client.api_management_service.begin_create_or_update(
            RG,
            wsgw.service,
            {
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {
                    "publisherEmail": "ops@contoso.com",
                    "publisherName": "Contoso",
                    "certificates": [
                        {"encodedCertificate": base64.b64encode(der).decode(), "storeName": "Root"}
                    ],
                },
            },
        ).result()
        _until_live(wsgw, f"/{name}")

        async def scenario() -> None:
            async with _open(wsgw, f"/{name}") as ws:
                assert (await _hello(ws))["path"] == "/socket"
                await ws.send("secret")
                assert await asyncio.wait_for(ws.recv(), 20) == "secret"

        run(scenario())


def test_rate_limit_on_the_handshake(wsgw: GatewayEnv, echo: EchoBackend) -> None:
    name = unique("limited")
    _ws_api(wsgw, name, echo.url + "/socket", protocols=["ws"], subscription_required=False)
    wsgw.policy(
        doc(inbound='<base /><rate-limit calls="1" renewal-period="300" />'),
        api=name,
        operation="onHandshake",
    )
    _until_live(wsgw, f"/{name}", 429)  # the probes' handshakes used the one call

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with _open(wsgw, f"/{name}"):
                pass
        assert refused.value.response.status_code == 429
        assert "retry-after" in refused.value.response.headers

    run(scenario())


def test_send_request_on_the_handshake(wsgw: GatewayEnv, echo: EchoBackend, backend: str) -> None:
    """A policy's own request (send-request) on onHandshake goes out through the HTTP client, and
    its answer can shape the backend handshake's headers."""
    name = unique("side")
    _ws_api(wsgw, name, echo.url + "/socket", protocols=["ws"], subscription_required=False)
    wsgw.policy(
        doc(
            inbound='<base /><send-request mode="new" response-variable-name="side" timeout="10">'
            f"<set-url>{backend}/lookup</set-url><set-method>GET</set-method></send-request>"
            '<set-header name="X-Side" exists-action="override"><value>'
            '@((string)((IResponse)context.Variables["side"]).Body.As&lt;JObject&gt;()["path"])'
            "</value></set-header>"
        ),
        api=name,
        operation="onHandshake",
    )

    async def seen() -> dict[str, Any]:
        async with _open(wsgw, f"/{name}") as ws:
            return await _hello(ws)

    def check() -> None:
        try:
            hello = run(seen())
        except InvalidStatus as exc:
            raise AssertionError(str(exc)) from None
        assert hello["headers"].get("x-side") == "/lookup", hello["headers"]

    eventually(check, timeout=10, interval=0.3)
