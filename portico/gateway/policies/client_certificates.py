"""`validate-client-certificate`: the certificate the client presented in the TLS handshake
(`context.Request.Certificate`, portico/gateway/client_certificate.py) must pass the checks of the
element's attributes and match every claim of at least one `<identity>`; else 401 (or, with
`ignore-error="true"`, the request carries on). A hostname asks for a client certificate when its
hostname configuration has `negotiateClientCertificate` (portico/gateway/tls.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography import x509

from portico.gateway.client_certificate import PeerCertificate, dotnet_name, thumbprint
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.revocation import REVOCATION_LISTS, revocation_error

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
        self.is_async = self.revocation  # revocation lists may have to be fetched

    def run(self, ctx: Context) -> Any:
        cert = ctx.peer_certificate()
        why, chain = self._why(cert)
        if why is None and self.is_async:
            return self._revocation(chain)
        self._answer(why)
        return None

    async def _revocation(self, chain: list[x509.Certificate]) -> None:
        await REVOCATION_LISTS.fetch(chain)
        self._answer(revocation_error(chain, REVOCATION_LISTS.cached))

    def _answer(self, why: tuple[str, str] | None) -> None:
        if why is not None and not self.ignore_error:
            reason, detail = why
            raise Reject(401, f"Invalid client certificate: {detail}.", source=self.tag, reason=reason)

    def _why(self, cert: PeerCertificate | None) -> tuple[tuple[str, str] | None, list[x509.Certificate]]:
        """(reason, message) of the first check the certificate fails (None: it passes them), and
        its chain (leaf first) for the revocation check."""
        if cert is None:
            return ("ClientCertificateMissing", "the client presented no certificate"), []
        try:
            leaf = cert.cert
        except ValueError:
            return ("ClientCertificateInvalid", "the certificate cannot be read"), []
        error = cert.time_error(self.not_before, self.not_after)
        if error is not None:
            return ("ClientCertificateNotValid", error), []
        chain = [leaf]
        if self.trust:
            verified = cert.chain(self.not_before, self.not_after)
            if isinstance(verified, str):
                return ("ClientCertificateNotTrusted", verified), []
            chain = verified
        elif self.revocation:
            # no trusted chain: the list the certificate names, signed by its issuer if the issuer
            # is known (else by itself: which only a self-issued certificate's list can be)
            chain = [leaf, cert.trust.issuer_of(leaf) or leaf]
        if self.identities and not any(i.matches(cert) for i in self.identities):
            return ("ClientCertificateIdentityMismatch", "the certificate matches none of the identities"), []
        return None, chain


__all__ = ["ValidateClientCertificate"]
