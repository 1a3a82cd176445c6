"""The certificate a client presented in the TLS handshake, as policies see it: the
`context.Request.Certificate` of expressions (a .NET X509Certificate2: Thumbprint, Subject, Issuer,
NotBefore, NotAfter, SerialNumber, Verify(), VerifyNoRevocation()) and what
`validate-client-certificate` checks (portico/gateway/policies/client_certificates.py).

Trust, as in API Management: a chain to a CA the gateway trusts (the service's CA certificates,
`properties.certificates`, for the managed gateway; for a self-hosted one, its gateway's
`certificateAuthorities` marked `isTrusted`) or to one of the system's roots. The CA certificates
configured there also serve as intermediates (the client sends only its own certificate here).

Revocation: through the revocation lists the chain names (portico/gateway/revocation.py).
"""

from __future__ import annotations

import functools
import logging
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from portico.gateway.expressions import ExpressionError
from portico.gateway.revocation import REVOCATION_LISTS, revocation_error

log = logging.getLogger("portico.gateway")


@functools.lru_cache(maxsize=1)
def system_roots() -> tuple[x509.Certificate, ...]:
    """The system's trusted roots (OpenSSL's default CA file)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            try:
                with warnings.catch_warnings():  # a few old roots have non-positive serial numbers
                    warnings.simplefilter("ignore")
                    return tuple(x509.load_pem_x509_certificates(Path(candidate).read_bytes()))
            except ValueError:
                continue
    return ()


def _is_ca(value: Any) -> None:
    if not value.ca:
        raise ValueError("the issuer's basic constraints do not allow it to issue certificates")


# Chains as .NET builds them: signatures, validity and CA basic constraints; no Web PKI profile
# (client certificates of private CAs seldom carry the extensions browsers insist on).
_CA_POLICY = ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, Criticality.AGNOSTIC, lambda _policy, _cert, value: _is_ca(value)
)
_LEAF_POLICY = ExtensionPolicy.permit_all()


@dataclass(eq=False)
class ClientTrust:
    """What client certificates are checked against: the CA certificates a gateway trusts, and
    the service's certificates by id (`issuer-certificate-id`)."""

    cas: list[x509.Certificate] = field(default_factory=list)
    certificate_by_id: Callable[[str], x509.Certificate | None] = lambda _id: None

    @functools.cached_property
    def store(self) -> Store | None:
        roots = [*self.cas, *system_roots()]
        return Store(roots) if roots else None

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        for ca in (*self.cas, *system_roots()):
            if ca.subject == cert.issuer:
                try:
                    cert.verify_directly_issued_by(ca)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return ca
        return None


def dotnet_name(name: x509.Name) -> str:
    """A distinguished name as .NET writes it: most specific first, ", " between parts."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # API Management's thumbprint: SHA-1


class PeerCertificate:
    """A client's certificate (DER) as an X509Certificate2 for expressions and policies."""

    def __init__(self, der: bytes, trust: ClientTrust) -> None:
        self.der = der
        self.trust = trust

    @functools.cached_property
    def cert(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @functools.cached_property
    def thumbprint(self) -> str:
        return thumbprint(self.cert)

    @property
    def serial_number(self) -> str:
        """Upper-case hex of the serial's bytes, as .NET shows it (a leading 00 kept)."""
        n = self.cert.serial_number
        return n.to_bytes(n.bit_length() // 8 + 1, "big").hex().upper() if n else "00"

    @property
    def common_name(self) -> str:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else ""

    def dns_names(self) -> list[str]:
        try:
            san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return []
        return [str(n) for n in san.value.get_values_for_type(x509.DNSName)]

    # --- checks -------------------------------------------------------------------------------
    def time_error(self, not_before: bool = True, not_after: bool = True) -> str | None:
        now = datetime.now(UTC)
        if not_before and now < self.cert.not_valid_before_utc:
            return "the certificate is not valid yet"
        if not_after and now > self.cert.not_valid_after_utc:
            return "the certificate has expired"
        return None

    def chain(self, not_before: bool = True, not_after: bool = True) -> list[x509.Certificate] | str:
        """The chain to a trusted CA (the certificate first, the root last), or why none can be built."""
        store = self.trust.store
        if store is None:
            return "no trusted certificate authority is configured"
        cert = self.cert
        # validity is checked (or not) by the caller; the chain itself is judged at a time the
        # client's certificate is valid at when a validity check is off
        when = datetime.now(UTC)
        if not not_before and when < cert.not_valid_before_utc:
            when = cert.not_valid_before_utc + timedelta(seconds=1)
        if not not_after and when > cert.not_valid_after_utc:
            when = cert.not_valid_after_utc - timedelta(seconds=1)
        verifier = (
            PolicyBuilder()
            .store(store)
            .time(when)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
            .build_client_verifier()
        )
        intermediates = [c for c in self.trust.cas if c.subject != c.issuer]
        try:
            return list(verifier.verify(cert, intermediates).chain)
        except VerificationError as exc:
            log.debug("client certificate %s: no trusted chain: %s", self.thumbprint, exc)
            return "the certificate is not issued by a trusted certificate authority"

    def verify(self, revocation: bool) -> bool:
        """X509Certificate2.Verify(): validity, trust and, with `revocation`, the revocation lists
        held already (an expression cannot wait for a fetch)."""
        if self.time_error():
            return False
        chain = self.chain()
        if isinstance(chain, str):
            return False
        return not revocation or revocation_error(chain, REVOCATION_LISTS.cached) is None

    # --- expressions --------------------------------------------------------------------------
    def expr_member(self, name: str) -> Any:
        getter = _MEMBERS.get(name)
        if getter is None:
            raise ExpressionError(f"'X509Certificate2' does not contain a definition for '{name}'.")
        return getter(self)

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "Verify":
            return self.verify(revocation=True)
        if name == "VerifyNoRevocation":
            return self.verify(revocation=False)
        if name == "ToString":
            return self.expr_text()
        raise ExpressionError(f"'X509Certificate2' does not contain a method '{name}'.")

    def expr_text(self) -> str:
        return f"[Subject]\n  {dotnet_name(self.cert.subject)}\n\n[Thumbprint]\n  {self.thumbprint}"


_MEMBERS: dict[str, Callable[[PeerCertificate], Any]] = {
    "Thumbprint": lambda c: c.thumbprint,
    "Subject": lambda c: dotnet_name(c.cert.subject),
    "SubjectName": lambda c: dotnet_name(c.cert.subject),
    "Issuer": lambda c: dotnet_name(c.cert.issuer),
    "IssuerName": lambda c: dotnet_name(c.cert.issuer),
    "NotBefore": lambda c: c.cert.not_valid_before_utc,
    "NotAfter": lambda c: c.cert.not_valid_after_utc,
    "SerialNumber": lambda c: c.serial_number,
    "Version": lambda c: c.cert.version.value + 1,
    "RawData": lambda c: list(c.der),
}


__all__ = [
    "ClientTrust",
    "PeerCertificate",
    "dotnet_name",
    "system_roots",
    "thumbprint",
]
