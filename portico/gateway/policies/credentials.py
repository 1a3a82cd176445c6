"""`get-authorization-context`: the token of a credential manager connection (an authorization of
an authorization provider) into a context variable, as an `Authorization` object:
`((Authorization)context.Variables["auth"]).AccessToken` and `.Claims` (the provider's token
response). Tokens come from the worker's `CredentialSource` (portico/identity/credentials/runtime.py):
cached, refreshed before they expire, without a database call per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portico.gateway.context import Variables
from portico.gateway.expressions import ExpressionError
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import NAMED_VALUE, Node, PolicyDocumentError
from portico.identity.credentials.oauth import CredentialFailure

if TYPE_CHECKING:
    from portico.gateway.context import Context

IDENTITY_TYPES = ("managed", "jwt")


class Authorization:
    """What the context variable holds (API Management's `Authorization` class)."""

    expr_type = "Authorization"
    __slots__ = ("access_token", "claims")

    def __init__(self, access_token: str, claims: dict[str, Any]) -> None:
        self.access_token = access_token
        self.claims = Variables(claims)

    def expr_member(self, name: str) -> Any:
        if name == "AccessToken":
            return self.access_token
        if name == "Claims":
            return self.claims
        raise ExpressionError(f"'Authorization' does not contain a definition for '{name}'.")

    def __repr__(self) -> str:  # never the token
        return "Authorization(AccessToken=***)"


@policy
class GetAuthorizationContext(Policy):
    tag = "get-authorization-context"
    sections = frozenset({"inbound"})
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "provider-id",
                "authorization-id",
                "context-variable-name",
                "identity-type",
                "identity",
                "ignore-error",
            }
        )
        node.check_children(frozenset())
        self.provider = node.value("provider-id", required=True)
        self.authorization = node.value("authorization-id", required=True)
        self.variable = node.value("context-variable-name", required=True)
        self.identity_type = node.value("identity-type", default="managed")
        self.identity = node.value("identity")
        self.ignore_error = node.value("ignore-error", default="false")
        assert self.identity_type is not None and self.ignore_error is not None
        if self.identity_type.constant and not NAMED_VALUE.search(self.identity_type.literal):
            node.choice("identity-type", IDENTITY_TYPES, "managed")
            if self.identity_type.literal.strip().lower() == "jwt" and self.identity is None:
                raise PolicyDocumentError(
                    "attribute 'identity' is required when identity-type is 'jwt'.", node
                )
        if self.ignore_error.constant:
            node.boolean("ignore-error", False)
        self.source = cc.credentials
        if self.source is None and not cc.validate_only:
            raise PolicyDocumentError("credential connections are not available on this gateway.", node)

    async def run(self, ctx: Context) -> Any:
        assert self.provider and self.authorization and self.variable
        assert self.identity_type is not None and self.ignore_error is not None
        name = self.variable.text(ctx)
        ignore = self.ignore_error.text(ctx).strip().lower() == "true"
        svc = ctx.service
        try:
            got = await self.source.context(
                (svc.id, svc.store_id, svc.version),
                self.provider.text(ctx),
                self.authorization.text(ctx),
                self.identity_type.text(ctx).strip().lower(),
                self.identity.text(ctx) if self.identity is not None else None,
            )
        except CredentialFailure as failure:
            if ignore:
                ctx.variables[name] = None
                return None
            raise Reject(
                500, failure.message, source="get-authorization-context", reason=failure.code
            ) from None
        ctx.variables[name] = Authorization(got["AccessToken"], got["Claims"])
        return None
