"""Client certificates and hostname certificates over real TLS, configured with the Azure SDK:
a self-hosted gateway's node presents its hostname configurations' certificates per SNI (a
rotated one within the poll) and asks for a client certificate where `negotiateClientCertificate`
says so; `validate-client-certificate` lets a client of a trusted CA through and refuses (401) one
without a certificate or of another CA; expressions see the certificate. The managed gateway does
the same for the service's own hostnames and CA certificates."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

from tests.gateway.conftest import DOMAIN, RG, GatewayEnv, eventually
from tests.support.certs import CertificateAuthority
from tests.support.server import REPO, free_port

pytestmark = pytest.mark.slow

SERVERS = CertificateAuthority("Contoso Servers CA")  # issues the hostnames' certificates
CLIENTS = CertificateAuthority("Contoso Clients CA")  # trusted for clients
STRANGERS = CertificateAuthority("Fabrikam CA")  # not trusted

NONE = "Invalid client certificate: the client presented no certificate."
UNTRUSTED = "Invalid client certificate: the certificate is not issued by a trusted certificate authority."
POLICY = """<policies><inbound><base />
<validate-client-certificate validate-revocation="false">
  <identities><identity issuer-subject="CN=Contoso Clients CA" /></identities>
</validate-client-certificate>
<set-header name="X-Client-Thumbprint" exists-action="override">
  <value>@(context.Request.Certificate.Thumbprint)</value>
</set-header>
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""


def _server_pfx(name: str) -> str:
    key, cert = SERVERS.issue(name)
    return base64.b64encode(
        pkcs12.serialize_key_and_certificates(b"s", key, cert, None, NoEncryption())
    ).decode()


def _ca_pfx(ca: CertificateAuthority) -> str:
    """A PFX holding only a CA's certificate (what a certificate authority entity names)."""
    return base64.b64encode(
        pkcs12.serialize_key_and_certificates(b"ca", None, ca.cert, None, NoEncryption())
    ).decode()


def _client_pem(ca: CertificateAuthority, name: str, tmp: Path) -> tuple[Path, str]:
    """(key and certificate as one PEM file, its thumbprint)."""
    key, cert = ca.issue(name, client=True)
    path = tmp / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + cert.public_bytes(Encoding.PEM)
    )
    return path, cert.fingerprint(hashes.SHA1()).hex().upper()


def _call(
    port: int, sni: str, path: str, trust: Path, client: Path | None = None, chunked: bool = False
) -> tuple[x509.Certificate, int, dict[str, Any]]:
    """(the certificate the gateway presented, verified for `sni`; the status; the JSON body).
    `chunked`: a POST with a chunked body, which the gateway serves through ASGI, not its fast path."""
    context = ssl.create_default_context(cafile=str(trust))
    if client is not None:
        context.load_cert_chain(str(client))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as s:
            der = s.getpeercert(binary_form=True)
            assert der is not None
            request = (
                f"{'POST' if chunked else 'GET'} {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n"
            )
            if chunked:
                request += "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0"
            s.sendall(f"{request}\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return x509.load_der_x509_certificate(der), status, json.loads(body) if body.strip() else {}


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _answers(
    port: int,
    sni: str,
    path: str,
    trust: Path,
    client: Path | None,
    status: int,
    chunked: bool = False,
    says: str = "",
) -> dict[str, Any]:
    """The JSON body of an answer that must have `status` (and a message containing `says`)."""
    try:
        _cert, got, body = _call(port, sni, path, trust, client, chunked)
    except (OSError, ssl.SSLError) as exc:
        raise AssertionError(f"{sni}{path}: {exc}") from None
    assert got == status and says in str(body.get("message", "")), (sni, path, got, body)
    return body


def _node(
    gw: GatewayEnv, tmp: Path, name: str, token: str, port: int, https_port: int
) -> subprocess.Popen[bytes]:
    db_url = f"sqlite+aiosqlite:///{(gw.server.data_dir / 'portico.db').resolve()}"
    args = [
        sys.executable,
        "-m",
        "portico.cli",
        "gateway",
        "--port",
        str(port),
        "--https-port",
        str(https_port),
    ]
    args += ["--workers", "0"]
    env = {
        "PORTICO_DATA_DIR": str(tmp / "node"),
        "PORTICO_DATABASE_URL": db_url,
        "PORTICO_GATEWAY_DOMAIN": DOMAIN,
        "PORTICO_SECRET_KEY": gw.server.secret_key,
        "PORTICO_GATEWAY_NAME": name,
        "PORTICO_GATEWAY_TOKEN": token,
    }
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def test_self_hosted_node_hostnames_and_client_certificates(
    gw: GatewayEnv, backend: str, tmp_path: Path
) -> None:
    c, svc = gw.client, gw.service
    exact, wild = f"api.{svc}.test", f"*.edge-{svc}.test"
    for cert_id, pfx in (("api-cert", _server_pfx(exact)), ("wild-cert", _server_pfx(wild))):
        c.certificate.create_or_update(RG, svc, cert_id, M.CertificateCreateOrUpdateParameters(data=pfx))
    c.certificate.create_or_update(
        RG, svc, "clients-ca", M.CertificateCreateOrUpdateParameters(data=_ca_pfx(CLIENTS))
    )
    c.certificate.create_or_update(
        RG, svc, "strangers-ca", M.CertificateCreateOrUpdateParameters(data=_ca_pfx(STRANGERS))
    )
    c.gateway.create_or_update(
        RG, svc, "edge", M.GatewayContract(location_data=M.ResourceLocationDataContract(name="edge"))
    )
    c.gateway_hostname_configuration.create_or_update(
        RG,
        svc,
        "edge",
        "api",
        M.GatewayHostnameConfigurationContract(
            hostname=exact, certificate_id="/certificates/api-cert", negotiate_client_certificate=True
        ),
    )
    c.gateway_hostname_configuration.create_or_update(
        RG,
        svc,
        "edge",
        "wild",
        M.GatewayHostnameConfigurationContract(hostname=wild, certificate_id="/certificates/wild-cert"),
    )
    c.gateway_certificate_authority.create_or_update(
        RG, svc, "edge", "clients-ca", M.GatewayCertificateAuthorityContract(is_trusted=True)
    )
    c.gateway_certificate_authority.create_or_update(  # known, but not trusted
        RG, svc, "edge", "strangers-ca", M.GatewayCertificateAuthorityContract(is_trusted=False)
    )
    gw.api("mtls", "mtls", backend, subscriptionRequired=False)
    gw.api("open", "open", backend, subscriptionRequired=False)
    gw.policy(POLICY, api="mtls")
    for api in ("mtls", "open"):
        c.gateway_api.create_or_update(RG, svc, "edge", api)
    # a certificate a hostname configuration presents cannot be deleted
    with pytest.raises(HttpResponseError) as err:
        c.certificate.delete(RG, svc, "api-cert", if_match="*")
    assert err.value.status_code == 409 and "hostnameConfigurations/api" in str(err.value.message)

    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    request = M.GatewayTokenRequestContract(key_type="primary", expiry=expiry)
    token = str(c.gateway.generate_token(RG, svc, "edge", request).value)
    trust = tmp_path / "servers-ca.pem"
    trust.write_bytes(SERVERS.pem)
    good, good_thumb = _client_pem(CLIENTS, "client-a", tmp_path)
    stranger, _ = _client_pem(STRANGERS, "client-b", tmp_path)
    port, https_port = free_port(), free_port()
    proc = _node(gw, tmp_path, "edge", token, port, https_port)
    try:
        # each hostname gets its configuration's certificate (verified by the client for that name)
        body = eventually(lambda: _answers(https_port, exact, "/mtls/x", trust, good, 200), timeout=30)
        assert body["headers"]["x-client-thumbprint"] == good_thumb  # what the expression saw
        cert, status, body = _call(https_port, exact, "/mtls/x", trust)
        assert (_cn(cert), status, body["message"]) == (exact, 401, NONE)
        assert _call(https_port, exact, "/mtls/x", trust, stranger)[2]["message"] == UNTRUSTED
        cert, status, _body = _call(https_port, f"x.edge-{svc}.test", "/open/x", trust)
        assert (_cn(cert), status) == (wild, 200)
        # no client certificate is asked for there: the policy sees none
        assert _call(https_port, f"x.edge-{svc}.test", "/mtls/x", trust, good)[2]["message"] == NONE
        # a rotated certificate is presented within the configuration's poll
        key, rotated = SERVERS.issue(exact)
        rotated_pfx = base64.b64encode(
            pkcs12.serialize_key_and_certificates(b"s", key, rotated, None, NoEncryption())
        ).decode()
        c.certificate.create_or_update(
            RG, svc, "api-cert", M.CertificateCreateOrUpdateParameters(data=rotated_pfx)
        )

        def rotated_presented() -> None:
            presented = _call(https_port, exact, "/open/x", trust)[0]
            assert presented.serial_number == rotated.serial_number

        eventually(rotated_presented, timeout=10)
        # the CA is trusted through the gateway's certificate authorities: untrusted, clients fail
        c.gateway_certificate_authority.create_or_update(
            RG, svc, "edge", "clients-ca", M.GatewayCertificateAuthorityContract(is_trusted=False)
        )
        eventually(
            lambda: _answers(https_port, exact, "/mtls/x", trust, good, 401, says=UNTRUSTED), timeout=10
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode()
    assert "Traceback" not in out, out[-3000:]


def test_managed_gateway_negotiates_client_certificates(gw: GatewayEnv, backend: str, tmp_path: Path) -> None:
    c, svc = gw.client, gw.service
    host = f"mtls.{svc}.test"
    c.api_management_service.begin_create_or_update(
        RG,
        svc,
        {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {
                "publisherEmail": "ops@contoso.com",
                "publisherName": "Contoso",
                "hostnameConfigurations": [
                    {
                        "type": "Proxy",
                        "hostName": host,
                        "encodedCertificate": _server_pfx(host),
                        "negotiateClientCertificate": True,
                    }
                ],
                "certificates": [
                    {
                        "storeName": "Root",
                        "encodedCertificate": base64.b64encode(
                            CLIENTS.cert.public_bytes(Encoding.DER)
                        ).decode(),
                    }
                ],
            },
        },
    ).result()
    gw.api("mtls2", "mtls2", backend, subscriptionRequired=False)
    gw.policy(POLICY, api="mtls2")
    trust = tmp_path / "servers-ca.pem"
    trust.write_bytes(SERVERS.pem)
    good, good_thumb = _client_pem(CLIENTS, "client-c", tmp_path)
    stranger, _ = _client_pem(STRANGERS, "client-d", tmp_path)
    port = gw.https_port

    # each worker process of the node loads the change within its own poll: every call may meet
    # one that has not yet, so each waits for its answer
    def thumbprint_seen(chunked: bool = False) -> dict[str, Any]:
        body = _answers(port, host, "/mtls2/x", trust, good, 200, chunked)
        assert body["headers"].get("x-client-thumbprint") == good_thumb, body  # the policy is in too
        return body

    eventually(thumbprint_seen, timeout=10)
    eventually(lambda: _answers(port, host, "/mtls2/x", trust, None, 401, says=NONE), timeout=10)
    eventually(lambda: _answers(port, host, "/mtls2/x", trust, stranger, 401, says=UNTRUSTED), timeout=10)
    # the same through the ASGI path (a streamed request body)
    assert eventually(lambda: thumbprint_seen(chunked=True), timeout=10)["body"] == "hi"
    eventually(
        lambda: _answers(port, host, "/mtls2/x", trust, stranger, 401, chunked=True, says=UNTRUSTED),
        timeout=10,
    )
