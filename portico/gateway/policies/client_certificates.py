"""`validate-client-certificate`: the certificate the client presented in the TLS handshake
(`context.Request.Certificate`, portico/gateway/client_certificate.py) must pass the checks of the
element's attributes and match every claim of at least one `<identity>`; else 401 (or, with
`ignore-error="true"`, the request carries on). A hostname asks for a client certificate when its
hostname configuration has `negotiateClientCertificate` (portico/gateway/tls.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portico.gateway.client_certificate import REVOCATION_UNKNOWN, PeerCertificate, dotnet_name, thumbprint
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

_IDENTITY_ATTRS = (
    "thumbprint",
    "serial-number",
    "common-name",
    "subject",
    "dns-name",
    "issuer-subject",
    "issuer-thumbprint",
    "issuer-certificate-id",
)
_MAX_IDENTITIES = 10


def _fold_name(text: str) -> str:
    """A distinguished name compared loosely: case, and spaces around separators, ignored."""
    return ",".join(part.strip() for part in text.lower().split(","))


def _fold_serial(text: str) -> str:
    return text.strip().upper().replace(":", "").replace(" ", "").lstrip("0")


class _Identity:
    def __init__(self, node: Node) -> None:
        node.check_attrs(set(_IDENTITY_ATTRS))
        node.check_children(frozenset())
        self.claims = {a: node.attrs[a] for a in _IDENTITY_ATTRS if node.attrs.get(a) is not None}
        if not self.claims:
            raise PolicyDocumentError(
                f"an identity needs at least one of {', '.join(_IDENTITY_ATTRS)}.", node
            )

    def matches(self, cert: PeerCertificate) -> bool:
        return all(self._claim(cert, name, value.strip()) for name, value in self.claims.items())

    @staticmethod
    def _claim(cert: PeerCertificate, name: str, value: str) -> bool:
        x = cert.cert
        if name == "thumbprint":
            return cert.thumbprint == value.upper()
        if name == "serial-number":
            return _fold_serial(cert.serial_number) == _fold_serial(value)
        if name == "common-name":
            return cert.common_name.lower() == value.lower()
        if name == "subject":
            return _fold_name(value) in (
                _fold_name(dotnet_name(x.subject)),
                _fold_name(x.subject.rfc4514_string()),
            )
        if name == "dns-name":
            return value.lower() in (n.lower() for n in cert.dns_names())
        if name == "issuer-subject":
            return _fold_name(value) in (
                _fold_name(dotnet_name(x.issuer)),
                _fold_name(x.issuer.rfc4514_string()),
            )
        issuer = cert.trust.issuer_of(x)
        if issuer is None:
            return False
        if name == "issuer-thumbprint":
            return thumbprint(issuer) == value.upper()
        named = cert.trust.certificate_by_id(value)  # issuer-certificate-id
        return named is not None and thumbprint(named) == thumbprint(issuer)


@policy
class ValidateClientCertificate(Policy):
    tag = "validate-client-certificate"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "validate-revocation",
                "validate-trust",
                "validate-not-before",
                "validate-not-after",
                "ignore-error",
            }
        )
        node.check_children({"identities"})
        self.revocation = node.boolean("validate-revocation", True)
        self.trust = node.boolean("validate-trust", True)
        self.not_before = node.boolean("validate-not-before", True)
        self.not_after = node.boolean("validate-not-after", True)
        self.ignore_error = node.boolean("ignore-error", False)
        self.identities: list[_Identity] = []
        for child in node.children:
            child.check_attrs(frozenset())
            child.check_children({"identity"})
            self.identities.extend(_Identity(i) for i in child.children)
        if len(self.identities) > _MAX_IDENTITIES:
            raise PolicyDocumentError(f"at most {_MAX_IDENTITIES} identities are allowed.", node)

    def run(self, ctx: Context) -> Any:
        cert = ctx.peer_certificate()
        why = self._why(cert)
        if why is not None and not self.ignore_error:
            reason, detail = why
            raise Reject(401, f"Invalid client certificate: {detail}.", source=self.tag, reason=reason)
        return None

    def _why(self, cert: PeerCertificate | None) -> tuple[str, str] | None:
        """(reason, message) of the first check the certificate fails; None: it passes."""
        if cert is None:
            return "ClientCertificateMissing", "the client presented no certificate"
        try:
            cert.cert  # noqa: B018 - parses it
        except ValueError:
            return "ClientCertificateInvalid", "the certificate cannot be read"
        error = cert.time_error(self.not_before, self.not_after)
        if error is not None:
            return "ClientCertificateNotValid", error
        if self.trust:
            error = cert.trust_error(self.not_before, self.not_after)
            if error is not None:
                return "ClientCertificateNotTrusted", error
        if self.revocation:
            return "ClientCertificateRevocationUnknown", REVOCATION_UNKNOWN
        if self.identities and not any(i.matches(cert) for i in self.identities):
            return "ClientCertificateIdentityMismatch", "the certificate matches none of the identities"
        return None


__all__ = ["ValidateClientCertificate"]
