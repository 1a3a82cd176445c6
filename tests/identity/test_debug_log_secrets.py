"""No log level prints a secret: a server at PORTICO_LOG_LEVEL=debug is given a subscription key,
a secret named value and backend credentials through the API, the gateway loads them, and the
captured log holds none of them."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from azure.mgmt.apimanagement import models as M

from tests.conftest import sdk_client
from tests.support.server import PorticoServer, free_port

pytestmark = pytest.mark.slow

RG = "logs"
SVC = "logsvc"
DOMAIN = "gateway.localhost"


def start_backend(seen: list[dict[str, str]]) -> str:
    """A backend answering 200 that records each request's headers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_debug_log_holds_no_secret(server_factory: Callable[..., PorticoServer]) -> None:
    gateway_port = free_port()
    server = server_factory(
        env={
            "PORTICO_LOG_LEVEL": "debug",
            "PORTICO_GATEWAY_WORKERS": "1",
            "PORTICO_GATEWAY_PORT": str(gateway_port),
            "PORTICO_GATEWAY_DOMAIN": DOMAIN,
        }
    )
    marks = {name: f"{name}-{secrets.token_hex(12)}" for name in ("subkey", "subkey2", "namedvalue")}
    marks |= {name: f"{name}-{secrets.token_hex(12)}" for name in ("header", "query", "auth", "password")}
    seen: list[dict[str, str]] = []
    backend_url = start_backend(seen)
    client = sdk_client(server)
    token = server.token()
    httpx.put(
        f"{server.url}/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/{RG}"
        "?api-version=2022-09-01",
        json={"location": "westeurope"},
        headers={"Authorization": f"Bearer {token}"},
        verify=server.ssl_context(),
    ).raise_for_status()
    client.api_management_service.begin_create_or_update(
        RG,
        SVC,
        M.ApiManagementServiceResource(
            location="West Europe",
            sku=M.ApiManagementServiceSkuProperties(name="Developer", capacity=1),
            publisher_email="ops@contoso.example",
            publisher_name="Contoso",
        ),
    ).result()
    client.named_value.begin_create_or_update(
        RG,
        SVC,
        "nv",
        M.NamedValueCreateContract(display_name="nv", value=marks["namedvalue"], secret=True),
    ).result()
    client.backend.create_or_update(
        RG,
        SVC,
        "b1",
        M.BackendContract(
            url=backend_url,
            protocol="http",
            credentials=M.BackendCredentialsContract(
                header={"x-api-key": [marks["header"]]},
                query={"code": [marks["query"]]},
                authorization=M.BackendAuthorizationHeaderCredentials(
                    scheme="Basic", parameter=marks["auth"]
                ),
            ),
        ),
    )
    client.backend.create_or_update(
        RG,
        SVC,
        "b2",
        M.BackendContract(
            url="https://backend.example",
            protocol="http",
            proxy=M.BackendProxyContract(
                url="http://proxy.example", username="u", password=marks["password"]
            ),
        ),
    )
    client.api.begin_create_or_update(
        RG,
        SVC,
        "echo",
        M.ApiCreateOrUpdateParameter(
            display_name="Echo", path="echo", protocols=["http"], service_url=backend_url
        ),
    ).result()
    client.api_operation.create_or_update(
        RG, SVC, "echo", "get-x", M.OperationContract(display_name="x", method="GET", url_template="/x")
    )
    client.api_policy.create_or_update(
        RG,
        SVC,
        "echo",
        "policy",
        M.PolicyContract(
            value='<policies><inbound><base /><set-backend-service backend-id="b1" /></inbound>'
            "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
            format="rawxml",
        ),
    )
    client.subscription.create_or_update(
        RG,
        SVC,
        "s1",
        M.SubscriptionCreateParameters(
            scope="/apis",
            display_name="S1",
            state="active",
            primary_key=marks["subkey"],
            secondary_key=marks["subkey2"],
        ),
    )
    # Reads that return the secrets to an authorised caller still must not log them.
    assert client.subscription.list_secrets(RG, SVC, "s1").primary_key == marks["subkey"]
    assert client.named_value.list_value(RG, SVC, "nv").value == marks["namedvalue"]
    # The gateway loads the configuration, checks the key and calls the backend with its credentials.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = httpx.get(
            f"http://127.0.0.1:{gateway_port}/echo/x",
            headers={"Host": f"{SVC}.{DOMAIN}", "Ocp-Apim-Subscription-Key": marks["subkey"]},
        )
        if r.status_code == 200:
            break
        time.sleep(0.25)
    assert r.status_code == 200, r.text
    assert seen and seen[-1]["x-api-key"] == marks["header"]
    r = httpx.get(  # the key in the query string instead
        f"http://127.0.0.1:{gateway_port}/echo/x?subscription-key={marks['subkey2']}",
        headers={"Host": f"{SVC}.{DOMAIN}"},
    )
    assert r.status_code == 200, r.text
    server.stop()

    log = server.log_path.read_text(errors="replace")
    assert " DEBUG " in log  # the level took effect
    admin_secret = server.admin()["client_secret"]
    leaked = [name for name, value in {**marks, "client_secret": admin_secret}.items() if value in log]
    assert leaked == [], f"secrets in the debug log: {leaked}"
