"""Self-signed certificates for tests: a PFX as the management API takes it (base64), and the
certificate itself for a client to trust."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def self_signed_pfx(name: str, password: str | None) -> tuple[str, x509.Certificate]:
    """(base64 PFX with its private key, the certificate) for DNS name `name`, valid for a day
    either side of now; it is its own CA, so a client can trust exactly it."""
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
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption = BestAvailableEncryption(password.encode()) if password else NoEncryption()
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, encryption)
    return base64.b64encode(pfx).decode(), cert


class CertificateAuthority:
    """A test CA issuing server and client certificates (for mutual TLS between gateway and backend)."""

    def __init__(self, name: str = "Portico Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    def issue(
        self, name: str, *, client: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if not client:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())

    def server_pem(self, name: str) -> bytes:
        """Key and certificate chain as one PEM (what `SSLContext.load_cert_chain` reads)."""
        key, cert = self.issue(name)
        return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + cert.public_bytes(
            Encoding.PEM
        )

    def client_pfx(self, name: str, password: str) -> tuple[str, str]:
        """(base64 PFX, SHA-1 thumbprint) of a new client certificate."""
        key, cert = self.issue(name, client=True)
        pfx = pkcs12.serialize_key_and_certificates(
            b"client", key, cert, None, BestAvailableEncryption(password.encode())
        )
        return base64.b64encode(pfx).decode(), cert.fingerprint(hashes.SHA1()).hex().upper()
