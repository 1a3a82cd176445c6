"""The gateway's HTTPS certificates: a custom Proxy hostname presents its own certificate (SNI).

A service's `hostnameConfigurations[]` entry of type Proxy with an `encodedCertificate` (a base64
PFX, its `certificatePassword`) is the certificate the gateway presents to a client that asks for
that hostname (or a name under a `*.` wildcard hostname) in its TLS ClientHello. Any other name,
and a client without SNI, gets the node's own certificate (`PORTICO_TLS_CERT`, or the generated
one). Certificates come from the same in-memory configuration as routing (portico/gateway/config/),
so a new or rotated certificate is presented within the configuration's poll, and a standby's own
custom-domain certificates stay in place through a restore (they are target-owned, as in Azure:
portico/resources/service.py TARGET_OWNED_PROPERTIES), which is what lets a DNS change move traffic.

A certificate held in Key Vault (`keyVaultId`) is read by the management side when the hostname is
written, and again periodically (portico/resources/keyvault_hostnames.py), into the same
`encodedCertificate`: the gateway needs no access to the vault. An item whose certificate was never
read (configured before Portico read Key Vault, until the next refresh) gets the node's certificate,
with one warning per hostname.

A node of a self-hosted gateway presents, instead, the certificates of its gateway's hostname
configurations (`gateways/{gw}/hostnameConfigurations`: `hostname` and `certificateId`, a
`certificates` entity of the service), also read with the configuration.

A hostname whose configuration has `negotiateClientCertificate` asks the client for a certificate
in the handshake, accepting any (portico/gateway/peer_tls.py): the policies judge it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from portico.gateway.config.certificates import match_host
from portico.gateway.peer_tls import available, request_client_certificate
from portico.gateway.upstream import ClientCertificate, load_pem_chain

if TYPE_CHECKING:
    from portico.gateway.config import ConfigStore

log = logging.getLogger("portico.gateway")

_CACHE_MAX = 1024


class HostCertificates:
    """An `sni_callback` for the gateway's HTTPS listener, with one SSLContext per certificate."""

    def __init__(self, config: ConfigStore) -> None:
        self.config = config
        self._contexts: dict[str, ssl.SSLContext | None] = {}  # certificate digest → context
        self._warned: set[str] = set()

    def install(self, default: ssl.SSLContext) -> None:
        default.sni_callback = self.sni_callback
        available()  # checks (once) that client certificates can be asked for, before any handshake

    def sni_callback(self, conn: Any, server_name: str | None, default: ssl.SSLContext) -> None:
        if not server_name:
            return None
        try:
            context, negotiate = self.choose(server_name.lower())
        except Exception:  # a failure here would abort the handshake: keep the default instead
            log.exception("gateway: choosing the TLS certificate for %s failed", server_name[:253])
            return None
        if context is not None:
            conn.context = context
        if negotiate:
            request_client_certificate(conn)
        return None

    def choose(self, host: str) -> tuple[ssl.SSLContext | None, bool]:
        """The context presenting `host`'s certificate (None: the node's own), and whether the
        handshake asks the client for a certificate."""
        if self.config.compiling.selfhosted is not None:
            svc = self.config.lookup_host(host)
            gw = match_host(svc.gateway_hosts, host) if svc is not None else None
            if gw is None:
                return None, False
            cert = gw.certificate
            return (self._cached(cert) if cert is not None else None), gw.negotiate_client_certificate
        entry = self._entry(host)
        if entry is None:
            return None, False
        return self.context_for(entry), bool(entry.get("negotiateClientCertificate"))

    def _cached(self, cert: ClientCertificate) -> ssl.SSLContext:
        digest = hashlib.sha256(cert.pem).hexdigest()
        context = self._contexts.get(digest)
        if context is None:
            if len(self._contexts) >= _CACHE_MAX:
                self._contexts.clear()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            load_pem_chain(context, cert.pem)
            self._contexts[digest] = context
        return context

    def context_for(self, entry: dict[str, Any]) -> ssl.SSLContext | None:
        encoded = entry.get("encodedCertificate")
        if not isinstance(encoded, str) or not encoded:
            name = str(entry.get("hostName"))
            if entry.get("keyVaultId") and name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "gateway: the Key Vault certificate of %s has not been read yet; "
                    "it presents the node's certificate for that name until it is",
                    name,
                )
            return None
        password = entry.get("certificatePassword")
        digest = hashlib.sha256(f"{encoded}\x00{password or ''}".encode()).hexdigest()
        if digest in self._contexts:
            return self._contexts[digest]
        if len(self._contexts) >= _CACHE_MAX:
            self._contexts.clear()
        context = self._load(
            encoded, password if isinstance(password, str) else None, str(entry.get("hostName"))
        )
        self._contexts[digest] = context
        return context

    def _entry(self, host: str) -> dict[str, Any] | None:
        """The Proxy hostname configuration naming `host`: exactly, else through a wildcard."""
        svc = self.config.lookup_host(host)
        if svc is None:
            return None
        wildcard: dict[str, Any] | None = None
        for hc in (svc.row.properties or {}).get("hostnameConfigurations") or []:
            if not isinstance(hc, dict) or hc.get("type") != "Proxy":
                continue
            name = str(hc.get("hostName", "")).lower()
            if name == host:
                return hc
            if name.startswith("*.") and host.endswith(name[1:]) and wildcard is None:
                wildcard = hc
        return wildcard

    @staticmethod
    def _load(encoded: str, password: str | None, name: str) -> ssl.SSLContext | None:
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(
                base64.b64decode(encoded), password.encode() if password else None
            )
        except ValueError:
            key = cert = None
            chain = []
        if key is None or cert is None:
            # the control plane checked the certificate, but a PFX without its private key (or a
            # bare certificate) cannot serve TLS
            log.warning("gateway: the certificate of %s has no usable private key; not presented", name)
            return None
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + b"".join(
            c.public_bytes(Encoding.PEM) for c in (cert, *chain)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_pem_chain(context, pem)
        return context
