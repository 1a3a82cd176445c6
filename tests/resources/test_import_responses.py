"""OpenAPI import of what Azure's operation contract has no field for: `default` and range (2XX)
responses are kept beside the numeric ones (`otherResponses`) with their representations and
exported back; cookie parameters are left out, as Azure leaves them out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from portico.resources.api_export import openapi_document, swagger_document
from portico.resources.api_import import parse_checked
from portico.resources.importers import ImportFailed, Options
from portico.resources.models import OperationProps

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openapi"

OAS3: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Orders", "version": "1"},
    "paths": {
        "/orders/{id}": {
            "get": {
                "operationId": "getOrder",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "session", "in": "cookie", "required": True, "schema": {"type": "string"}},
                    {"name": "theme", "in": "cookie", "schema": {"type": "string"}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                    {"name": "expand", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the order",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                    },
                    "2XX": {
                        "description": "another success",
                        "content": {"text/plain": {"schema": {"type": "string"}, "example": "ok"}},
                    },
                    "4xx": {"description": "client error"},
                    "default": {
                        "description": "unexpected error",
                        "headers": {"X-Error-Id": {"schema": {"type": "string"}}},
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                            "application/xml": {
                                "schema": {"type": "object", "properties": {"code": {"type": "integer"}}}
                            },
                        },
                    },
                    "x-internal": {"note": "an extension, ignored"},
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Order": {"type": "object", "properties": {"id": {"type": "string"}}},
            "Error": {"type": "object", "properties": {"message": {"type": "string"}}},
        }
    },
}


def _import(doc: dict[str, Any], fmt: str = "openapi+json") -> Any:
    return parse_checked(fmt, json.dumps(doc), Options(), None)


def test_default_and_range_responses_are_kept_with_their_representations() -> None:
    got = _import(OAS3)
    ((name, op),) = got.operations
    assert name == "getorder"
    assert [r["statusCode"] for r in op["responses"]] == [200]
    other = {r["status"]: r for r in op["otherResponses"]}
    assert list(other) == ["2XX", "4XX", "default"]
    assert other["2XX"]["description"] == "another success"
    (plain,) = other["2XX"]["representations"]
    assert plain["contentType"] == "text/plain" and plain["examples"] == {"default": {"value": "ok"}}
    assert other["4XX"] == {"status": "4XX", "description": "client error", "representations": []}
    default = other["default"]
    assert default["description"] == "unexpected error"
    assert default["headers"][0]["name"] == "X-Error-Id"
    reps = {r["contentType"]: r for r in default["representations"]}
    assert reps["application/json"]["typeName"] == "Error"
    # an inline schema becomes a named definition of the API's schema, as for numeric responses
    ((schema_id, schema),) = got.schemas
    inline = reps["application/xml"]["typeName"]
    assert reps["application/xml"]["schemaId"] == schema_id
    assert schema["document"]["components"]["schemas"][inline]["properties"]["code"] == {"type": "integer"}
    assert plain["typeName"] in schema["document"]["components"]["schemas"]


def test_cookie_parameters_are_left_out_as_azure_does() -> None:
    ((_, op),) = _import(OAS3).operations
    names = [p["name"] for p in op["templateParameters"]]
    names += [p["name"] for p in op["request"]["queryParameters"] + op["request"]["headers"]]
    assert sorted(names) == ["X-Trace", "expand", "id"]  # neither `session` nor `theme`
    assert op["urlTemplate"] == "/orders/{id}"  # a required cookie is not a template parameter


def test_swagger2_default_response() -> None:
    doc = {
        "swagger": "2.0",
        "info": {"title": "S", "version": "1"},
        "produces": ["application/json", "application/xml"],
        "paths": {
            "/x": {
                "post": {
                    "operationId": "make",
                    "responses": {
                        "201": {"description": "made"},
                        "default": {"description": "error", "schema": {"$ref": "#/definitions/Error"}},
                    },
                }
            }
        },
        "definitions": {"Error": {"type": "object"}},
    }
    ((_, op),) = _import(doc, "swagger-json").operations
    (default,) = op["otherResponses"]
    assert default["status"] == "default"
    assert [(r["contentType"], r["typeName"]) for r in default["representations"]] == [
        ("application/json", "Error"),
        ("application/xml", "Error"),
    ]


@pytest.mark.parametrize("key", ["abc", "600", "99", "2XXX", "6XX"])
def test_a_response_key_that_is_no_status_is_refused(key: str) -> None:
    doc = json.loads(json.dumps(OAS3))
    doc["paths"]["/orders/{id}"]["get"]["responses"][key] = {"description": "?"}
    with pytest.raises(ImportFailed) as err:
        _import(doc)
    assert err.value.status == 400 and f"response '{key}'" in err.value.message


def test_petstore_default_responses_are_no_longer_dropped() -> None:
    got = parse_checked("openapi", (FIXTURES / "petstore.yaml").read_text(), Options(), None)
    for _name, op in got.operations:
        (default,) = op["otherResponses"]
        assert default["status"] == "default" and default["description"] == "unexpected error"
        assert default["representations"][0]["typeName"] == "Error"


def test_export_renders_them_back_and_a_reimport_keeps_them() -> None:
    first = _import(OAS3)
    defs = first.schemas[0][1]["document"]["components"]["schemas"]
    exported = openapi_document(first.api, first.operations, defs)
    responses = exported["paths"]["/orders/{id}"]["get"]["responses"]
    assert set(responses) == {"200", "2XX", "4XX", "default"}
    assert responses["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "X-Error-Id" in responses["default"]["headers"]
    again = parse_checked("openapi", yaml.safe_dump(exported), Options(), None)

    def without_schema_ids(op: dict[str, Any]) -> Any:
        # the schema entity's id hashes the definitions, which now include the named inline ones
        return json.loads(json.dumps(op["otherResponses"]).replace(first.schemas[0][0], again.schemas[0][0]))

    assert without_schema_ids(first.operations[0][1]) == again.operations[0][1]["otherResponses"]
    v2 = swagger_document(first.api, first.operations, defs)
    assert set(v2["paths"]["/orders/{id}"]["get"]["responses"]) == {"200", "2XX", "4XX", "default"}


def test_operation_model_accepts_only_default_and_ranges_there() -> None:
    base = {"displayName": "x", "method": "GET", "urlTemplate": "/x"}
    ok = OperationProps.model_validate({**base, "otherResponses": [{"status": "5XX"}, {"status": "default"}]})
    assert ok.otherResponses is not None and [r.status for r in ok.otherResponses] == ["5XX", "default"]
    for bad in ("200", "2xx", "Default", ""):
        with pytest.raises(ValidationError):
            OperationProps.model_validate({**base, "otherResponses": [{"status": bad}]})
