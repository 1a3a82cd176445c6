"""Content validation policies end to end: an OpenAPI document imported through the Python SDK
(its schemas and parameters), validate-content / validate-parameters / validate-status-code with
`prevent`, and requests through the gateway — conforming ones reach the backend, others get 400
with the reason; a backend answering a wrong status or body becomes a 502. The same checks on an
API whose policies are all synchronous run on the gateway's fast path."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import RG, GatewayEnv, eventually, gateway_node
from tests.support.server import free_port

pytestmark = pytest.mark.slow

PET = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0}},
}
OPENAPI = {
    "openapi": "3.0.1",
    "info": {"title": "Validated pets", "version": "1"},
    "paths": {
        "/pets/{petId}": {
            "post": {
                "operationId": "update-pet",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "limit", "in": "query", "schema": {"$ref": "#/components/schemas/Limit"}},
                ],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}
                },
                "responses": {
                    "200": {
                        "description": "the echo",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Echo"}}},
                    }
                },
            }
        },
        "/strict": {
            "post": {
                "operationId": "strict",
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}
                },
                "responses": {
                    "200": {
                        "description": "a pet (the echo backend answers something else)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    }
                },
            }
        },
        "/status/{code}": {
            "get": {
                "operationId": "status",
                "parameters": [
                    {"name": "code", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
        "/stream": {
            "get": {
                "operationId": "stream",
                "responses": {"200": {"description": "chunks", "content": {"text/plain": {}}}},
            }
        },
        "/orders": {
            "post": {
                "operationId": "create-order",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "components": {
        "schemas": {
            "Pet": PET,
            "Limit": {"type": "integer", "maximum": 100},
            "Echo": {
                "type": "object",
                "required": ["method", "path"],
                "properties": {"method": {"type": "string"}},
            },
        }
    },
}
PARAMETERS = (
    '<validate-parameters specified-parameter-action="prevent" unspecified-parameter-action="prevent" '
    'errors-variable-name="paramErrors"><headers specified-parameter-action="prevent" '
    'unspecified-parameter-action="ignore" /></validate-parameters>'
)
CONTENT = (
    '<validate-content unspecified-content-type-action="prevent" max-size="1024" '
    'size-exceeded-action="prevent" errors-variable-name="bodyErrors">'
    '<content type="application/json" validate-as="json" action="prevent" /></validate-content>'
)
STATUS = '<validate-status-code unspecified-status-code-action="prevent" />'
POLICY = "<policies><inbound><base />{inbound}</inbound><backend><base /></backend><outbound><base />{outbound}</outbound></policies>"
INTERNAL = "The request could not be processed due to an internal error. Contact the API owner."


def _import(gw: GatewayEnv, api: str, backend: str) -> None:
    params = M.ApiCreateOrUpdateParameter(
        format="openapi+json",
        value=json.dumps(OPENAPI),
        path=api,
        service_url=f"{backend}/{api}-backend",
        subscription_required=False,
        protocols=["http", "https"],
    )
    gw.client.api.begin_create_or_update(RG, gw.service, api, params).result()


def _error(r: Any) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    doc = r.json()
    assert doc["statusCode"] == r.status_code
    return str(doc["message"])


def test_requests_and_responses_are_validated(gw: GatewayEnv, backend: str) -> None:
    _import(gw, "vpets", backend)
    gw.client.global_schema.begin_create_or_update(
        RG,
        gw.service,
        "order",
        M.GlobalSchemaContract(
            schema_type="json",
            document={"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
        ),
    ).result()
    gw.policy(POLICY.format(inbound=PARAMETERS + CONTENT, outbound=STATUS + CONTENT), api="vpets")
    # the operation's own document: its request body against the global schema; its answer (which the
    # definition gives no content type) is left alone: no <base /> in outbound
    order_content = CONTENT.replace('action="prevent" />', 'action="prevent" schema-id="order" />')
    gw.policy(
        f"<policies><inbound><base />{order_content}</inbound><backend><base /></backend>"
        "<outbound /></policies>",
        api="vpets",
        operation="create-order",
    )

    def valid() -> Any:
        r = gw.call("POST", "/vpets/pets/7?limit=5", json={"name": "rex", "age": 3})
        assert r.status_code == 200, r.text
        return r.json()

    def policy_live() -> None:  # the API and its policy are two writes: they may arrive a poll apart
        assert gw.call("POST", "/vpets/pets/7", json={"age": -1}).status_code == 400

    eventually(policy_live, timeout=10)
    echoed = valid()
    assert echoed["path"] == "/vpets-backend/pets/7" and json.loads(echoed["body"]) == {
        "name": "rex",
        "age": 3,
    }

    # request body: schema, syntax, content type, size
    r = gw.call("POST", "/vpets/pets/7", json={"age": -1})
    assert r.status_code == 400
    message = _error(r)
    assert message.startswith(
        "Body of the request does not conform to the definition Pet, which is associated with the content "
        "type application/json."
    )
    assert "'name' is a required property" in message and "-1 is less than the minimum of 0" in message
    r = gw.call("POST", "/vpets/pets/7", content=b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "The body is not valid JSON" in _error(r)
    r = gw.call("POST", "/vpets/pets/7", content=b"<pet/>", headers={"Content-Type": "application/xml"})
    assert (r.status_code, _error(r)) == (400, "Unspecified content type application/xml is not allowed.")
    big = json.dumps({"name": "x" * 2000}).encode()
    r = gw.call("POST", "/vpets/pets/7", content=big, headers={"Content-Type": "application/json"})
    assert (r.status_code, _error(r)) == (
        400,
        f"Request's body is {len(big)} bytes long and it exceeds the limit of 1024 bytes.",
    )
    # parameters: path type, query schema (a $ref into the imported components), unknown query
    r = gw.call("POST", "/vpets/pets/abc", json={"name": "rex"})
    assert r.status_code == 400
    assert _error(r).startswith(
        "Value of the path parameter petId couldn't be parsed according to the definition."
    )
    r = gw.call("POST", "/vpets/pets/7?limit=500", json={"name": "rex"})
    assert r.status_code == 400
    assert _error(r).startswith("The value of the query parameter limit does not conform to the definition.")
    assert "500 is greater than the maximum of 100" in _error(r)
    r = gw.call("POST", "/vpets/pets/7?debug=1", json={"name": "rex"})
    assert (r.status_code, _error(r)) == (400, "Unspecified query parameter debug is not allowed.")

    # responses: a body that does not conform, a status the definition does not list
    r = gw.call("POST", "/vpets/strict", json={"name": "rex"})
    assert (r.status_code, _error(r)) == (502, INTERNAL)
    assert gw.get("/vpets/status/200").status_code == 200
    r = gw.get("/vpets/status/500")
    assert (r.status_code, _error(r)) == (502, INTERNAL)
    # a response streamed in chunks is read whole to be checked, then answered with its length
    r = gw.get("/vpets/stream")
    assert r.status_code == 200 and r.text == "part0;part1;part2;part3;part4;"
    assert r.headers["content-length"] == str(len(r.content)) and "transfer-encoding" not in r.headers

    # a global schema named by schema-id (loaded with the configuration)
    def order_checked() -> None:
        r = gw.call("POST", "/vpets/orders", json={"sku": 5})
        assert r.status_code == 400, r.text
        assert "does not conform to the definition order" in _error(r)

    eventually(order_checked, timeout=10)
    assert gw.call("POST", "/vpets/orders", json={"sku": "a-1"}).status_code == 200


@pytest.fixture(scope="module")
def asgi_node(gw: GatewayEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A gateway-only node on the same database with the fast path off."""
    port = free_port()
    proc = gateway_node(
        gw.server, tmp_path_factory.mktemp("asgi-node"), port, workers=1, PORTICO_GATEWAY_FAST_PATH="false"
    )
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_both_gateway_paths_answer_alike(gw: GatewayEnv, asgi_node: int, backend: str) -> None:
    """validate-parameters, validate-headers and validate-status-code are synchronous: their
    pipeline stays on the fast path, and answers as the ASGI path does (validate-content, which
    reads the body, always takes the ASGI path)."""
    _import(gw, "vfast", backend)
    headers = '<validate-headers specified-header-action="prevent" unspecified-header-action="ignore" />'
    gw.policy(POLICY.format(inbound=PARAMETERS, outbound=STATUS + headers), api="vfast")
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/vfast/pets/7?limit=5", {"json": {"anything": True}}),
        ("POST", "/vfast/pets/7?debug=1", {"json": {}}),
        ("POST", "/vfast/pets/x", {"json": {}}),
        ("POST", "/vfast/pets/7?limit=101", {"json": {}}),
        ("GET", "/vfast/status/200", {}),
        ("GET", "/vfast/status/503", {}),
    ]

    def through(port: int) -> list[tuple[int, bytes]]:
        out = []
        for method, path, kw in requests:
            r = gw.http.request(method, f"http://127.0.0.1:{port}{path}", headers={"Host": gw.host}, **kw)
            out.append((r.status_code, r.content))
        return out

    def configured(port: int) -> None:
        try:
            r = gw.http.post(
                f"http://127.0.0.1:{port}/vfast/pets/7?debug=1", headers={"Host": gw.host}, json={}
            )
        except httpx.HTTPError as exc:  # not listening yet
            raise AssertionError(str(exc)) from None
        assert r.status_code == 400, r.text

    for port in (gw.port, asgi_node):
        eventually(lambda p=port: configured(p), timeout=30)
    fast, asgi = through(gw.port), through(asgi_node)
    assert fast == asgi
    assert [status for status, _body in fast] == [200, 400, 400, 400, 200, 502]
    assert json.loads(fast[1][1]) == {
        "statusCode": 400,
        "message": "Unspecified query parameter debug is not allowed.",
    }
    assert json.loads(fast[5][1]) == {"statusCode": 502, "message": INTERNAL}


XSD = (
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:pets" xmlns="urn:pets" '
    'elementFormDefault="qualified"><xs:element name="pet"><xs:complexType><xs:sequence>'
    '<xs:element name="name" type="xs:string"/></xs:sequence></xs:complexType></xs:element></xs:schema>'
)


def test_xml_content_against_a_global_xml_schema(gw: GatewayEnv, backend: str) -> None:
    _import(gw, "vxml", backend)
    gw.client.global_schema.begin_create_or_update(
        RG, gw.service, "petxsd", M.GlobalSchemaContract(schema_type="xml", value=XSD)
    ).result()
    xml_content = (
        '<validate-content unspecified-content-type-action="ignore" max-size="1024" size-exceeded-action="prevent">'
        '<content type="application/xml" validate-as="xml" schema-id="petxsd" action="prevent" /></validate-content>'
    )
    with pytest.raises(HttpResponseError) as err:  # refused when saved: no schema-ref for XML
        gw.policy(
            POLICY.format(inbound=xml_content.replace("/>", 'schema-ref="#/x" />', 1), outbound=""),
            api="vxml",
        )
    assert err.value.status_code == 400
    assert "attribute 'schema-ref' isn't supported for an XML schema" in str(err.value.message)
    gw.policy(POLICY.format(inbound=xml_content, outbound=""), api="vxml")
    xml = {"Content-Type": "application/xml"}

    def refused() -> None:
        r = gw.call("POST", "/vxml/pets/1", content=b'<pet xmlns="urn:pets"><age>1</age></pet>', headers=xml)
        assert r.status_code == 400, r.text
        assert _error(r).startswith("Body of the request does not conform to the definition petxsd")

    eventually(refused, timeout=10)
    r = gw.call("POST", "/vxml/pets/1", content=b'<pet xmlns="urn:pets"><name>rex</name></pet>', headers=xml)
    assert r.status_code == 200 and "<name>rex</name>" in r.json()["body"]
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><pet xmlns="urn:pets"><name>&e;</name></pet>'
    r = gw.call("POST", "/vxml/pets/1", content=bomb, headers=xml)
    assert r.status_code == 400 and "Entities are forbidden" in _error(r)
