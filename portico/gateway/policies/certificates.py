"""Client certificates for backends: the `authentication-certificate` policy, and the TLS profile a
backend entity brings with `set-backend-service backend-id=` (its checks and its certificate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.upstream import BackendTls, ClientCertificate
from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context


@policy
class AuthenticationCertificate(Policy):
    """The service certificate (by `thumbprint` or `certificate-id`) the gateway presents to the
    backend in the TLS handshake (mutual TLS). The backend's certificate checks are kept."""

    tag = "authentication-certificate"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"thumbprint", "certificate-id", "body", "password"})
        node.check_children(frozenset())
        if "body" in node.attrs or "password" in node.attrs:
            raise PolicyDocumentError(
                "attributes 'body' and 'password' (a certificate given inline) are not supported by "
                "this gateway: upload the certificate and name it with 'certificate-id' or 'thumbprint'.",
                node,
            )
        self.thumbprint = node.value("thumbprint")
        self.certificate_id = node.value("certificate-id")
        if (self.thumbprint is None) == (self.certificate_id is None):
            raise PolicyDocumentError("exactly one of 'thumbprint' and 'certificate-id' is required.", node)

    def run(self, ctx: Context) -> Any:
        ctx.backend_tls = (ctx.backend_tls or BackendTls()).with_client(self.certificate(ctx))
        return None

    def certificate(self, ctx: Context) -> ClientCertificate:
        """The service certificate named (a 500 when the service has none by that name)."""
        certs = ctx.service.certificates
        if self.certificate_id is not None:
            name = self.certificate_id.text(ctx)
            cert = certs.find(cert_id=name)
            what = f"Certificate '{name[:80]}'"
        else:
            assert self.thumbprint is not None
            name = self.thumbprint.text(ctx)
            cert = certs.find(thumbprint=name)
            what = f"Certificate with thumbprint '{name[:80]}'"
        if cert is None:
            raise Reject(500, f"{what} was not found.", source=self.tag, reason="CertificateNotFound")
        return cert


def apply_backend_tls(ctx: Context, backend_id: str | None) -> None:
    """A new backend brings its own checks (a URL: the default ones) and its certificate; a client
    certificate set by `authentication-certificate` stays when the backend names none."""
    tls = ctx.service.backend_tls.get(fold_name(backend_id)) if backend_id is not None else None
    if isinstance(tls, str):
        raise Reject(
            500, f"Backend '{backend_id}': {tls}.", source="set-backend-service", reason="CertificateNotFound"
        )
    kept = ctx.backend_tls.client if ctx.backend_tls is not None else None
    if kept is not None and (tls is None or tls.client is None):
        tls = (tls or BackendTls()).with_client(kept)
    ctx.backend_tls = tls


__all__ = ["AuthenticationCertificate", "apply_backend_tls"]
