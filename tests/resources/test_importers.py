"""API definition importers: pure parsing of real and hostile documents (no server)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from portico.arm.errors import ArmError
from portico.resources.api_export import openapi_document, swagger_document
from portico.resources.api_import import parse_checked, read_request
from portico.resources.importers import ImportFailed, Options, parse
from portico.resources.importers.model import normalise_name

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openapi"


def ops(imported: Any) -> dict[str, dict[str, Any]]:
    return dict(imported.operations)


def test_petstore_openapi3_yaml() -> None:
    got = parse("openapi", (FIXTURES / "petstore.yaml").read_text(), Options())
    assert got.api["displayName"] == "Swagger Petstore"
    assert got.api["serviceUrl"] == "http://petstore.swagger.io/v1"
    o = ops(got)
    assert set(o) == {"listpets", "createpets", "showpetbyid"}
    assert o["listpets"]["displayName"] == "List all pets"
    assert o["listpets"]["request"]["queryParameters"][0]["name"] == "limit"  # optional: stays a query param
    show = o["showpetbyid"]
    assert show["urlTemplate"] == "/pets/{petId}"
    assert show["templateParameters"][0] == {
        "name": "petId",
        "type": "string",
        "required": True,
        "description": "The id of the pet to retrieve",
        "values": [],
    }
    rep = show["responses"][0]["representations"][0]
    assert rep["contentType"] == "application/json" and rep["typeName"] == "Pets"
    assert o["listpets"]["responses"][0]["headers"][0]["name"] == "x-next"
    ((schema_id, schema),) = got.schemas
    assert rep["schemaId"] == schema_id
    assert set(schema["document"]["components"]["schemas"]) == {"Pet", "Pets", "Error"}


def test_uspto_server_variables_examples_and_form_body() -> None:
    got = parse("openapi", (FIXTURES / "uspto.yaml").read_text(), Options())
    assert got.api["serviceUrl"] == "https://developer.uspto.gov/ds-api"
    o = ops(got)
    assert set(o) == {"list-data-sets", "list-searchable-fields", "perform-search"}
    example = o["list-data-sets"]["responses"][0]["representations"][0]["examples"]["default"]["value"]
    assert example["total"] == 2
    search = o["perform-search"]
    assert search["method"] == "POST" and search["urlTemplate"] == "/{dataset}/{version}/records"
    body = search["request"]["representations"][0]
    assert body["contentType"] == "application/x-www-form-urlencoded"
    # the inline schema became a named definition of the API's schema, not dropped
    defs = got.schemas[0][1]["document"]["components"]["schemas"]
    assert body["typeName"] in defs and "criteria" in defs[body["typeName"]]["properties"]


def test_uber_swagger2_required_query_parameters() -> None:
    text = (FIXTURES / "uber.json").read_text()
    got = parse("swagger-json", text, Options())
    assert got.api["serviceUrl"] == "https://api.uber.com/v1"
    o = ops(got)
    assert o["get-products"]["urlTemplate"] == "/products?latitude={latitude}&longitude={longitude}"
    assert [p["name"] for p in o["get-products"]["templateParameters"]] == ["latitude", "longitude"]
    assert o["get-products"]["displayName"] == "Product Types"
    as_query = ops(parse("swagger-json", text, Options(translate_required_query="query")))
    assert as_query["get-products"]["urlTemplate"] == "/products"
    assert [p["name"] for p in as_query["get-products"]["request"]["queryParameters"]] == [
        "latitude",
        "longitude",
    ]
    assert got.schemas[0][1]["contentType"] == "application/vnd.ms-azure-apim.swagger.definitions+json"


def test_operation_names_normalised_and_deduplicated() -> None:
    assert normalise_name("GET-/foo/{bar}?buzz={quix}") == "get-foo-bar-buzz-quix"
    assert len(normalise_name("x" * 200)) == 76
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/a": {"get": {"operationId": "Get Thing!", "responses": {}}},
            "/b": {"get": {"operationId": "get_thing", "responses": {}}},
            "/c": {"post": {"responses": {}}},
        },
    }
    got = parse("openapi+json", json.dumps(doc), Options())
    assert [n for n, _ in got.operations] == ["get-thing", "get-thing-1", "post-c"]
    assert got.operations[2][1]["displayName"] == "POST - /c"


def _fails(fmt: str, text: str, fragment: str, opts: Options | None = None) -> ImportFailed:
    with pytest.raises(ImportFailed) as err:
        parse_checked(fmt, text, opts or Options(), None)
    assert err.value.status == 400 and fragment in err.value.message, err.value.message
    return err.value


def test_malformed_and_incomplete_documents_name_the_cause() -> None:
    e = _fails("openapi+json", '{"openapi": "3.0.0",\n "paths": {,}}', "not valid JSON")
    assert "line 2" in e.message
    e = _fails("openapi", "openapi: 3.0.0\npaths:\n  /a: [\n", "not valid YAML")
    assert "line" in e.message
    _fails("openapi+json", '{"openapi": "3.0.0", "info": {}, "paths": {}}', "no paths")
    _fails("openapi+json", '{"info": {}}', "neither 'openapi' nor 'swagger'")
    ext = {"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "other.yaml#/p"}]}}}}
    _fails("openapi+json", json.dumps(ext), "outside the document")
    bad_path = {"openapi": "3.0.0", "paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "path"}]}}}}
    _fails("openapi+json", json.dumps(bad_path), "not part of the URL template")
    _fails("swagger-json", json.dumps({"openapi": "3.0.0", "paths": {"/a": {}}}), "Swagger 2.0")


def test_yaml_alias_bomb_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    bomb = "openapi: 3.0.0\n" + "\n".join(lines) + "\npaths:\n  /x: {get: {responses: {}}}\n"
    start = time.monotonic()
    _fails("openapi", bomb, "alias")
    assert time.monotonic() - start < 1.0
    # a few ordinary anchors are fine
    ok = "openapi: 3.0.0\nx-p: &p {name: id, in: path, required: true}\npaths:\n  /a/{id}: {get: {parameters: [*p], responses: {}}}\n"
    assert parse("openapi", ok, Options()).operations[0][0] == "get-a-id"


def test_yaml_unsafe_tags_refused() -> None:
    _fails("openapi", "openapi: !!python/object/apply:os.system ['true']\npaths: {}\n", "not valid YAML")


WSDL = """<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:tns="http://example.org/calc" xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://example.org/calc">
  <types><xs:schema targetNamespace="http://example.org/calc"><xs:element name="Add"/><xs:element name="AddResponse"/></xs:schema></types>
  <message name="AddIn"><part name="p" element="tns:Add"/></message>
  <message name="AddOut"><part name="p" element="tns:AddResponse"/></message>
  <portType name="CalcPort"><operation name="Add"><input message="tns:AddIn"/><output message="tns:AddOut"/></operation></portType>
  <binding name="CalcBinding" type="tns:CalcPort"><soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Add"><soap:operation soapAction="http://example.org/calc/Add"/></operation></binding>
  <service name="Calculator"><port name="CalcSoap" binding="tns:CalcBinding"><soap:address location="http://calc.example.org/calc.asmx"/></port></service>
</definitions>"""


def test_wsdl_soap_pass_through() -> None:
    got = parse("wsdl", WSDL, Options(api_type="soap"))
    assert got.api == {
        "type": "soap",
        "displayName": "Calculator",
        "serviceUrl": "http://calc.example.org/calc.asmx",
    }
    ((name, op),) = got.operations
    assert (
        name == "add"
        and op["method"] == "POST"
        and op["urlTemplate"] == "/?soapAction=http://example.org/calc/Add"
    )
    assert op["request"]["representations"] == [{"contentType": "text/xml", "typeName": "Add"}]
    assert {s[0] for s in got.schemas} == {"xsd1", "wsdl"}
    _fails("wsdl", WSDL, "apiType 'soap'", Options(api_type="websocket"))
    _fails("wsdl", WSDL, "wsdlServiceName 'Other'", Options(api_type="soap", wsdl_service="Other"))


def test_xxe_and_entity_bombs_refused() -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><definitions>&x;</definitions>'
    _fails("wsdl", xxe, "DTDs and entities are not accepted", Options(api_type="soap"))
    laughs = '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><application>&b;</application>'
    _fails("wadl-xml", laughs, "DTDs and entities are not accepted")
    _fails("wadl-xml", "<application><resources>", "not well-formed XML")


WADL = """<application xmlns="http://wadl.dev.java.net/2009/02">
  <doc title="Orders"/>
  <resources base="https://orders.example.org/api/">
    <resource path="orders">
      <method name="GET" id="listOrders"><request><param name="top" style="query" type="xs:int"/></request>
        <response status="200"><representation mediaType="application/json"/></response></method>
      <resource path="{id}"><param name="id" style="template" type="xs:string"/>
        <method name="DELETE" id="deleteOrder"><response status="204"/></method></resource>
    </resource>
  </resources>
</application>"""


def test_wadl() -> None:
    got = parse("wadl-xml", WADL, Options())
    assert got.api == {"serviceUrl": "https://orders.example.org/api", "displayName": "Orders"}
    o = ops(got)
    assert (
        o["listorders"]["urlTemplate"] == "/orders"
        and o["listorders"]["request"]["queryParameters"][0]["type"] == "int"
    )
    assert o["deleteorder"]["urlTemplate"] == "/orders/{id}" and o["deleteorder"]["method"] == "DELETE"
    assert o["deleteorder"]["templateParameters"][0]["name"] == "id"


def test_graphql_schema_validated() -> None:
    got = parse(
        "graphql-link", "type Query { hello: String }", Options(), link="https://gql.example.org/graphql"
    )
    assert got.api == {"type": "graphql", "serviceUrl": "https://gql.example.org/graphql"}
    assert "hello: String" in got.schemas[0][1]["document"]["value"]
    with pytest.raises(ImportFailed) as err:
        parse("graphql-link", "type Query { hello: Nope }", Options(), link="https://x.example.org")
    assert "Nope" in err.value.message


def test_request_checks() -> None:
    for fmt in ("grpc", "grpc-link"):
        with pytest.raises(ArmError) as err:
            read_request({"properties": {"format": fmt, "value": "x", "path": "p"}})
        assert err.value.status == 400 and fmt in err.value.message and "HTTP/2" in err.value.message
    with pytest.raises(ArmError) as err:
        read_request({"properties": {"format": "nope", "value": "x", "path": "p"}})
    assert "not a known format" in err.value.message
    with pytest.raises(ArmError) as err:
        read_request({"properties": {"format": "wsdl", "value": "<x/>", "path": "p"}})
    assert "apiType" in err.value.message
    req = read_request({"properties": {"format": "OpenAPI", "value": "x", "path": "p", "displayName": "D"}})
    assert req.fmt == "openapi" and req.props == {"path": "p", "displayName": "D"}


def generated(n: int) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for i in range(n // 2):
        paths[f"/items{i}/{{id}}"] = {
            "get": {
                "operationId": f"getItem{i}",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "integer"}},
                ],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
                    }
                },
            },
            "put": {
                "operationId": f"putItem{i}",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}}
                },
                "responses": {"204": {"description": "done"}},
            },
        }
    return {
        "openapi": "3.0.1",
        "info": {"title": "Generated", "version": "1"},
        "servers": [{"url": "https://backend.example.org"}],
        "paths": paths,
        "components": {"schemas": {"Item": {"type": "object", "properties": {"id": {"type": "string"}}}}},
    }


def test_thousand_operations_parse_fast() -> None:
    text = json.dumps(generated(1000))
    start = time.monotonic()
    got = parse_checked("openapi+json", text, Options(), None)
    assert len(got.operations) == 1000
    assert time.monotonic() - start < 2.0


def test_export_documents_import_back_to_the_same_operations() -> None:
    for fmt, fixture in (
        ("openapi", "petstore.yaml"),
        ("openapi", "uspto.yaml"),
        ("swagger-json", "uber.json"),
    ):
        first = parse(fmt, (FIXTURES / fixture).read_text(), Options())
        defs = first.schemas[0][1]["document"]
        defs = defs.get("definitions") or defs["components"]["schemas"]
        checked = parse_checked(fmt, (FIXTURES / fixture).read_text(), Options(), None).operations
        for exporter, again_fmt in ((openapi_document, "openapi"), (swagger_document, "swagger-json")):
            exported = exporter(first.api, checked, defs)
            text = yaml.safe_dump(exported) if again_fmt == "openapi" else json.dumps(exported)
            again = parse_checked(again_fmt, text, Options(), None)
            assert sorted((n, o["method"], o["urlTemplate"]) for n, o in again.operations) == sorted(
                (n, o["method"], o["urlTemplate"]) for n, o in checked
            ), (fixture, again_fmt)

            # Swagger 2.0 has no parameter examples; everything else comes back.
            def params(operations: Any, drop: str = "examples" if again_fmt == "swagger-json" else "") -> Any:
                return {
                    n: [{k: v for k, v in p.items() if k != drop} for p in o["templateParameters"]]
                    for n, o in operations
                }

            assert params(again.operations) == params(checked)
            assert again.api.get("serviceUrl") == first.api.get("serviceUrl")
