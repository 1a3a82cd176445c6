"""API import and export end to end: real definitions through the Azure SDK, links served by a
local HTTP server, hostile inputs answered 400 with nothing created, export links without a
token, and imported configuration carried by backup/restore."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M
from graphql import build_schema, graphql_sync

from tests.conftest import sdk_client
from tests.e2e.dr_support import SUB, Rest
from tests.resources.test_importers import WSDL, generated
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openapi"
RG = "rg-import"
GRAPHQL_SDL = "type Query { hello(name: String): String }"


class _Docs(BaseHTTPRequestHandler):
    files: dict[str, tuple[str, bytes]] = {}

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/petstore.yaml")
            self.end_headers()
            return
        found = self.files.get(self.path)
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", found[0])
        self.send_header("Content-Length", str(len(found[1])))
        self.end_headers()
        self.wfile.write(found[1])

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        query = json.loads(self.rfile.read(length))["query"]
        result = graphql_sync(build_schema(GRAPHQL_SDL), query)
        body = json.dumps({"data": result.data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def docs() -> Iterator[str]:
    _Docs.files = {
        "/petstore.yaml": ("application/yaml", (FIXTURES / "petstore.yaml").read_bytes()),
        "/uspto.yaml": ("application/yaml", (FIXTURES / "uspto.yaml").read_bytes()),
        "/uber.json": ("application/json", (FIXTURES / "uber.json").read_bytes()),
        "/calc.wsdl": ("text/xml", WSDL.encode()),
        "/huge.json": ("application/json", b'{"openapi": "3.0.0", "x": "' + b"a" * 2_000_000 + b'"}'),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Docs)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(server_factory: Callable[..., PorticoServer], request: pytest.FixtureRequest) -> PorticoServer:
    return server_factory(
        db=request.param, env={"PORTICO_IMPORT_FETCH_TIMEOUT": "2", "PORTICO_IMPORT_MAX_BYTES": "1048576"}
    )


@pytest.fixture(scope="module")
def rest(server: PorticoServer) -> Rest:
    r = Rest(server)
    r.service(RG, "imports")
    return r


@pytest.fixture(scope="module")
def client(server: PorticoServer, rest: Rest) -> Any:
    return sdk_client(server, SUB)


def _import(client: Any, api: str, fmt: str, value: str, path: str | None = None, **kw: Any) -> Any:
    params = M.ApiCreateOrUpdateParameter(format=fmt, value=value, path=path or api, **kw)
    return client.api.begin_create_or_update(RG, "imports", api, params).result()


def _ops(client: Any, api: str) -> dict[str, Any]:
    return {o.name: o for o in client.api_operation.list_by_api(RG, "imports", api)}


def test_real_definitions_through_the_sdk(client: Any, docs: str) -> None:
    pets = _import(client, "petstore", "openapi", (FIXTURES / "petstore.yaml").read_text())
    assert pets.display_name == "Swagger Petstore" and pets.service_url == "http://petstore.swagger.io/v1"
    assert pets.path == "petstore"
    ops = _ops(client, "petstore")
    assert set(ops) == {"listpets", "createpets", "showpetbyid"}
    show = client.api_operation.get(RG, "imports", "petstore", "showpetbyid")
    assert show.method == "GET" and show.url_template == "/pets/{petId}"
    assert show.template_parameters[0].name == "petId" and show.template_parameters[0].required
    assert show.responses[0].representations[0].type_name == "Pets"
    schemas = list(client.api_schema.list_by_api(RG, "imports", "petstore"))
    assert len(schemas) == 1 and schemas[0].content_type == "application/vnd.oai.openapi.components+json"

    uber = _import(client, "uber", "swagger-json", (FIXTURES / "uber.json").read_text(), path="uber")
    assert uber.display_name == "Uber API" and uber.service_url == "https://api.uber.com/v1"
    assert (
        _ops(client, "uber")["get-products"].url_template
        == "/products?latitude={latitude}&longitude={longitude}"
    )
    uber_q = _import(
        client,
        "uberq",
        "swagger-json",
        (FIXTURES / "uber.json").read_text(),
        translate_required_query_parameters_conduct="query",
    )
    assert uber_q.name == "uberq"
    got = client.api_operation.get(RG, "imports", "uberq", "get-products")
    assert got.url_template == "/products" and [p.name for p in got.request.query_parameters] == [
        "latitude",
        "longitude",
    ]

    uspto = _import(
        client, "uspto", "openapi-link", f"{docs}/uspto.yaml", service_url="https://mirror.example.org"
    )
    assert uspto.display_name == "USPTO Data Set API"
    assert uspto.service_url == "https://mirror.example.org"  # given in the request: kept
    assert set(_ops(client, "uspto")) == {"list-data-sets", "list-searchable-fields", "perform-search"}
    # a redirect to the document is followed
    assert _import(client, "pets2", "openapi-link", f"{docs}/redirect").display_name == "Swagger Petstore"

    soap = _import(
        client,
        "calc",
        "wsdl-link",
        f"{docs}/calc.wsdl",
        soap_api_type="soap",
        wsdl_selector=M.ApiCreateOrUpdatePropertiesWsdlSelector(
            wsdl_service_name="Calculator", wsdl_endpoint_name="CalcSoap"
        ),
    )
    assert soap.api_type == "soap" and soap.service_url == "http://calc.example.org/calc.asmx"
    assert _ops(client, "calc")["add"].url_template == "/?soapAction=http://example.org/calc/Add"
    # the same link as SOAP-to-REST: a JSON API (more in tests/e2e/test_soap_to_rest.py)
    rest_api = _import(client, "calcrest", "wsdl-link", f"{docs}/calc.wsdl", soap_api_type="http")
    assert rest_api.api_type == "http" and rest_api.service_url == "http://calc.example.org"
    assert _ops(client, "calcrest")["add"].url_template == "/Add"

    gql = _import(client, "gql", "graphql-link", f"{docs}/graphql", soap_api_type="graphql")
    assert gql.api_type == "graphql" and gql.service_url == f"{docs}/graphql"
    schema = client.api_schema.get(RG, "imports", "gql", "graphql")
    assert "hello(name: String): String" in schema.value


def test_reimport_replaces_operations_and_keeps_matching_ones(client: Any, rest: Rest) -> None:
    text = (FIXTURES / "petstore.yaml").read_text()
    _import(client, "pets-re", "openapi", text)
    policy = '<policies><inbound><base /><set-header name="x-kept" exists-action="override"><value>1</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'
    rest.put(
        RG, "imports", "apis/pets-re/operations/listpets/policies/policy", {"value": policy, "format": "xml"}
    )
    smaller = text.replace(
        "    post:\n      summary: Create a pet\n      operationId: createPets\n",
        "    post:\n      summary: Create a pet\n      operationId: addPet\n",
    )
    _import(client, "pets-re", "openapi", smaller.replace("Swagger Petstore", "Petstore v2"))
    assert set(_ops(client, "pets-re")) == {"listpets", "addpet", "showpetbyid"}
    # createPets was renamed addPet (same method and template): it keeps createPets' policy.
    rest.put(
        RG,
        "imports",
        "apis/pets-re/operations/showpetbyid/policies/policy",
        {"value": policy, "format": "xml"},
    )
    renamed = smaller.replace("operationId: showPetById", "operationId: getPet").replace(
        "Swagger Petstore", "Petstore v2"
    )
    _import(client, "pets-re", "openapi", renamed)
    assert set(_ops(client, "pets-re")) == {"listpets", "addpet", "getpet"}
    moved = rest.call("GET", rest.svc(RG, "imports", "apis/pets-re/operations/getpet/policies/policy"))
    assert "x-kept" in moved.json()["properties"]["value"]
    assert client.api.get(RG, "imports", "pets-re").display_name == "Petstore v2"
    kept = rest.call("GET", rest.svc(RG, "imports", "apis/pets-re/operations/listpets/policies/policy"))
    assert "x-kept" in kept.json()["properties"]["value"]


def _refused(rest: Rest, api: str, props: dict[str, Any], fragment: str, limit: float = 5.0) -> None:
    start = time.monotonic()
    r = rest.call("PUT", rest.svc(RG, "imports", f"apis/{api}"), {"properties": props}, expect=(400, 413))
    elapsed = time.monotonic() - start
    assert fragment in r.json()["error"]["message"], r.text
    assert elapsed < limit, f"{api}: {elapsed:.1f}s"
    rest.call("GET", rest.svc(RG, "imports", f"apis/{api}"), expect=(404,))


def test_hostile_and_malformed_inputs_create_nothing(rest: Rest, docs: str, silent_port: int) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = "openapi: 3.0.0\n" + "\n".join(lines) + "\npaths:\n  /x: {get: {responses: {}}}\n"
    _refused(rest, "bomb", {"format": "openapi", "value": bomb, "path": "bomb"}, "alias")
    xxe = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><definitions>&x;</definitions>'
    _refused(
        rest, "xxe", {"format": "wsdl", "value": xxe, "path": "xxe", "apiType": "soap"}, "DTDs and entities"
    )
    _refused(
        rest,
        "silent",
        {"format": "openapi-link", "value": f"http://127.0.0.1:{silent_port}/x", "path": "s"},
        "did not answer",
    )
    _refused(
        rest, "gone", {"format": "openapi-link", "value": f"{docs}/missing.yaml", "path": "g"}, "HTTP 404"
    )
    _refused(
        rest,
        "huge",
        {"format": "openapi-link", "value": f"{docs}/huge.json", "path": "h"},
        "larger than 1048576",
    )
    _refused(
        rest,
        "private",
        {"format": "openapi-link", "value": "http://10.1.2.3/api.yaml", "path": "p"},
        "private network",
    )
    _refused(
        rest, "file", {"format": "openapi-link", "value": "file:///etc/passwd", "path": "f"}, "http or https"
    )
    _refused(
        rest,
        "nopaths",
        {"format": "openapi+json", "value": '{"openapi":"3.0.0","paths":{}}', "path": "n"},
        "no paths",
    )
    _refused(rest, "badjson", {"format": "openapi+json", "value": '{"openapi":\n}', "path": "b"}, "line 2")
    _refused(
        rest,
        "grpc",
        {"format": "grpc-link", "value": "https://x.example.org/svc.proto", "path": "g"},
        "grpc-link",
    )
    _refused(
        rest,
        "odata",
        {"format": "odata", "value": xxe, "path": "o", "serviceUrl": "https://x.example.org"},
        "DTDs and entities are not accepted",
    )
    _refused(rest, "nofmt", {"value": "openapi: 3.0.0", "path": "nf"}, "properties.format")
    huge_inline = "openapi: 3.0.0\n" + "#" * (70 * 1024 * 1024)
    _refused(
        rest,
        "hugeinline",
        {"format": "openapi", "value": huge_inline, "path": "hi"},
        "exceeds the limit",
        limit=30,
    )
    # An existing API is left as it was by a failed re-import.
    rest.put(RG, "imports", "apis/stays", {"path": "stays", "displayName": "Stays"})
    r = rest.call(
        "PUT",
        rest.svc(RG, "imports", "apis/stays"),
        {"properties": {"format": "openapi+json", "value": "{", "path": "stays"}},
        expect=(400,),
    )
    assert "not valid JSON" in r.text
    assert (
        rest.call("GET", rest.svc(RG, "imports", "apis/stays")).json()["properties"]["displayName"] == "Stays"
    )
    # PATCH cannot import (Azure's update contract has no definition)
    r = rest.call(
        "PATCH",
        rest.svc(RG, "imports", "apis/stays"),
        {"properties": {"format": "openapi", "value": "x"}},
        expect=(400,),
        headers={"If-Match": "*"},
    )
    assert "PUT" in r.json()["error"]["message"]


def test_export_links_and_documents_round_trip(client: Any, rest: Rest, server: PorticoServer) -> None:
    _import(client, "exp", "openapi", (FIXTURES / "uspto.yaml").read_text())
    before = {n: (o.method, o.url_template) for n, o in _ops(client, "exp").items()}
    anonymous = httpx.Client(verify=ssl.create_default_context(cafile=server.ca), timeout=30)
    for fmt, again in (
        ("openapi-link", "openapi"),
        ("openapi+json-link", "openapi+json"),
        ("swagger-link", "swagger-json"),
    ):
        result = client.api_export.get(RG, "imports", "exp", format=fmt, export="true")
        link = result.value.link
        assert link.startswith("https://")
        doc = anonymous.get(link)
        assert doc.status_code == 200, doc.text
        name = f"exp-{again.replace('+', '')}"
        _import(client, name, again, doc.text)
        assert {n: (o.method, o.url_template) for n, o in _ops(client, name).items()} == before
        tampered = link.replace("format=", "format=wadl&x=")
        assert anonymous.get(tampered).status_code == 403
    forged = link.rsplit("sig=", 1)[0] + "sig=AAAA"
    assert anonymous.get(forged).status_code == 403
    inline = rest.call(
        "GET",
        rest.svc(RG, "imports", "apis/exp") + "?api-version=2024-05-01&format=openapi%2Bjson&export=true",
    ).json()
    # API Management answers `format`/`value` under `properties` (what the Azure CLI reads), the
    # SDKs' model has them at the top level: both are there
    assert inline["properties"] == {"format": inline["format"], "value": inline["value"]}
    assert inline["format"] == "openapi+json" and set(inline["value"]["paths"]) == {
        "/",
        "/{dataset}/{version}/fields",
        "/{dataset}/{version}/records",
    }
    wadl = rest.call(
        "GET", rest.svc(RG, "imports", "apis/exp") + "?api-version=2024-05-01&format=wadl&export=true"
    ).json()
    assert wadl["value"].startswith("<?xml") and 'id="perform-search"' in wadl["value"]
    r = rest.call(
        "GET",
        rest.svc(RG, "imports", "apis/exp") + "?api-version=2024-05-01&format=wsdl&export=true",
        expect=(400,),
    )
    assert "SOAP" in r.text


def test_thousand_operations_via_sdk(client: Any) -> None:
    text = json.dumps(generated(1000))
    start = time.monotonic()
    _import(client, "big", "openapi+json", text)
    elapsed = time.monotonic() - start
    ops = list(client.api_operation.list_by_api(RG, "imports", "big"))
    assert len(ops) == 1000
    assert elapsed < 10, elapsed  # the benchmark (bench/import.py) measures it on its own


def test_imported_configuration_survives_backup_and_restore(
    client: Any, rest: Rest, server: PorticoServer
) -> None:
    key = server.cli("storage", "account", "create", "importbackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "importbackups", "backups")
    rest.service(RG, "imports-src")
    rest.service(RG, "imports-dst")
    params = M.ApiCreateOrUpdateParameter(
        format="openapi", value=(FIXTURES / "petstore.yaml").read_text(), path="pets"
    )
    client.api.begin_create_or_update(RG, "imports-src", "pets", params).result()
    bk = M.ApiManagementServiceBackupRestoreParameters(
        storage_account="importbackups", container_name="backups", backup_name="imp", access_key=key
    )
    client.api_management_service.begin_backup(RG, "imports-src", bk).result()
    client.api_management_service.begin_restore(RG, "imports-dst", bk).result()

    def config(svc: str) -> Any:
        ops = {o.name: o.as_dict() for o in client.api_operation.list_by_api(RG, svc, "pets")}
        schemas = {
            s.name: s.as_dict().get("components") for s in client.api_schema.list_by_api(RG, svc, "pets")
        }
        for o in ops.values():
            o.pop("id")
        return ops, schemas

    src = config("imports-src")
    assert len(src[0]) == 3 and src[1]
    assert config("imports-dst") == src


def test_revisions_and_releases(client: Any, rest: Rest) -> None:
    _import(client, "rv", "openapi", (FIXTURES / "petstore.yaml").read_text())
    rev2 = client.api.begin_create_or_update(
        RG,
        "imports",
        "rv;rev=2",
        M.ApiCreateOrUpdateParameter(
            source_api_id=rest.svc(RG, "imports", "apis/rv").split(rest.server.url)[1],
            api_revision_description="second",
        ),
    ).result()
    assert rev2.api_revision == "2" and rev2.is_current is False and rev2.path == "rv"
    assert set(_ops(client, "rv;rev=2")) == set(_ops(client, "rv"))
    rest.put(
        RG,
        "imports",
        "apis/rv;rev=2/operations/health",
        {"displayName": "Health", "method": "GET", "urlTemplate": "/health"},
    )
    assert "health" not in _ops(client, "rv")
    revs = {r.api_revision: r for r in client.api_revision.list_by_service(RG, "imports", "rv")}
    assert set(revs) == {"1", "2"} and revs["1"].is_current and not revs["2"].is_current
    assert revs["2"].description == "second"
    # Azure lists non-current revisions among the APIs (`rv;rev=2`); clients keep the current ones
    # with `$filter=isCurrent eq true` (see portico/resources/revisions.py).
    listed = {
        a.name: a.is_current for a in client.api.list_by_service(RG, "imports") if a.name.startswith("rv")
    }
    assert listed == {"rv": True, "rv;rev=2": False}
    current_only = [a.name for a in client.api.list_by_service(RG, "imports", filter="isCurrent eq true")]
    assert "rv" in current_only and "rv;rev=2" not in current_only
    # offline (read-only in the SDK's model, so a raw PATCH); a re-import into it keeps it offline
    offline = rest.call(
        "PATCH",
        rest.svc(RG, "imports", "apis/rv;rev=2"),
        {"properties": {"isOnline": False}},
        expect=(200,),
        headers={"If-Match": "*"},
    )
    assert offline.json()["properties"]["isOnline"] is False
    _import(client, "rv;rev=2", "openapi", (FIXTURES / "petstore.yaml").read_text(), path="rv")
    assert client.api.get(RG, "imports", "rv;rev=2").is_online is False
    # The revisions share name, description, path and version: they change through the current
    # revision only, with Azure's refusal; what is the revision's own (its backend) may differ.
    rev_url = rest.svc(RG, "imports", "apis/rv;rev=2")
    for props, label in (
        ({"path": "elsewhere"}, "Path"),
        ({"displayName": "Renamed"}, "Name"),
        ({"description": "changed"}, "Description"),
        ({"apiVersion": "v9"}, "ApiVersion"),
    ):
        refused = rest.call("PATCH", rev_url, {"properties": props}, expect=(400,), headers={"If-Match": "*"})
        assert (
            refused.json()["error"]["message"] == f"Can't change property {label} for non-current revision."
        )
    refused = rest.call("PUT", rev_url, {"properties": {"path": "elsewhere"}}, expect=(400,))
    assert "Can't change property Path" in refused.text
    renamed = (
        (FIXTURES / "petstore.yaml").read_text().replace("title: Swagger Petstore", "title: Renamed Store")
    )
    with pytest.raises(HttpResponseError, match="Can't change property Name for non-current revision"):
        _import(client, "rv;rev=2", "openapi", renamed, path="rv")
    assert (
        client.api.get(RG, "imports", "rv;rev=2").display_name
        == client.api.get(RG, "imports", "rv").display_name
    )
    moved = rest.call(
        "PATCH",
        rev_url,
        {"properties": {"serviceUrl": "https://rev2.example.com/api", "path": "rv"}},
        expect=(200,),
        headers={"If-Match": "*"},
    )
    assert moved.json()["properties"]["serviceUrl"] == "https://rev2.example.com/api"
    assert client.api.get(RG, "imports", "rv").service_url != "https://rev2.example.com/api"
    bad_type = rest.call("PUT", rev_url, {"properties": {"isOnline": "maybe"}}, expect=(400,))
    assert "isOnline" in bad_type.text
    rest.put(
        RG,
        "imports",
        "apis/rv;rev=2/operations/health",
        {"displayName": "Health", "method": "GET", "urlTemplate": "/health"},
    )

    release = client.api_release.create_or_update(
        RG,
        "imports",
        "rv",
        "go-live",
        M.ApiReleaseContract(
            api_id=rest.svc(RG, "imports", "apis/rv;rev=2").split(rest.server.url)[1], notes="ship it"
        ),
    )
    assert release.api_id.endswith("/apis/rv;rev=2") and release.notes == "ship it"
    current = client.api.get(RG, "imports", "rv")
    assert current.api_revision == "2" and current.is_current
    assert "health" in _ops(client, "rv")
    old = client.api.get(RG, "imports", "rv;rev=1")
    assert old.api_revision == "1" and not old.is_current and "health" not in _ops(client, "rv;rev=1")
    revs = {r.api_revision: r.is_current for r in client.api_revision.list_by_service(RG, "imports", "rv")}
    assert revs == {"1": False, "2": True}
    assert [r.name for r in client.api_release.list_by_service(RG, "imports", "rv")] == ["go-live"]
    # the current revision answers under its revision name too
    assert client.api.get(RG, "imports", "rv;rev=2").api_revision == "2"
    bad = rest.call(
        "PUT",
        rest.svc(RG, "imports", "apis/rv/releases/bad"),
        {"properties": {"apiId": "/apis/other;rev=1"}},
        expect=(400,),
    )
    assert "revision of API 'rv'" in bad.text
    # `rv;rev=2` is now the API itself: a PUT of it updates the API, no new revision
    again = client.api.begin_create_or_update(
        RG, "imports", "rv;rev=2", M.ApiCreateOrUpdateParameter(path="rv", description="updated in place")
    ).result()
    assert again.api_revision == "2" and again.is_current
    assert client.api.get(RG, "imports", "rv").description == "updated in place"
    assert {r.api_revision for r in client.api_revision.list_by_service(RG, "imports", "rv")} == {"1", "2"}
    client.api.begin_delete(RG, "imports", "rv", if_match="*").result()
    rest.call("GET", rest.svc(RG, "imports", "apis/rv;rev=1"), expect=(404,))
    # an import into `new;rev=3` with no API `new` creates the API at that revision, as
    # `az apim api import --api-revision` does it
    _import(client, "fresh;rev=3", "openapi", (FIXTURES / "petstore.yaml").read_text(), path="fresh")
    fresh = client.api.get(RG, "imports", "fresh")
    assert fresh.api_revision == "3" and fresh.is_current and _ops(client, "fresh")
    assert [r.api_revision for r in client.api_revision.list_by_service(RG, "imports", "fresh")] == ["3"]


def test_default_and_range_responses_and_cookie_parameters(client: Any, rest: Rest) -> None:
    doc = {
        "openapi": "3.0.1",
        "info": {"title": "Responses", "version": "1"},
        "paths": {
            "/things/{id}": {
                "get": {
                    "operationId": "getThing",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "ok"},
                        "2XX": {"description": "other success"},
                        "default": {
                            "description": "error",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Err"}}},
                        },
                    },
                }
            }
        },
        "components": {"schemas": {"Err": {"type": "object"}}},
    }
    _import(client, "responses", "openapi+json", json.dumps(doc))
    op = client.api_operation.get(RG, "imports", "responses", "getthing")
    assert [r.status_code for r in op.responses] == [200]  # what Azure's contract carries
    assert [p.name for p in op.template_parameters] == ["id"] and not op.request.headers  # no cookie
    raw = rest.call("GET", rest.svc(RG, "imports", "apis/responses/operations/getthing")).json()
    other = {r["status"]: r for r in raw["properties"]["otherResponses"]}
    assert other["2XX"]["description"] == "other success"
    assert other["default"]["representations"][0]["typeName"] == "Err"
    document = rest.call(
        "GET",
        rest.svc(RG, "imports", "apis/responses")
        + "?api-version=2024-05-01&format=openapi%2Bjson&export=true",
    ).json()["value"]
    assert set(document["paths"]["/things/{id}"]["get"]["responses"]) == {"200", "2XX", "default"}


def test_graphql_schema_put_is_validated(client: Any, rest: Rest) -> None:
    rest.put(
        RG,
        "imports",
        "apis/gql2",
        {
            "path": "gql2",
            "displayName": "GQL",
            "type": "graphql",
            "serviceUrl": "https://gql.example.org/graphql",
        },
    )
    body = {
        "contentType": "application/vnd.ms-azure-apim.graphql.schema",
        "document": {"value": "type Query { a: Nope }"},
    }
    r = rest.call(
        "PUT", rest.svc(RG, "imports", "apis/gql2/schemas/graphql"), {"properties": body}, expect=(400,)
    )
    assert "Nope" in r.json()["error"]["message"]
    body["document"]["value"] = GRAPHQL_SDL
    rest.put(RG, "imports", "apis/gql2/schemas/graphql", body)
    assert client.api_schema.get(RG, "imports", "gql2", "graphql").value == GRAPHQL_SDL
    assert client.api.get(RG, "imports", "gql2").api_type == "graphql"
