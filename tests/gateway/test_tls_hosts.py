"""Custom Proxy hostnames present their own certificates on the gateway's HTTPS port (SNI):
configured through the Azure SDK, checked with real TLS handshakes that verify the certificate."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from tests.gateway.conftest import RG, GatewayEnv, eventually


def make_certificate(name: str, tmp: Path, password: str | None) -> tuple[str, Path]:
    """(base64 PFX, path of the certificate as PEM for a client to trust) for DNS name `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = BestAvailableEncryption(password.encode()) if password else NoEncryption()
    pfx = pkcs12.serialize_key_and_certificates(b"gw", key, cert, None, encryption)
    pem = tmp / f"{name.replace('*', 'star')}.pem"
    pem.write_bytes(cert.public_bytes(Encoding.PEM))
    return base64.b64encode(pfx).decode(), pem


def tls_get(gw: GatewayEnv, sni: str, trust: Path, path: str, key: str) -> tuple[str, bytes]:
    """(subject CN the server presented, first line of the answer), verifying the certificate for `sni`."""
    context = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection(("127.0.0.1", gw.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as s:
            cert: Any = s.getpeercert()
            cn = dict(x[0] for x in cert["subject"])["commonName"]
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nOcp-Apim-Subscription-Key: {key}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return cn, data.split(b"\r\n", 1)[0]


def set_hostnames(gw: GatewayEnv, hostnames: list[dict[str, Any]]) -> None:
    gw.client.api_management_service.begin_create_or_update(
        RG,
        gw.service,
        {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {
                "publisherEmail": "ops@contoso.com",
                "publisherName": "Contoso",
                "hostnameConfigurations": hostnames,
            },
        },
    ).result()


def test_custom_hostnames_present_their_certificates(gw: GatewayEnv, backend: str, tmp_path: Path) -> None:
    gw.api("tlsapi", "tlsapi", backend)
    key = gw.subscription("tls-sub", "/apis")
    exact, wild, plain = f"api.{gw.service}.test", f"*.wild-{gw.service}.test", f"plain.{gw.service}.test"
    exact_pfx, exact_pem = make_certificate(exact, tmp_path, "s3cret")
    wild_pfx, wild_pem = make_certificate(wild, tmp_path, None)
    set_hostnames(
        gw,
        [
            {
                "type": "Proxy",
                "hostName": exact,
                "encodedCertificate": exact_pfx,
                "certificatePassword": "s3cret",
            },
            {"type": "Proxy", "hostName": wild, "encodedCertificate": wild_pfx},
            {"type": "Proxy", "hostName": plain},
        ],
    )
    # the certificate is secret in the management API's answers (as in Azure)
    shown = gw.client.api_management_service.get(RG, gw.service).hostname_configurations
    assert all(h.encoded_certificate is None and h.certificate_password is None for h in shown)
    assert {h.host_name: h.certificate.subject for h in shown if h.certificate} == {
        exact: f"CN={exact}",
        wild: f"CN={wild}",
    }

    cn, _status = eventually(lambda: presented(gw, exact, exact_pem, key), timeout=3)
    assert cn == exact
    cn, _status = presented(gw, f"x.wild-{gw.service}.test", wild_pem, key)
    assert cn == wild
    # a hostname without a certificate, and a name the gateway does not know: the node's certificate
    node = _subject(gw, "localhost")
    assert node not in (exact, wild)
    assert _subject(gw, plain) == node and _subject(gw, "unknown.example") == node
    cn, _status = tls_get(gw, "localhost", Path(gw.server.ca), "/tlsapi/x", key)  # which verifies as before
    assert cn == node

    # a rotated certificate is presented within the configuration's poll
    (tmp_path / "rotated").mkdir()
    new_pfx, new_pem = make_certificate(exact, tmp_path / "rotated", None)
    set_hostnames(gw, [{"type": "Proxy", "hostName": exact, "encodedCertificate": new_pfx}])
    eventually(lambda: presented(gw, exact, new_pem, key), timeout=3)


def presented(gw: GatewayEnv, sni: str, trust: Path, key: str, path: str = "/tlsapi/x") -> tuple[str, bytes]:
    """tls_get that must verify and answer 200 (an AssertionError otherwise, for `eventually`)."""
    try:
        result = tls_get(gw, sni, trust, path, key)
    except ssl.SSLCertVerificationError as exc:
        raise AssertionError(f"{sni}: {exc}") from None
    assert result[1] == b"HTTP/1.1 200 OK", result
    return result


def _subject(gw: GatewayEnv, sni: str) -> str:
    """The subject CN the server presents for `sni`, unverified (the node's certificate is not
    issued for custom names)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", gw.https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=sni) as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
