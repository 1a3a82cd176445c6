"""Mutual TLS to backends: the gateway presents a service certificate (uploaded through the Azure
SDK as a PFX) to a local HTTPS backend that requires a client certificate from its CA, through
`authentication-certificate` (certificate-id or thumbprint) and through backend entities
(`credentials.certificateIds` / `credentials.certificate`); the backend's own certificate is
trusted through the service's CA `certificates` (store Root) and checked as its `tls` says."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M
from cryptography.hazmat.primitives.serialization import Encoding

from tests.gateway.conftest import RG, GatewayEnv, eventually, gateway_env, make_service, unique
from tests.support.certs import CertificateAuthority
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow


class _WhoAmI(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), "")
        body = json.dumps({"client": cn}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def mtls_backend(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An HTTPS backend for `localhost` that refuses clients without a certificate of `ca`."""
    d = tmp_path_factory.mktemp("backend")
    (d / "server.pem").write_bytes(ca.server_pem("localhost"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.pem.decode())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _WhoAmI)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def gw(
    server_factory: Callable[..., PorticoServer],
) -> Iterator[GatewayEnv]:
    server = server_factory(db="sqlite", env=gateway_env())
    name = unique("mtls")
    client = make_service(server, name)
    with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=server.ca)) as http:
        yield GatewayEnv(server, client, http, name)


def _trust(gw: GatewayEnv, ca: CertificateAuthority) -> None:
    der = ca.cert.public_bytes(Encoding.DER)
    gw.client.api_management_service.begin_create_or_update(
        RG,
        gw.service,
        {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {
                "publisherEmail": "ops@contoso.com",
                "publisherName": "Contoso",
                "certificates": [{"encodedCertificate": base64.b64encode(der).decode(), "storeName": "Root"}],
            },
        },
    ).result()


def _client_of(gw: GatewayEnv, path: str, key: str) -> tuple[int, str]:
    r = gw.get(path, key=key)
    return r.status_code, (r.json().get("client", "") if r.status_code == 200 else r.text)


def _presents(gw: GatewayEnv, path: str, key: str, client: str) -> None:
    """Passes once the backend saw the client certificate `client` (for `eventually`)."""
    got = _client_of(gw, path, key)
    assert got == (200, client), got


def test_client_certificates_reach_the_backend(
    gw: GatewayEnv, ca: CertificateAuthority, mtls_backend: int
) -> None:
    c = gw.client
    pfx1, thumb1 = ca.client_pfx("client-one", "pw-one")
    pfx2, thumb2 = ca.client_pfx("client-two", "pw-two")
    c.certificate.create_or_update(
        RG, gw.service, "client1", M.CertificateCreateOrUpdateParameters(data=pfx1, password="pw-one")
    )
    c.certificate.create_or_update(
        RG, gw.service, "client2", M.CertificateCreateOrUpdateParameters(data=pfx2, password="pw-two")
    )
    by_name = f"https://localhost:{mtls_backend}"
    by_ip = f"https://127.0.0.1:{mtls_backend}"  # not a name of the backend's certificate
    for api in ("byid", "bythumb", "nocert", "viabackend", "viathumb", "strict"):
        gw.api(api, api, by_name)
    gw.policy(
        '<policies><inbound><base/><authentication-certificate certificate-id="client1"/></inbound></policies>',
        api="byid",
    )
    gw.policy(
        f'<policies><inbound><base/><authentication-certificate thumbprint="{thumb2}"/></inbound></policies>',
        api="bythumb",
    )

    def backend(name: str, url: str, creds: M.BackendCredentialsContract, check_name: bool) -> None:
        c.backend.create_or_update(
            RG,
            gw.service,
            name,
            M.BackendContract(
                url=url,
                protocol="http",
                credentials=creds,
                tls=M.BackendTlsProperties(
                    validate_certificate_chain=True, validate_certificate_name=check_name
                ),
            ),
        )
        gw.policy(
            f'<policies><inbound><base/><set-backend-service backend-id="{name}"/></inbound></policies>',
            api={"be-ids": "viabackend", "be-thumb": "viathumb", "be-strict": "strict"}[name],
        )

    backend("be-ids", by_ip, M.BackendCredentialsContract(certificate_ids=["/certificates/client2"]), False)
    backend("be-thumb", by_ip, M.BackendCredentialsContract(certificate=[thumb1]), False)
    backend("be-strict", by_ip, M.BackendCredentialsContract(certificate_ids=["/certificates/client1"]), True)
    key = gw.subscription("all", "/apis")

    # the backend's certificate is issued by a CA nobody trusts yet
    def untrusted() -> None:
        r = gw.get("/byid/x", key=key)
        assert r.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in r.text, r.text

    eventually(untrusted, timeout=3)
    # ... until the service trusts it (its `certificates`, store Root, as in API Management)
    _trust(gw, ca)
    eventually(lambda: _presents(gw, "/byid/x", key, "client-one"), timeout=3)
    assert _client_of(gw, "/bythumb/x", key) == (200, "client-two")
    eventually(lambda: _presents(gw, "/viabackend/x", key, "client-two"), timeout=3)
    assert _client_of(gw, "/viathumb/x", key) == (200, "client-one")
    # no certificate: the backend refuses the handshake; a backend whose name does not match its
    # certificate is refused while the backend entity asks for the name to be checked
    status, _ = _client_of(gw, "/nocert/x", key)
    assert status == 502
    status, text = _client_of(gw, "/strict/x", key)
    assert status == 502 and "certificate" in text.lower(), text

    # a rotated certificate (same id) is presented within the configuration's poll
    pfx3, _thumb3 = ca.client_pfx("client-three", "pw-3")
    c.certificate.create_or_update(
        RG,
        gw.service,
        "client1",
        M.CertificateCreateOrUpdateParameters(data=pfx3, password="pw-3"),
        if_match="*",
    )
    eventually(lambda: _presents(gw, "/byid/x", key, "client-three"), timeout=3)


def test_the_control_plane_checks_what_the_gateway_cannot_present(gw: GatewayEnv) -> None:
    c = gw.client
    with pytest.raises(HttpResponseError) as err:
        c.backend.create_or_update(
            RG,
            gw.service,
            "be-unknown",
            M.BackendContract(
                url="https://b.example",
                protocol="http",
                credentials=M.BackendCredentialsContract(certificate=["00" * 20]),
            ),
        )
    assert err.value.status_code == 400 and "credentials.certificate" in str(err.value)
    gw.api("inline", "inline", "https://b.example")
    for attrs, why in (('body="@(x)" password="p"', "body"), ("", "exactly one")):
        with pytest.raises(HttpResponseError) as err:
            gw.policy(
                f"<policies><inbound><authentication-certificate {attrs}/></inbound></policies>", api="inline"
            )
        assert err.value.status_code == 400 and why in str(err.value), str(err.value)


def test_a_missing_certificate_fails_the_request_not_silently(gw: GatewayEnv, tmp_path: Path) -> None:
    gw.api("gone", "gone", "https://b.example")
    gw.policy(
        '<policies><inbound><authentication-certificate certificate-id="nope"/></inbound></policies>',
        api="gone",
    )
    key = gw.subscription("gone-sub", "/apis")

    def refused() -> None:
        r = gw.get("/gone/x", key=key)
        assert r.status_code == 500 and "nope" in r.text, r.text

    eventually(refused, timeout=3)
