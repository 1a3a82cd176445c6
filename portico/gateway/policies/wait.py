"""`wait`: run the immediate children (send-request, cache-lookup-value, choose) side by side and
finish when all of them have (for="all") or the first one has (for="any": the others are stopped)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from portico.gateway.expressions import ExpressionError, Value
from portico.gateway.outcome import STOP
from portico.gateway.policies.base import CompileContext, Policy, compile_policies, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

CHILDREN = frozenset({"send-request", "cache-lookup-value", "choose"})


async def _run_one(p: Any, ctx: Context) -> Any:
    return (await p.run(ctx)) if p.is_async else p.run(ctx)


@policy
class Wait(Policy):
    tag = "wait"
    sections = frozenset({"inbound", "outbound", "backend"})
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"for"})
        node.check_children(CHILDREN)
        mode = node.value("for", default="all")
        assert mode is not None
        if mode.constant and "{{" not in mode.literal and mode.literal.strip().lower() not in ("all", "any"):
            raise PolicyDocumentError(
                f"attribute 'for' has invalid value '{mode.literal[:40]}' (allowed: all, any).", node
            )
        self.mode: Value = mode
        self.children = compile_policies(node.children, section, cc, allow_base=False)

    async def run(self, ctx: Context) -> Any:
        mode = self.mode.text(ctx).strip().lower()
        if mode not in ("all", "any"):
            raise ExpressionError(f"wait for must be 'all' or 'any', got '{mode[:20]}'")
        if not self.children:
            return None
        tasks = [asyncio.ensure_future(_run_one(p, ctx)) for p in self.children]
        try:
            when = asyncio.FIRST_COMPLETED if mode == "any" else asyncio.FIRST_EXCEPTION
            done, _pending = await asyncio.wait(tasks, return_when=when)
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
        stopped = False
        for t in tasks:  # in document order: the first failure is the one reported
            if t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
                stopped = stopped or t.result() is STOP
        return STOP if stopped else None


__all__ = ["Wait"]
