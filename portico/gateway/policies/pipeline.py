"""Policy documents → composed pipelines (global → product → API → operation through <base/>)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.gateway.expressions import body_reads
from portico.gateway.policies import (  # noqa: F401 - registers the policies
    access,
    cache,
    certificates,
    client_certificates,
    conversions,
    credentials,
    emit_metric,
    graphql_validation,
    limit_concurrency,
    limits,
    logs,
    odata_validation,
    retry,
    send_request,
    transform,
    validate_content,
    validate_parameters,
    wait,
)
from portico.gateway.policies.base import BASE, SECTIONS, CompileContext, Policy, compile_policies, policy
from portico.gateway.policies.transform import ForwardRequest
from portico.gateway.policies.xmltree import Node, PolicyDocumentError, parse


@policy
class IncludeFragment(Policy):
    """`<include-fragment fragment-id="x"/>`: the gateway inlines fragments before compiling
    (`xmltree.inline_fragments`), so one left here names a fragment that does not exist (the
    control plane checks existence itself and only validates the element)."""

    tag = "include-fragment"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(frozenset({"fragment-id"}))
        fragment = node.attrs.get("fragment-id")
        if not fragment:
            raise PolicyDocumentError("attribute 'fragment-id' is required.", node)
        if not cc.validate_only:
            raise PolicyDocumentError(
                f"policy fragment '{fragment}' was not found (or includes itself).", node
            )


@dataclass
class PolicyDoc:
    """A compiled document: each present section's policies, `BASE` where <base/> stood."""

    sections: dict[str, list[Any]] = field(default_factory=dict)
    reads_request_body: bool = False  # an expression reads context.Request.Body


ONCE_PER_SECTION = (
    "cache-lookup",
    "cache-store",
    "redirect-content-urls",
    "jsonp",
    "validate-odata-request",
    "validate-parameters",
    "validate-headers",
)


def compile_document(xml: str, cc: CompileContext) -> PolicyDoc:
    with body_reads() as reads:
        doc = _compile_document(xml, cc)
    doc.reads_request_body = "request" in reads
    return doc


def _compile_document(xml: str, cc: CompileContext) -> PolicyDoc:
    root = parse(xml)
    if root.tag != "policies":
        raise PolicyDocumentError(f"the root element must be <policies>, found <{root.tag}>.", root)
    root.check_attrs(frozenset())
    doc = PolicyDoc()
    for child in root.children:
        if child.tag not in SECTIONS:
            raise PolicyDocumentError(
                f"unknown section <{child.tag}> (allowed: {', '.join(SECTIONS)}).", child
            )
        if child.tag in doc.sections:
            raise PolicyDocumentError(f"section <{child.tag}> appears more than once.", child)
        child.check_attrs(frozenset())
        compiled = compile_policies(child.children, child.tag, cc, allow_base=True)
        if sum(1 for p in compiled if p is BASE) > 1:
            raise PolicyDocumentError("<base /> may appear only once per section.", child)
        for tag in ONCE_PER_SECTION:
            again = [p for p in compiled if getattr(p, "tag", "") == tag][1:]
            if again:
                raise PolicyDocumentError(f"<{tag}> may appear only once per section.", again[0].node)
        doc.sections[child.tag] = compiled
    return doc


_DEFAULT_FORWARD = ForwardRequest(
    Node("forward-request", {}, 0, 0), "backend", CompileContext(scope="default")
)
PLATFORM_DEFAULT = PolicyDoc({"inbound": [], "backend": [_DEFAULT_FORWARD], "outbound": [], "on-error": []})


@dataclass
class Pipeline:
    inbound: list[Any]
    backend: list[Any]
    outbound: list[Any]
    on_error: list[Any]
    error: str | None = None  # a policy of this scope failed to compile: every request gets a 500
    fast: bool = False  # every policy runs synchronously, forward-request only last in backend
    # what runs after a cache-lookup hit: the outbound policies after cache-store (all without one)
    after_cache_store: list[Any] = field(default_factory=list)
    # an expression reads context.Request.Body: the request body is read whole (within the gateway's
    # body limit) before the inbound policies run; the fast path has it whole already
    buffers_request: bool = False

    def __post_init__(self) -> None:
        stores = [i for i, p in enumerate(self.outbound) if getattr(p, "tag", "") == "cache-store"]
        self.after_cache_store = self.outbound[stores[0] + 1 :] if stores else list(self.outbound)
        *before, last = self.backend or [None]
        self.fast = (
            not any(p.is_async for p in (*self.inbound, *self.outbound, *self.on_error, *before))
            and (last is None or last.forwards or not last.is_async)
            and not any(getattr(p, "forwards", False) for p in before)
        )

    def cors(self) -> list[Any]:
        return [p for p in self.inbound if getattr(p, "tag", "") == "cors"]


def compose(levels: list[PolicyDoc | None]) -> Pipeline:
    """`levels` from the outermost (global) to the innermost (operation); None = no document."""
    chain = [PLATFORM_DEFAULT, *[d for d in levels if d is not None]]

    def expand(i: int, section: str) -> list[Any]:
        doc = chain[i]
        items = doc.sections.get(section)
        if items is None:  # a missing section inherits the enclosing scope unchanged
            return expand(i - 1, section) if i > 0 else []
        out: list[Any] = []
        for p in items:
            if p is BASE:
                if i > 0:
                    out.extend(expand(i - 1, section))
            else:
                out.append(p)
        return out

    last = len(chain) - 1
    return Pipeline(
        expand(last, "inbound"),
        expand(last, "backend"),
        expand(last, "outbound"),
        expand(last, "on-error"),
        buffers_request=any(d.reads_request_body for d in chain),
    )
