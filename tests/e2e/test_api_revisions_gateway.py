"""API revisions through the Azure SDK and the gateway's sockets: a revision of a versioned API
answers where Azure addresses it (segment scheme: `/{path}/{version};rev=n/...`; header scheme:
`/{path};rev=n/...` with the version header), an offline revision answers 404 until it is put
back online (within the configuration poll), and the current revision is always online."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, _Backend, eventually, gateway_env, make_service
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

SVC = "revgw"


@pytest.fixture(scope="module")
def echo_backend() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_revisions_of_versioned_apis_and_offline_revisions(
    server_factory: Callable[..., PorticoServer], echo_backend: str
) -> None:
    server = server_factory(db="sqlite", env=gateway_env())
    client = make_service(server, SVC)
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": f"{SVC}.{DOMAIN}"}, timeout=30)
    scope = f"/subscriptions/{client._config.subscription_id}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{SVC}"

    def versioned_api(api: str, path: str, scheme: str) -> None:
        client.api_version_set.create_or_update(
            RG,
            SVC,
            f"{api}-set",
            M.ApiVersionSetContract(
                display_name=api, versioning_scheme=scheme, version_header_name="Api-Version"
            ),
        )
        client.api.begin_create_or_update(
            RG,
            SVC,
            api,
            M.ApiCreateOrUpdateParameter(
                display_name=api,
                path=path,
                api_version="v1",
                api_version_set_id=f"{scope}/apiVersionSets/{api}-set",
                service_url=f"{echo_backend}/{api}-backend",
                subscription_required=False,
                protocols=["http", "https"],
            ),
        ).result()
        client.api_operation.create_or_update(
            RG,
            SVC,
            api,
            "item",
            M.OperationContract(display_name="Item", method="GET", url_template="/items/{id}"),
        )
        rev2 = client.api.begin_create_or_update(
            RG, SVC, f"{api};rev=2", M.ApiCreateOrUpdateParameter(source_api_id=f"{scope}/apis/{api}")
        ).result()
        assert rev2.api_version == "v1" and rev2.api_version_set_id.endswith(f"/apiVersionSets/{api}-set")
        assert rev2.is_current is False and rev2.is_online is True
        client.api_operation.create_or_update(
            RG,
            SVC,
            f"{api};rev=2",
            "health",
            M.OperationContract(display_name="Health", method="GET", url_template="/health"),
        )

    versioned_api("orders", "orders", "Segment")
    versioned_api("stock", "stock", "Header")

    def status(path: str, **headers: str) -> int:
        return http.get(path, headers=headers).status_code

    def gone(path: str) -> None:
        assert status(path) == 404

    def answered(path: str, **headers: str) -> str:
        r = http.get(path, headers=headers)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        return str(r.json()["path"])

    # Segment scheme: the revision follows the version segment.
    assert eventually(lambda: answered("/orders/v1;rev=2/health"), timeout=5) == "/orders-backend/health"
    assert answered("/orders/v1;rev=2/items/7") == "/orders-backend/items/7"
    assert answered("/orders/v1/items/7") == "/orders-backend/items/7"
    assert status("/orders/v1/health") == 404  # not current: only on its revision URL
    assert status("/orders;rev=2/v1/health") == 404  # an unversioned API's revision address
    # Header scheme: the revision is on the path, the version in its header.
    stock = eventually(lambda: answered("/stock;rev=2/health", **{"Api-Version": "v1"}), timeout=5)
    assert stock == "/stock-backend/health"
    assert status("/stock;rev=2/health") == 404
    assert status("/stock/health", **{"Api-Version": "v1"}) == 404

    # Offline (the property is read-only in the SDK's models: the body goes as the SDK's raw IO)
    def set_online(api: str, online: bool) -> Any:
        body = io.BytesIO(json.dumps({"properties": {"isOnline": online}}).encode())
        return client.api.update(RG, SVC, api, if_match="*", parameters=body, content_type="application/json")

    assert set_online("orders;rev=2", False).is_online is False
    eventually(lambda: gone("/orders/v1;rev=2/health"), timeout=5)
    assert client.api.get(RG, SVC, "orders;rev=2").is_online is False
    revs = {r.api_revision: r.is_online for r in client.api_revision.list_by_service(RG, SVC, "orders")}
    assert revs == {"1": True, "2": False}
    urls = {r.api_revision: r.private_url for r in client.api_revision.list_by_service(RG, SVC, "orders")}
    assert urls == {"1": "/orders/v1;rev=1", "2": "/orders/v1;rev=2"}
    assert [r.private_url for r in client.api_revision.list_by_service(RG, SVC, "stock")] == [
        "/stock;rev=1",
        "/stock;rev=2",
    ]
    assert answered("/stock;rev=2/health", **{"Api-Version": "v1"}) == "/stock-backend/health"  # others stay
    assert set_online("orders;rev=2", True).is_online is True
    assert eventually(lambda: answered("/orders/v1;rev=2/health"), timeout=5) == "/orders-backend/health"

    # The current revision is always online.
    assert set_online("orders", False).is_online is True
    assert set_online("orders;rev=1", False).is_online is True  # the current one by its revision id
    assert client.api.get(RG, SVC, "orders").is_online is True
    assert answered("/orders/v1/items/8") == "/orders-backend/items/8"

    # Released, revision 2 answers on the version's URL, and revision 1 on its revision URL.
    client.api_release.create_or_update(
        RG, SVC, "orders", "r2", M.ApiReleaseContract(api_id=f"{scope}/apis/orders;rev=2")
    )
    assert eventually(lambda: answered("/orders/v1/health"), timeout=5) == "/orders-backend/health"
    assert eventually(lambda: answered("/orders/v1;rev=1/items/9"), timeout=5) == "/orders-backend/items/9"
    assert status("/orders/v1;rev=1/health") == 404
    http.close()
