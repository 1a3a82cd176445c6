"""Imported APIs take traffic: the gateway routes requests to the operations an import created
(path templates, required query parameters in the template), and to a released revision."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, _Backend, eventually, gateway_env, make_service
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openapi"
SVC = "importgw"


@pytest.fixture(scope="module")
def echo_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_imported_operations_route(server_factory: Callable[..., PorticoServer], echo_backend: str) -> None:
    server = server_factory(db="sqlite", env=gateway_env())
    client = make_service(server, SVC)
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": f"{SVC}.{DOMAIN}"}, timeout=30)

    def imported(api: str, fmt: str, fixture: str, **kw: Any) -> None:
        params = M.ApiCreateOrUpdateParameter(
            format=fmt,
            value=(FIXTURES / fixture).read_text(),
            path=api,
            service_url=f"{echo_backend}/{api}-backend",
            subscription_required=False,
            protocols=["http", "https"],
            **kw,
        )
        client.api.begin_create_or_update(RG, SVC, api, params).result()

    imported("pets", "openapi", "petstore.yaml")
    imported("uber", "swagger-json", "uber.json")

    def answered(path: str) -> dict[str, Any]:
        r = http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        doc: dict[str, Any] = r.json()
        return doc

    got = eventually(lambda: answered("/pets/pets/42"), timeout=5)
    assert got["path"] == "/pets-backend/pets/42" and got["method"] == "GET"
    assert http.post("/pets/pets").json()["method"] == "POST"
    assert http.delete("/pets/pets/42").status_code == 404  # no such operation was imported
    # Required query parameters are part of the operation's template: without them, no match.
    # (the second API may reach the gateway one configuration poll after the first)
    uber = eventually(lambda: answered("/uber/products?latitude=1&longitude=2"), timeout=5)
    assert uber["query"] == {
        "latitude": "1",
        "longitude": "2",
    }
    assert http.get("/uber/products").status_code == 404

    # A revision takes traffic once released.
    source = f"/subscriptions/{client._config.subscription_id}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{SVC}/apis/pets"
    client.api.begin_create_or_update(
        RG, SVC, "pets;rev=2", M.ApiCreateOrUpdateParameter(source_api_id=source)
    ).result()
    client.api_operation.create_or_update(
        RG,
        SVC,
        "pets;rev=2",
        "health",
        M.OperationContract(display_name="Health", method="GET", url_template="/health"),
    )
    assert http.get("/pets/health").status_code == 404  # not current: only on its revision URL
    assert eventually(lambda: answered("/pets;rev=2/health"), timeout=5)["path"] == "/pets-backend/health"
    assert answered("/pets;rev=2/pets/7")["path"] == "/pets-backend/pets/7"
    client.api_release.create_or_update(RG, SVC, "pets", "r2", M.ApiReleaseContract(api_id=f"{source};rev=2"))
    assert eventually(lambda: answered("/pets/health"), timeout=5)["path"] == "/pets-backend/health"
    # the former current revision now answers on its revision URL, without the new operation
    assert eventually(lambda: answered("/pets;rev=1/pets/7"), timeout=5)["path"] == "/pets-backend/pets/7"
    assert http.get("/pets;rev=1/health").status_code == 404
    http.close()
