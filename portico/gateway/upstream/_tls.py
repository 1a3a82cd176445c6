"""How the gateway speaks TLS to one backend: whether it checks the backend's certificate chain and
name, and which client certificate (mutual TLS) it presents. `None` stands for the default (both
checks, no client certificate), so the common case costs nothing; each other profile gets its own
SSLContext and its own pooled connections (a connection made with a client certificate is never
reused for a request without it, nor one made without checks for a request that wants them)."""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate with its private key, as PEM (held in memory only; never in repr or logs)."""

    thumbprint: str  # SHA-1, upper-case hex: identifies the certificate (and its key)
    pem: bytes = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class BackendTls:
    verify_chain: bool = True
    verify_name: bool = True
    client: ClientCertificate | None = None
    trust: str | None = None  # PEM of CA certificates trusted beside the system's (the service's)

    @staticmethod
    def of(verify_chain: bool, verify_name: bool, client: ClientCertificate | None) -> BackendTls | None:
        if verify_chain and verify_name and client is None:
            return None
        return BackendTls(verify_chain, verify_name, client)

    def with_client(self, client: ClientCertificate) -> BackendTls:
        return BackendTls(self.verify_chain, self.verify_name, client, self.trust)

    def trusting(self, trust: str) -> BackendTls:
        return BackendTls(self.verify_chain, self.verify_name, self.client, trust)


def client_certificate(pfx_b64: str, password: str | None) -> ClientCertificate | None:
    """The certificate and key of a base64 PFX; None when it has no private key or cannot be read."""
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(
            base64.b64decode(pfx_b64), password.encode() if password else None
        )
    except ValueError:
        return None
    if key is None or cert is None:
        return None
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + b"".join(
        c.public_bytes(Encoding.PEM) for c in (cert, *chain)
    )
    return ClientCertificate(cert.fingerprint(hashes.SHA1()).hex().upper(), pem)


def client_context(tls: BackendTls | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if tls is None:
        return ctx
    if not tls.verify_chain:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not tls.verify_name:
        ctx.check_hostname = False
    if tls.trust:
        ctx.load_verify_locations(cadata=tls.trust)
    if tls.client is not None:
        load_pem_chain(ctx, tls.client.pem)
    return ctx


def load_pem_chain(context: ssl.SSLContext, pem: bytes) -> None:
    """`load_cert_chain` reads only files: give it one that never touches a disk when the kernel
    allows (memfd), else a private temporary file removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("portico-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
            return
        finally:
            os.close(fd)
    fd, path = tempfile.mkstemp(prefix="portico-cert-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
