"""`limit-concurrency`: at most `max-count` requests run the enclosed policies at once for a key;
one more is refused at once with 429. Policies naming the same key share its count. The count is
kept per gateway worker process (in memory): with N workers a node admits up to N x max-count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, compile_policies, policy, run_list
from portico.gateway.policies.xmltree import Node

if TYPE_CHECKING:
    from portico.gateway.context import Context

MAX_KEY = 256  # longer keys are cut (as counter keys of rate-limit-by-key)

_active: dict[tuple[int, str], int] = {}  # (service id, key) -> requests inside now


def active(service_id: int, key: str) -> int:
    return _active.get((service_id, key), 0)


@policy
class LimitConcurrency(Policy):
    tag = "limit-concurrency"
    sections = frozenset({"inbound", "outbound", "backend", "on-error"})
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"key", "max-count"})
        key = node.value("key", required=True)
        max_count = node.integer("max-count", required=True, minimum=1)
        assert key is not None and max_count is not None
        self.key, self.max_count = key, max_count
        self.body = compile_policies(node.children, section, cc, allow_base=False)

    async def run(self, ctx: Context) -> Any:
        k = (ctx.service.id, self.key.text(ctx)[:MAX_KEY])
        n = _active.get(k, 0)
        if n >= self.max_count:
            raise Reject(
                429,
                "Too many concurrent requests. Try again later.",
                source=self.tag,
                reason="ConcurrencyLimitExceeded",
            )
        _active[k] = n + 1
        try:
            return await run_list(self.body, ctx)
        finally:
            left = _active[k] - 1
            if left:
                _active[k] = left
            else:
                del _active[k]


__all__ = ["LimitConcurrency", "active"]
