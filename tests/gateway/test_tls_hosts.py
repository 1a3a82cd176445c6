"""Custom Proxy hostnames present their own certificates on the gateway's HTTPS port (SNI):
configured through the Azure SDK, checked with real TLS handshakes that verify the certificate."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from portico.server.tls import ensure_gateway_tls, ensure_tls
from tests.gateway.conftest import DOMAIN, RG, GatewayEnv, eventually, make_certificate, presented, tls_get

pytestmark = pytest.mark.slow


def test_custom_hostnames_present_their_certificates(gw: GatewayEnv, backend: str, tmp_path: Path) -> None:
    gw.api("tlsapi", "tlsapi", backend)
    key = gw.subscription("tls-sub", "/apis")
    exact, wild, plain = f"api.{gw.service}.test", f"*.wild-{gw.service}.test", f"plain.{gw.service}.test"
    exact_pfx, exact_pem = make_certificate(exact, tmp_path, "s3cret")
    wild_pfx, wild_pem = make_certificate(wild, tmp_path, None)
    gw.hostnames(
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
    gw.hostnames([{"type": "Proxy", "hostName": exact, "encodedCertificate": new_pfx}])
    eventually(lambda: presented(gw, exact, new_pem, key), timeout=3)


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


def test_service_hosts_verify_against_the_node_certificate(gw: GatewayEnv, backend: str) -> None:
    """A client that verifies TLS reaches a service at its gatewayUrl host, {service}.{domain}: the
    node's gateway certificate (of the CA clients trust) covers *.{domain}. The management API
    keeps its own certificate."""
    gw.api("wildapi", "wildapi", backend)
    key = gw.subscription("wild-sub", "/apis")
    host = f"{gw.service}.{DOMAIN}"
    cn, _status = eventually(lambda: presented(gw, host, Path(gw.server.ca), key, "/wildapi/x"), timeout=3)
    assert cn == f"*.{DOMAIN}"
    context = ssl.create_default_context(cafile=gw.server.ca)
    with socket.create_connection(("127.0.0.1", gw.server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    sans = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert f"*.{DOMAIN}" not in sans.value.get_values_for_type(x509.DNSName)


def _verified(cert: Path, key: Path, ca: Path, sni: str) -> bool:
    """Whether a client trusting `ca` accepts the certificate `cert` for host `sni` (a real
    handshake on 127.0.0.1, the name given by SNI)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert), str(key))
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError), server.wrap_socket(conn, server_side=True):
                pass

        t = threading.Thread(target=accept)
        t.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as raw:
                with ssl.create_default_context(cafile=str(ca)).wrap_socket(raw, server_hostname=sni):
                    return True
        except ssl.SSLCertVerificationError:
            return False
        finally:
            t.join(5)


def test_gateway_certificate_covers_the_gateway_domain(tmp_path: Path) -> None:
    ca, cert, key = ensure_gateway_tls(tmp_path, "gateway.localhost", ["127.0.0.1"])
    for host in ("svc.gateway.localhost", "gateway.localhost", "localhost"):
        assert _verified(cert, key, ca, host), host
    assert not _verified(cert, key, ca, "a.b.gateway.localhost")  # a wildcard covers one label
    # the management certificate stays the node's own (same CA)
    _ca, server_cert, server_key = ensure_tls(tmp_path, ["127.0.0.1"])
    assert _verified(server_cert, server_key, ca, "localhost")
    assert not _verified(server_cert, server_key, ca, "svc.gateway.localhost")
    # kept while the domain is the same; issued again (same CA) when it changes
    assert (
        ensure_gateway_tls(tmp_path, "gateway.localhost", ["127.0.0.1"])[1].read_bytes() == cert.read_bytes()
    )
    ca_bytes = ca.read_bytes()
    ensure_gateway_tls(tmp_path, "apis.example", ["127.0.0.1"])
    assert ca.read_bytes() == ca_bytes and _verified(cert, key, ca, "svc.apis.example")
