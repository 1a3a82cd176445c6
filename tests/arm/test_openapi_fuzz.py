"""The published OpenAPI document is valid OpenAPI 3.1, and a bounded property-based run against a
live server (schemathesis, data generated from the document) gets no 5xx from any operation."""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from portico.server.openapi import build_document
from portico.server.routes import ROUTES
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow
SUB = "00000000-0000-0000-0000-000000000001"
RG, SVC = "fuzz-rg", "fuzzsvc"

# A fixed sample of a few hundred operations per run: every PUT (bodies reach validation), half the
# POSTs and PATCHes, one in six of the rest; the same on every run (by CRC of method and path).
SHARES = {"PUT": 1, "POST": 2, "PATCH": 2}
OTHER_SHARE = 6


def _sample(document: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        kept = {
            verb: op
            for verb, op in item.items()
            if zlib.crc32(f"{verb} {path}".encode()) % SHARES.get(verb.upper(), OTHER_SHARE) == 0
        }
        if kept:
            paths[path] = kept
    return {**document, "paths": paths}


schema = schemathesis.openapi.from_dict(_sample(build_document(ROUTES, "https://placeholder")))


@pytest.fixture(scope="module")
def live(server_factory: Any) -> Iterator[tuple[PorticoServer, dict[str, str]]]:
    server: PorticoServer = server_factory()
    headers = {"Authorization": f"Bearer {server.token()}"}
    with httpx.Client(
        base_url=server.url, verify=ssl.create_default_context(cafile=server.ca), headers=headers
    ) as http:
        r = http.put(
            f"/subscriptions/{SUB}/resourceGroups/{RG}?api-version=2022-09-01",
            json={"location": "westeurope"},
        )
        assert r.status_code in (200, 201)
        body = {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {"publisherEmail": "a@b.example", "publisherName": "A"},
        }
        r = http.put(
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{SVC}?api-version=2024-05-01",
            json=body,
        )
        assert r.status_code in (200, 201), r.text
        served = http.get("/openapi.json")
        assert served.status_code == 200
        validate(served.json())
    yield server, headers


def test_the_served_document_is_valid_openapi_31(live: tuple[PorticoServer, dict[str, str]]) -> None:
    server, _ = live
    doc = httpx.get(f"{server.url}/openapi.json", verify=ssl.create_default_context(cafile=server.ca)).json()
    assert doc["openapi"] == "3.1.0" and doc["servers"][0]["url"] == server.url
    assert any(p.endswith("/apis/{apiName}") for p in doc["paths"])


@schema.parametrize()
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_operation_answers_5xx(case: Any, live: tuple[PorticoServer, dict[str, str]]) -> None:
    server, headers = live
    # Half the cases address the real service, so bodies reach validation rather than a 404.
    if case.path_parameters and hash(str(case.body)) % 2 == 0:
        for name, value in (("subscriptionId", SUB), ("resourceGroupName", RG), ("serviceName", SVC)):
            if name in case.path_parameters:
                case.path_parameters[name] = value
    response = case.call(base_url=server.url, headers=headers, verify=server.ca, timeout=30)
    assert response.status_code < 500, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:300],
    )
