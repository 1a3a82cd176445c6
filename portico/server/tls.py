"""TLS material: a local CA and server certificates generated on first start, unless supplied.

The CA signs two certificates: the management API's (`server.pem`: the node's host names) and the
gateway's (`gateway.pem`: `*.{gateway domain}` and the domain itself, since every service answers
as `https://{service}.{gateway domain}`, its gatewayUrl). Clients trust both through `ca.pem`."""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_LOCAL_NAMES = ["localhost", "127.0.0.1", "::1"]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@contextmanager
def _locked(tls: Path) -> Iterator[None]:
    """Processes of one node starting together (server, gateway) generate the files once."""
    tls.mkdir(parents=True, exist_ok=True)
    with open(tls / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _new_ca(tls: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Portico local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls / "ca-key.pem", _private_pem(ca_key))
    (tls / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca, ca_key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: list[str],
    cert: Path,
    key: Path,
    now: dt.datetime,
) -> None:
    """A server certificate for `names` (DNS names, wildcards, IP addresses)."""
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key, _private_pem(srv_key))
    cert.write_bytes(
        srv.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )


def ensure_tls(data_dir: Path, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca_cert, server_cert, server_key) under data_dir/tls, creating them when missing."""
    tls = data_dir / "tls"
    ca_cert, cert, key = tls / "ca.pem", tls / "server.pem", tls / "server-key.pem"
    with _locked(tls):
        if ca_cert.exists() and cert.exists() and key.exists():
            return ca_cert, cert, key
        now = dt.datetime.now(dt.UTC)
        ca, ca_key = _new_ca(tls, now)
        common_name = hostnames[0] if hostnames else "localhost"
        _issue(ca, ca_key, common_name, [*_LOCAL_NAMES, *hostnames], cert, key, now)
        # certificates of the CA replaced here no longer verify
        (tls / "gateway.pem").unlink(missing_ok=True)
    return ca_cert, cert, key


def gateway_names(gateway_domain: str) -> list[str]:
    domain = gateway_domain.lower().strip(".")
    return [f"*.{domain}", domain]


def _covers(cert: Path, names: list[str]) -> bool:
    try:
        found = x509.load_pem_x509_certificate(cert.read_bytes())
        sans = found.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return set(names) <= set(sans.get_values_for_type(x509.DNSName))


def ensure_gateway_tls(data_dir: Path, gateway_domain: str, hostnames: list[str]) -> tuple[Path, Path, Path]:
    """Return (ca_cert, gateway_cert, gateway_key) under data_dir/tls: a certificate of the local CA
    for every `{service}.{gateway_domain}` (a wildcard) and the node's names; issued again when the
    gateway domain changed."""
    ca_cert, _server_cert, _server_key = ensure_tls(data_dir, hostnames)
    tls = data_dir / "tls"
    cert, key = tls / "gateway.pem", tls / "gateway-key.pem"
    wanted = gateway_names(gateway_domain)
    with _locked(tls):
        if key.exists() and _covers(cert, wanted):
            return ca_cert, cert, key
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key((tls / "ca-key.pem").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{tls / 'ca-key.pem'} is not the local CA's key")
        now = dt.datetime.now(dt.UTC)
        _issue(ca, ca_key, wanted[0], [*wanted, *_LOCAL_NAMES, *hostnames], cert, key, now)
    return ca_cert, cert, key
