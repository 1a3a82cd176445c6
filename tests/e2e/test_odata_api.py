"""OData APIs end to end with the Azure SDK: `odata-link` (served by a local HTTP server) and inline
`odata` imports create an `odata` API with its EDMX kept as the OData schema and no operations;
the gateway passes every path under it (entity sets, keys, `$metadata`, query options) to the
service with a product subscription's key, and validate-odata-request refuses a bad OData-Version.
The az CLI is not exercised: `az apim api import --specification-format` offers no OData format."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, eventually, gateway_env, make_service
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent.parent / "fixtures" / "odata"
TRIPPIN = (FIXTURES / "trippin-v4.xml").read_text()
NORTHWIND = (FIXTURES / "northwind-v2.xml").read_text()
ODATA_SCHEMA = "application/vnd.ms-azure-apim.odata.schema"
SVC = "odatagw"


class _ODataService(BaseHTTPRequestHandler):
    """A small OData-ish service: its metadata, and every other path echoed back as JSON."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/trip/$metadata":
            self._send(200, "application/xml", TRIPPIN.encode())
            return
        echo = {
            "path": url.path,
            "query": dict(parse_qsl(url.query, keep_blank_values=True)),
            "odataVersion": self.headers.get("OData-Version"),
            "key": self.headers.get("Ocp-Apim-Subscription-Key"),
        }
        self._send(200, "application/json", json.dumps(echo).encode())

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def odata_service() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ODataService)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _status(err: HttpResponseError) -> int:
    assert err.response is not None
    return int(err.response.status_code)


def test_odata_import_gateway_and_policy(
    server_factory: Callable[..., PorticoServer], odata_service: str
) -> None:
    server = server_factory(db="sqlite", env=gateway_env())
    client = make_service(server, SVC)

    # odata-link: the serviceUrl is the link without /$metadata; the schema is the EDMX; no operations.
    api = client.api.begin_create_or_update(
        RG,
        SVC,
        "trip",
        M.ApiCreateOrUpdateParameter(
            format="odata-link",
            value=f"{odata_service}/trip/$metadata",
            path="trip",
            display_name="TripPin",
            protocols=["http", "https"],
        ),
    ).result()
    assert api.api_type == "odata" and api.service_url == f"{odata_service}/trip"
    schemas = list(client.api_schema.list_by_api(RG, SVC, "trip"))
    assert [(s.name, s.content_type) for s in schemas] == [("odata", ODATA_SCHEMA)]
    assert schemas[0].value == TRIPPIN
    assert list(client.api_operation.list_by_api(RG, SVC, "trip")) == []

    # Inline odata: the serviceUrl is required (a 400 naming it, nothing created); a broken
    # document is refused with its line, nothing created either.
    def inline(api_id: str, value: str, service_url: str | None) -> M.ApiContract:
        params = M.ApiCreateOrUpdateParameter(
            format="odata", value=value, path=api_id, display_name=api_id, service_url=service_url
        )
        return client.api.begin_create_or_update(RG, SVC, api_id, params).result()

    with pytest.raises(HttpResponseError) as err:
        inline("nw", NORTHWIND, None)
    assert _status(err.value) == 400 and "serviceUrl" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        inline("nw", NORTHWIND.replace("</Schema>", "</Schemaa>", 1), "https://nw.example/V2")
    assert _status(err.value) == 400 and "line 25" in str(err.value.message), err.value.message
    with pytest.raises(ResourceNotFoundError):
        client.api.get(RG, SVC, "nw")
    nw = inline("nw", NORTHWIND, "https://nw.example/V2")
    assert nw.api_type == "odata" and nw.service_url == "https://nw.example/V2"
    # Re-import replaces the schema.
    inline("nw", TRIPPIN, "https://nw.example/V4")
    assert client.api_schema.get(RG, SVC, "nw", "odata").value == TRIPPIN

    # A schema PUT directly is checked as an import is (the gateway reads it).
    with pytest.raises(HttpResponseError) as err:
        client.api_schema.begin_create_or_update(
            RG, SVC, "nw", "odata", M.SchemaContract(content_type=ODATA_SCHEMA, value="<Edmx/>")
        ).result()
    assert _status(err.value) == 400 and "not an OData metadata document" in str(err.value.message)
    assert client.api_schema.get(RG, SVC, "nw", "odata").value == TRIPPIN

    # Export: API Management exports no Swagger/OpenAPI/WSDL/WADL of an OData API.
    with pytest.raises(HttpResponseError) as err:
        client.api_export.get(RG, SVC, "trip", format="openapi-link", export="true")
    assert _status(err.value) == 400 and "OData" in str(err.value.message)

    # Keys and products as for any API: a product subscription's key opens the API.
    client.product.create_or_update(
        RG,
        SVC,
        "odata",
        M.ProductContract(display_name="OData", subscription_required=True, state="published"),
    )
    client.product_api.create_or_update(RG, SVC, "odata", "trip")
    sub = client.subscription.create_or_update(
        RG,
        SVC,
        "odata-sub",
        M.SubscriptionCreateParameters(scope="/products/odata", display_name="S", state="active"),
    )
    key = client.subscription.list_secrets(RG, SVC, sub.name).primary_key
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": f"{SVC}.{DOMAIN}"}, timeout=30)

    def echoed(path: str, **kw: Any) -> dict[str, Any]:
        r = http.get(path, headers={"Ocp-Apim-Subscription-Key": key, **kw.pop("headers", {})}, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        doc: dict[str, Any] = r.json()
        return doc

    got = eventually(lambda: echoed("/trip/People?$top=2&$filter=FirstName eq 'Scott'"), timeout=10)
    assert got["path"] == "/trip/People"
    assert got["query"] == {"$top": "2", "$filter": "FirstName eq 'Scott'"}
    assert echoed("/trip/People('russell')")["path"] == "/trip/People('russell')"
    assert echoed("/trip/People('russell')/Friends?$select=UserName")["query"] == {"$select": "UserName"}
    meta = http.get("/trip/$metadata?$format=xml", headers={"Ocp-Apim-Subscription-Key": key})
    assert meta.status_code == 200 and meta.text == TRIPPIN
    assert http.get("/trip/People").status_code == 401  # no key
    assert http.get("/trip/People", headers={"Ocp-Apim-Subscription-Key": "wrong"}).status_code == 401

    # validate-odata-request at API scope: an unsupported OData-Version is refused before the backend.
    policy = (
        '<policies><inbound><base /><validate-odata-request error-variable-name="odataErrors" '
        'min-odata-version="4.0" max-odata-version="4.01" /></inbound><backend><base /></backend>'
        "<outbound><base /></outbound><on-error><base /></on-error></policies>"
    )
    client.api_policy.create_or_update(
        RG, SVC, "trip", "policy", M.PolicyContract(value=policy, format="rawxml")
    )

    def refused() -> httpx.Response:
        r = http.get("/trip/People", headers={"Ocp-Apim-Subscription-Key": key, "OData-Version": "3.0"})
        assert r.status_code == 400, r.text[:300]
        return r

    answer = eventually(refused, timeout=10)
    assert "below the minimum version 4.0" in answer.json()["message"]
    assert echoed("/trip/People", headers={"OData-Version": "4.0"})["odataVersion"] == "4.0"
    bad_option = http.get("/trip/People?$frobnicate=1", headers={"Ocp-Apim-Subscription-Key": key})
    assert bad_option.status_code == 400 and "$frobnicate" in bad_option.json()["message"]
    unknown = http.get("/trip/Nobody", headers={"Ocp-Apim-Subscription-Key": key})
    assert unknown.status_code == 400 and "'Nobody'" in unknown.json()["message"]

    # The policy has no operation scope (OData APIs have no operations).
    client.api_operation.create_or_update(
        RG,
        SVC,
        "trip",
        "people",
        M.OperationContract(display_name="People", method="GET", url_template="/People"),
    )
    with pytest.raises(HttpResponseError) as err:
        client.api_operation_policy.create_or_update(
            RG, SVC, "trip", "people", "policy", M.PolicyContract(value=policy, format="rawxml")
        )
    assert _status(err.value) == 400 and "operation scope" in str(err.value.message)
