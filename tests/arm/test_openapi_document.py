"""The generated OpenAPI document is valid OpenAPI 3.1 for every route and kind (no server needed)."""

from __future__ import annotations

from openapi_spec_validator import validate

from portico.server.openapi import build_document
from portico.server.routes import ROUTES


def test_the_document_is_valid_and_covers_the_route_table() -> None:
    doc = build_document(ROUTES, "https://portico.example")
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert any(p.endswith("/providers/Microsoft.Resources/deployments/{deploymentName}") for p in paths)
    assert any(p.endswith("/apis/{apiName}/operations/{operationName}") for p in paths)
    assert all("*" not in p for p in paths)
