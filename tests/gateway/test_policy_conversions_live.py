"""Body conversion policies end to end: stored through the Azure SDK, served by the Portico gateway
in front of a small backend that answers XML and JSON (whole or streamed in chunks)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.gateway.conftest import GatewayEnv, eventually, unique

pytestmark = pytest.mark.slow

ORDERS = (
    '<orders><order id="1"><item>pen</item><item>ink</item><self>{base}/svc/orders/1</self></order></orders>'
)


class _XmlBackend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = 0  # of /svc/counted

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/svc/orders"):
            self._send(200, "text/xml; charset=utf-8", ORDERS.format(base=base).encode())
        elif self.path.startswith("/svc/counted"):
            type(self).calls += 1
            self._send(200, "application/xml", b"<n>%d</n>" % type(self).calls)
        elif self.path.startswith("/svc/streamed"):
            # a chunked answer whose body is still arriving when the gateway gets its head
            self.send_response(200)
            self.send_header("content-type", "application/xml")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (b"<list>", b"<n>1</n>", b"<n>2</n>", b"</list>"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(200, "application/json", b'{"name": "widget", "tags": ["a", "b"]}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        echo = {"contentType": self.headers.get("content-type"), "body": body.decode()}
        self._send(200, "application/json", json.dumps(echo).encode())


@pytest.fixture(scope="module")
def xml_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _XmlBackend)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_conversions_through_the_sdk_and_the_gateway(gw: GatewayEnv, xml_backend: str) -> None:
    api = unique("conv")
    gw.api(
        api,
        api,
        xml_backend + "/svc",
        ops=[
            ("orders", "GET", "/orders"),
            ("streamed", "GET", "/streamed"),
            ("data", "GET", "/data"),
            ("echo", "POST", "/echo"),
            ("counted", "GET", "/counted"),
        ],
    )
    key = gw.subscription(unique("convsub"), "/apis")
    gw.policy(
        "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base />"
        "<redirect-content-urls />"
        '<xml-to-json kind="javascript-friendly" apply="content-type-xml" consider-accept-header="true" />'
        '<find-and-replace from="pen" to="pencil" />'
        "</outbound><on-error><base /></on-error></policies>",
        api=api,
        operation="orders",
    )
    gw.policy(
        '<policies><inbound><base /></inbound><outbound><base /><xml-to-json kind="direct" apply="always"'
        ' consider-accept-header="false" always-array-child-elements="true" /></outbound></policies>',
        api=api,
        operation="streamed",
    )
    gw.policy(
        '<policies><inbound><base /></inbound><outbound><base /><jsonp callback-parameter-name="cb" />'
        "</outbound></policies>",
        api=api,
        operation="data",
    )
    gw.policy(
        '<policies><inbound><base /><json-to-xml apply="content-type-json" consider-accept-header="false" />'
        "</inbound><outbound><base /></outbound></policies>",
        api=api,
        operation="echo",
    )
    gw.policy(  # cache-store keeps the backend's XML; what follows it converts each answer
        '<policies><inbound><base /><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" />'
        '</inbound><outbound><base /><cache-store duration="60" />'
        '<xml-to-json kind="direct" apply="always" consider-accept-header="false" /></outbound></policies>',
        api=api,
        operation="counted",
    )
    gateway = f"http://{gw.host}/{api}"

    def converted() -> Any:
        r = gw.get(f"/{api}/orders", key=key, headers={"Accept": "application/json"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
        return r.json()

    assert eventually(converted, timeout=10) == {
        "orders": {"order": {"id": "1", "item": ["pencil", "ink"], "self": f"{gateway}/orders/1"}}
    }
    # a client that does not ask for JSON gets the XML, its links rewritten all the same
    r = gw.get(f"/{api}/orders", key=key, headers={"Accept": "text/xml"})
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text == (
        f'<orders><order id="1"><item>pencil</item><item>ink</item><self>{gateway}/orders/1</self></order></orders>'
    )

    def streamed() -> Any:
        r = gw.get(f"/{api}/streamed", key=key)
        assert r.headers["content-type"] == "application/json", r.text
        return r.json()

    assert eventually(streamed, timeout=10) == {"list": {"n": ["1", "2"]}}

    def jsonp() -> bytes:
        r = gw.get(f"/{api}/data?cb=show", key=key)
        assert r.headers["content-type"].startswith("application/javascript"), r.text
        return r.content

    assert eventually(jsonp, timeout=10) == b'show({"name": "widget", "tags": ["a", "b"]});'
    assert gw.get(f"/{api}/data", key=key).json() == {"name": "widget", "tags": ["a", "b"]}
    assert gw.get(f"/{api}/data?cb=x%3Balert(1)", key=key).status_code == 400

    def counted() -> Any:
        r = gw.get(f"/{api}/counted", key=key)
        assert r.headers["content-type"] == "application/json", r.text
        return r.json()

    first = eventually(counted, timeout=10)
    assert first == {"n": str(_XmlBackend.calls)}
    assert counted() == first  # from the cache, converted again

    def echoed() -> Any:
        r = gw.call("POST", f"/{api}/echo", key=key, json={"order": {"id": 7, "items": ["pen", "ink"]}})
        assert r.status_code == 200, r.text
        assert r.json()["contentType"] == "application/xml", r.text
        return r.json()["body"]

    assert eventually(echoed, timeout=10) == "<order><id>7</id><items>pen</items><items>ink</items></order>"
    chunked = gw.call(
        "POST",
        f"/{api}/echo",
        key=key,
        content=iter([b'{"a": {"b"', b': "c"}}']),  # no length: sent chunked
        headers={"Content-Type": "application/json"},
    )
    assert chunked.json() == {"contentType": "application/xml", "body": "<a><b>c</b></a>"}
    bad = gw.call(
        "POST", f"/{api}/echo", key=key, content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]


def test_invalid_conversion_policies_are_refused_by_the_control_plane(gw: GatewayEnv) -> None:
    api = unique("convbad")
    gw.api(api, api, "http://127.0.0.1:9/svc")
    for xml, named in (
        ('<xml-to-json kind="pretty" apply="always" />', "kind"),
        ('<json-to-xml apply="always" namespace-separator="::" />', "namespace-separator"),
        ('<find-and-replace from="a" />', "'to' is required"),
        ("<xsl-transform />", "xsl-transform"),
    ):
        with pytest.raises(HttpResponseError) as exc:
            gw.policy(f"<policies><inbound /><outbound>{xml}</outbound></policies>", api=api)
        assert exc.value.status_code == 400 and named in str(exc.value.message), exc.value.message
