"""What every policy shares: the registry of elements, compile-time checks, and running a list of
policies (the run-time signals are in portico/gateway/outcome.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from portico.gateway.expressions import body_reads
from portico.gateway.outcome import STOP
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

SECTIONS = ("inbound", "backend", "outbound", "on-error")
ALL = frozenset(SECTIONS)


class CompileContext:
    """What compiling a document needs besides the XML: where we are, and shared services."""

    def __init__(
        self,
        *,
        validate_only: bool = False,
        scope: str = "",
        limits: Any = None,
        quotas: Any = None,
        jwks: Any = None,
        backends: dict[str, Any] | None = None,
        operation: Any = None,
        credentials: Any = None,
    ) -> None:
        self.validate_only = validate_only
        self.scope = scope  # "global" | "product:p" | "api:a" | "operation:a/o" (counter identity)
        self.limits = limits
        self.quotas = quotas  # the process's QuotaLedger (portico/gateway/quotas.py); None: a private one
        self.jwks = jwks
        self.backends = backends or {}
        self.operation = operation
        self.credentials = credentials  # CredentialSource of the worker (get-authorization-context)
        self.counter = 0

    def next_id(self, tag: str) -> str:
        self.counter += 1
        return f"{self.scope}/{tag}#{self.counter}"


class Policy:
    tag: ClassVar[str]
    sections: ClassVar[frozenset[str]] = ALL
    is_async: bool = False  # run() returns a coroutine (per instance: <choose> is when a branch is)
    forwards: ClassVar[bool] = False  # forward-request: the one the fast path calls back from

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        self.node = node
        self.section = section

    def run(self, ctx: Context) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


REGISTRY: dict[str, type[Policy]] = {}


def policy(cls: type[Policy]) -> type[Policy]:
    REGISTRY[cls.tag] = cls
    return cls


def compile_policies(nodes: list[Node], section: str, cc: CompileContext, *, allow_base: bool) -> list[Any]:
    """Compile a section's elements; `BASE` stands for `<base/>` (expanded by composition)."""
    out: list[Any] = []
    for node in nodes:
        if node.tag == "base":
            if not allow_base:
                raise PolicyDocumentError("<base /> is only allowed directly inside a section.", node)
            node.check_attrs(frozenset())
            if node.children:
                raise PolicyDocumentError("<base /> takes no child elements.", node)
            out.append(BASE)
            continue
        cls = REGISTRY.get(node.tag)
        if cls is None:
            raise PolicyDocumentError(
                f"unknown or unsupported policy '{node.tag}'. Supported: {', '.join(sorted(REGISTRY))}.", node
            )
        if section not in cls.sections:
            raise PolicyDocumentError(
                f"policy is not allowed in section '{section}' (allowed in: {', '.join(s for s in SECTIONS if s in cls.sections)}).",
                node,
            )
        with body_reads() as reads:
            compiled = cls(node, section, cc)
        # the request body is buffered for the whole pipeline (Pipeline.buffers_request); the
        # response's is read whole just before the policy that reads it
        out.append(ReadsResponseBody(compiled) if "response" in reads else compiled)
    return out


class ReadsResponseBody:
    """A policy whose expressions read `context.Response.Body`: expressions run synchronously, so the
    response body is read whole (within the gateway's body limit) before the policy runs. Everything
    else is the policy's own."""

    # portico/gateway/policies/bodies.py's reader, installed there (it depends on modules that
    # depend on this one); the conversion policies, which every pipeline registers, import it
    reader: ClassVar[Callable[[Context, str, str], Awaitable[Any]] | None] = None
    is_async = True

    def __init__(self, inner: Policy) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<{self.inner.tag} reading the response body>"

    async def run(self, ctx: Context) -> Any:
        r = ctx.response
        if r is not None and r.upstream is not None:
            assert ReadsResponseBody.reader is not None
            await ReadsResponseBody.reader(ctx, "outbound", self.inner.tag)
        result = self.inner.run(ctx)
        return (await result) if self.inner.is_async else result


class _Base:
    def __repr__(self) -> str:
        return "<base/>"


BASE = _Base()

Runner = Callable[["Context"], Any]


def run_now(policies: list[Any], ctx: Context) -> Any:
    """Run synchronous policies in order; STOP when one answered the request itself."""
    for p in policies:
        if p.run(ctx) is STOP:
            return STOP
    return None


async def run_list(policies: list[Any], ctx: Context) -> Any:
    """Run policies in order, awaiting the asynchronous ones; STOP when one answered the request."""
    for p in policies:
        r = (await p.run(ctx)) if p.is_async else p.run(ctx)
        if r is STOP:
            return STOP
    return None
