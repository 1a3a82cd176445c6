"""A service's certificates (the `certificates` kind: a PFX and its password) as the client
certificates the gateway presents to backends, found by id or by thumbprint, and the TLS profile of
each backend entity (its `tls` checks and `credentials.certificateIds` / `credentials.certificate`)."""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from portico.gateway.upstream import BackendTls, ClientCertificate, client_certificate
from portico.names import fold_name

log = logging.getLogger("portico.gateway")


@functools.lru_cache(maxsize=512)
def _parsed(pfx_b64: str, password: str | None) -> ClientCertificate | None:
    # a PFX is costly to open; routing tables are rebuilt on every configuration change
    return client_certificate(pfx_b64, password)


@dataclass(slots=True)
class Certificates:
    by_id: dict[str, ClientCertificate] = field(default_factory=dict)  # certificate id, lower case
    by_thumbprint: dict[str, ClientCertificate] = field(default_factory=dict)  # upper case

    def find(self, *, cert_id: str | None = None, thumbprint: str | None = None) -> ClientCertificate | None:
        if cert_id is not None:
            return self.by_id.get(fold_name(cert_id.rsplit("/", 1)[-1]))
        if thumbprint is not None:
            return self.by_thumbprint.get(thumbprint.strip().upper())
        return None


def certificate_table(rows: dict[tuple[str, str], Any], service: str) -> Certificates:
    table = Certificates()
    for (_parent, name), data in rows.items():
        if not isinstance(data, dict) or not data.get("data"):
            continue
        cert = _parsed(str(data["data"]), data.get("password"))
        if cert is None and ca_certificate(str(data["data"]), data.get("password")) is not None:
            continue  # a certificate without its key (a CA's, for a gateway's certificate authorities)
        if cert is None:
            log.warning(
                "service %s: certificate '%s' has no usable private key; not presented", service, name
            )
            continue
        table.by_id[fold_name(name)] = cert
        table.by_thumbprint[cert.thumbprint] = cert
    return table


def backend_tls(backend: dict[str, Any], certs: Certificates) -> BackendTls | str | None:
    """The backend's TLS profile, or why it cannot be honoured (a certificate it names is gone)."""
    tls = backend.get("tls") or {}
    creds = backend.get("credentials") or {}
    client: ClientCertificate | None = None
    for ref in creds.get("certificateIds") or []:
        client = certs.find(cert_id=str(ref))
        if client is None:
            return f"certificate '{str(ref).rsplit('/', 1)[-1]}' of the backend was not found"
        break  # a TLS handshake presents one certificate: the first
    if client is None:
        for thumb in creds.get("certificate") or []:
            client = certs.find(thumbprint=str(thumb))
            if client is None:
                return f"certificate with thumbprint '{thumb}' of the backend was not found"
            break
    return BackendTls.of(
        bool(tls.get("validateCertificateChain", True)),
        bool(tls.get("validateCertificateName", True)),
        client,
    )


@functools.lru_cache(maxsize=256)
def _ca_pem(encoded: str, password: str | None) -> str | None:
    cert = ca_certificate(encoded, password)
    return cert.public_bytes(Encoding.PEM).decode() if cert is not None else None


@functools.lru_cache(maxsize=256)
def ca_certificate(encoded: str, password: str | None) -> x509.Certificate | None:
    """The certificate of a base64 PFX, DER or PEM (no private key needed)."""
    try:
        raw = base64.b64decode(encoded)
    except (binascii.Error, ValueError):
        return None
    try:
        _key, cert, extra = pkcs12.load_key_and_certificates(raw, password.encode() if password else None)
        cert = cert or (extra[0] if extra else None)  # a PFX of a certificate alone
    except ValueError:
        cert = None
    for loader in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
        if cert is not None:
            break
        try:
            cert = loader(raw)
        except ValueError:
            continue
    return cert


def service_cas(props: dict[str, Any]) -> str | None:
    """The CA certificates of the service's `certificates` property (stores Root and
    CertificateAuthority), which the gateway trusts for backends beside the system's; None: none."""
    pems = []
    for c in props.get("certificates") or []:
        if isinstance(c, dict) and isinstance(c.get("encodedCertificate"), str):
            pem = _ca_pem(c["encodedCertificate"], c.get("certificatePassword"))
            if pem is not None:
                pems.append(pem)
    return "".join(pems) or None


def service_ca_certificates(props: dict[str, Any]) -> list[x509.Certificate]:
    """The service's CA certificates (`properties.certificates`), trusted for clients of the
    managed gateway."""
    out = []
    for c in props.get("certificates") or []:
        if isinstance(c, dict) and isinstance(c.get("encodedCertificate"), str):
            cert = ca_certificate(c["encodedCertificate"], c.get("certificatePassword"))
            if cert is not None:
                out.append(cert)
    return out


def certificate_entity(raw: dict[str, dict[tuple[str, str], Any]], cert_id: str) -> x509.Certificate | None:
    """The certificate of the service's `certificates` entity `cert_id` (an id, path or ARM id)."""
    wanted = fold_name(cert_id.rstrip("/").rsplit("/", 1)[-1])
    for (_p, name), data in raw["certificate"].items():
        if fold_name(name) == wanted and isinstance(data, dict) and data.get("data"):
            return ca_certificate(str(data["data"]), data.get("password"))
    return None


def gateway_ca_certificates(
    raw: dict[str, dict[tuple[str, str], Any]], gateway: str
) -> list[x509.Certificate]:
    """The certificates a self-hosted gateway trusts for its clients: its `certificateAuthorities`
    marked `isTrusted`."""
    prefix = f"gateways/{gateway}"
    out = []
    for (parent, name), data in raw["gatewayCertificateAuthority"].items():
        if fold_name(parent) == prefix and isinstance(data, dict) and data.get("isTrusted"):
            cert = certificate_entity(raw, name)
            if cert is not None:
                out.append(cert)
    return out


@dataclass(frozen=True, slots=True)
class GatewayHostname:
    """A self-hosted gateway's hostname configuration, as its node's TLS listener uses it."""

    host: str  # lower case; may start with "*."
    certificate: ClientCertificate | None  # key and chain presented for it; None: the node's own
    negotiate_client_certificate: bool


def gateway_hostnames(
    raw: dict[str, dict[tuple[str, str], Any]], gateway: str, certs: Certificates, service: str
) -> dict[str, GatewayHostname]:
    """Hostname (lower case) → its configuration, for the self-hosted gateway `gateway`."""
    prefix = f"gateways/{gateway}"
    out: dict[str, GatewayHostname] = {}
    for (parent, name), data in raw["gatewayHostnameConfiguration"].items():
        if fold_name(parent) != prefix or not isinstance(data, dict):
            continue
        host = str(data.get("hostname") or "").strip().lower()
        if not host:
            continue
        cert = None
        ref = data.get("certificateId")
        if ref:
            cert = certs.find(cert_id=str(ref))
            if cert is None:
                log.warning(
                    "service %s: certificate '%s' of hostname configuration '%s' is not usable "
                    "(missing, or no private key); %s gets the node's certificate",
                    service,
                    str(ref).rsplit("/", 1)[-1],
                    name,
                    host,
                )
        if data.get("tls10Enabled") or data.get("tls11Enabled"):
            log.warning(
                "service %s: hostname configuration '%s' enables TLS 1.0/1.1; this gateway offers "
                "TLS 1.2 and later only",
                service,
                name,
            )
        out[host] = GatewayHostname(host, cert, bool(data.get("negotiateClientCertificate")))
    return out


def match_host(table: dict[str, Any], host: str) -> Any:
    """The entry for `host`: exactly, else through the longest `*.` wildcard."""
    found = table.get(host)
    if found is not None:
        return found
    best: tuple[int, Any] | None = None
    for name, entry in table.items():
        if name.startswith("*.") and host.endswith(name[1:]) and (best is None or len(name) > best[0]):
            best = (len(name), entry)
    return best[1] if best is not None else None
