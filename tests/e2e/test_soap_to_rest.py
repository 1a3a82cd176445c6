"""SOAP-to-REST end to end: a WSDL imported with apiType 'http' through the Azure SDK, called
through the gateway with JSON, translated to SOAP 1.1 and 1.2 envelopes for a real SOAP backend,
and its answers and faults back to JSON; export, backup/restore of the generated API, and a
malformed WSDL refused with nothing created. (The Azure CLI's import: tests/e2e/test_real_clients.py.)"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import fromstring

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, eventually, gateway_env, make_service
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

CALCULATOR = (Path(__file__).parent.parent / "fixtures" / "wsdl" / "calculator.wsdl").read_text()
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TEMPURI = "http://tempuri.org/"
SVC = "soaprest"


class SoapBackend(BaseHTTPRequestHandler):
    """A calculator answering SOAP 1.1 and 1.2 envelopes (a fault when intA is 13)."""

    protocol_version = "HTTP/1.1"
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(
            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        )
        soap12 = self.headers.get("content-type", "").startswith("application/soap+xml")
        env = SOAP12 if soap12 else SOAP11
        call = fromstring(body).find(f"{{{env}}}Body/{{{TEMPURI}}}Add")
        assert call is not None
        a, b = (int(call.findtext(f"{{{TEMPURI}}}{n}") or "0") for n in ("intA", "intB"))
        if a == 13:
            status, inner = (
                500,
                (
                    "<soap:Fault><faultcode>soap:Server</faultcode><faultstring>Unlucky number</faultstring></soap:Fault>"
                ),
            )
        else:
            status, inner = (
                200,
                f'<AddResponse xmlns="{TEMPURI}"><AddResult>{a + b}</AddResult></AddResponse>',
            )
        answer = f'<soap:Envelope xmlns:soap="{env}"><soap:Body>{inner}</soap:Body></soap:Envelope>'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml" if soap12 else "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def soap_backend() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SoapBackend)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with soap_backend() as url:
        yield url


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., PorticoServer]) -> PorticoServer:
    return server_factory(db="sqlite", env=gateway_env())


@pytest.fixture(scope="module")
def client(server: PorticoServer) -> Any:
    return make_service(server, SVC)


def wsdl_for(backend: str) -> str:
    return CALCULATOR.replace("http://calc.example.org/calculator.asmx", f"{backend}/calculator.asmx")


def import_rest(client: Any, svc: str, api: str, wsdl: str, endpoint: str) -> Any:
    params = M.ApiCreateOrUpdateParameter(
        format="wsdl",
        value=wsdl,
        path=api,
        soap_api_type="http",
        wsdl_selector=M.ApiCreateOrUpdatePropertiesWsdlSelector(
            wsdl_service_name="Calculator", wsdl_endpoint_name=endpoint
        ),
        subscription_required=False,
        protocols=["http", "https"],
    )
    return client.api.begin_create_or_update(RG, svc, api, params).result()


def gateway(server: PorticoServer, svc: str) -> httpx.Client:
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": f"{svc}.{DOMAIN}"}, timeout=30)


def add(http: httpx.Client, path: str, a: int, b: int) -> httpx.Response:
    r = http.post(path, json={"add": {"intA": a, "intB": b}})
    assert r.status_code != 404, r.text  # routed once the gateway has the API
    return r


def test_soap11_through_the_sdk_and_the_gateway(server: PorticoServer, client: Any, backend: str) -> None:
    api = import_rest(client, SVC, "calc", wsdl_for(backend), "CalculatorSoap")
    assert api.api_type == "http" and api.service_url == backend and api.display_name == "Calculator"
    ops = {o.name: o for o in client.api_operation.list_by_api(RG, SVC, "calc")}
    assert {(n, o.method, o.url_template) for n, o in ops.items()} == {
        ("add", "POST", "/Add"),
        ("describe", "POST", "/Describe"),
    }
    assert ops["add"].request.representations[0].content_type == "application/json"
    schemas = list(client.api_schema.list_by_api(RG, SVC, "calc"))
    assert len(schemas) == 1 and schemas[0].content_type.endswith("swagger.definitions+json")
    policy = client.api_operation_policy.get(RG, SVC, "calc", "add", "policy").value
    assert '<set-body template="liquid"' in policy and "body.envelope.body.AddResponse" in policy

    SoapBackend.received.clear()
    with gateway(server, SVC) as http:
        r = eventually(lambda: add(http, "/calc/Add", 2, 40), timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"addResponse": {"addResult": 42}}
        sent = SoapBackend.received[-1]
        assert sent["path"] == "/calculator.asmx"
        assert sent["headers"]["soapaction"] == '"http://tempuri.org/Add"'
        assert sent["headers"]["content-type"] == "text/xml; charset=utf-8"
        envelope = fromstring(sent["body"])
        assert envelope.tag == f"{{{SOAP11}}}Envelope"
        call = envelope.find(f"{{{SOAP11}}}Body/{{{TEMPURI}}}Add")
        assert call is not None and [(c.tag, c.text) for c in call] == [
            (f"{{{TEMPURI}}}intA", "2"),
            (f"{{{TEMPURI}}}intB", "40"),
        ]
        fault = add(http, "/calc/Add", 13, 1)
        assert fault.status_code == 500
        assert fault.json() == {"error": {"code": "soap:Server", "message": "Unlucky number"}}

    # re-importing the same WSDL leaves the generated policies as they were (same ETag)
    def etag() -> str:
        return str(
            client.api_operation_policy.get(RG, SVC, "calc", "add", "policy", cls=lambda _r, _o, h: h["ETag"])
        )

    before = etag()
    import_rest(client, SVC, "calc", wsdl_for(backend), "CalculatorSoap")
    assert etag() == before


def test_soap12_endpoint_through_the_gateway(server: PorticoServer, client: Any, backend: str) -> None:
    import_rest(client, SVC, "calc12", wsdl_for(backend), "CalculatorSoap12")
    SoapBackend.received.clear()
    with gateway(server, SVC) as http:
        r = eventually(lambda: add(http, "/calc12/Add", 5, 6), timeout=10)
        assert r.status_code == 200 and r.json() == {"addResponse": {"addResult": 11}}
    sent = SoapBackend.received[-1]
    assert (
        sent["headers"]["content-type"]
        == 'application/soap+xml; charset=utf-8; action="http://tempuri.org/Add"'
    )
    assert "soapaction" not in sent["headers"]
    assert fromstring(sent["body"]).tag == f"{{{SOAP12}}}Envelope"


def test_export_of_the_generated_api(client: Any, backend: str) -> None:
    import_rest(client, SVC, "calcexp", wsdl_for(backend), "CalculatorSoap")
    with pytest.raises(HttpResponseError) as err:
        client.api_export.get(RG, SVC, "calcexp", format="wsdl-link", export="true")
    assert err.value.status_code == 400 and "WSDL export" in str(err.value)
    exported = client.api_export.get(RG, SVC, "calcexp", format="openapi+json-link", export="true")
    assert exported.value is not None and exported.value.link


def test_malformed_wsdl_creates_nothing(client: Any) -> None:
    for bad in ("<definitions", CALCULATOR.replace('element="tns:Add"', 'element="tns:Missing"')):
        params = M.ApiCreateOrUpdateParameter(
            format="wsdl",
            value=bad,
            path="broken",
            soap_api_type="http",
            wsdl_selector=M.ApiCreateOrUpdatePropertiesWsdlSelector(
                wsdl_service_name="Calculator", wsdl_endpoint_name="CalculatorSoap"
            ),
        )
        with pytest.raises(HttpResponseError) as err:
            client.api.begin_create_or_update(RG, SVC, "broken", params).result()
        assert err.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        client.api.get(RG, SVC, "broken")


def test_generated_api_survives_backup_and_restore(server: PorticoServer, client: Any, backend: str) -> None:
    key = server.cli("storage", "account", "create", "soapbackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "soapbackups", "backups")
    make_service(server, "soaprest-dst")
    import_rest(client, SVC, "calcbk", wsdl_for(backend), "CalculatorSoap")
    bk = M.ApiManagementServiceBackupRestoreParameters(
        storage_account="soapbackups", container_name="backups", backup_name="soap", access_key=key
    )
    client.api_management_service.begin_backup(RG, SVC, bk).result()
    client.api_management_service.begin_restore(RG, "soaprest-dst", bk).result()

    def config(svc: str) -> Any:
        ops = {o.name: o.as_dict() for o in client.api_operation.list_by_api(RG, svc, "calcbk")}
        for o in ops.values():
            o.pop("id")
        schemas = {
            s.name: json.dumps(s.as_dict().get("definitions"), sort_keys=True)
            for s in client.api_schema.list_by_api(RG, svc, "calcbk")
        }
        policies = {n: client.api_operation_policy.get(RG, svc, "calcbk", n, "policy").value for n in ops}
        return ops, schemas, policies

    src = config(SVC)
    assert len(src[0]) == 2 and len(src[1]) == 1 and all("liquid" in p for p in src[2].values())
    assert config("soaprest-dst") == src
    with gateway(server, "soaprest-dst") as http:
        r = eventually(lambda: add(http, "/calcbk/Add", 20, 22), timeout=10)
        assert r.status_code == 200 and r.json() == {"addResponse": {"addResult": 42}}
