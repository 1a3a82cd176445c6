"""cache-lookup-value, cache-store-value and cache-remove-value: values kept by key for a time.

API Management's built-in cache is volatile: a lookup may miss at any time. Here the cache is the
gateway worker process's memory (`ValueCache`), bounded in entries and in the size of each value,
least recently used first out; workers do not share it, so with N workers a value stored by one
request is found by the requests the same worker serves. Keys are per service: one service never
sees another's values. `caching-type` is accepted for compatibility; every type uses this cache.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from portico.gateway.expressions import Value, to_text
from portico.gateway.policies.base import CompileContext, Policy, Reject, policy
from portico.gateway.policies.xmltree import Node

if TYPE_CHECKING:
    from portico.gateway.context import Context

CACHING_TYPES = ("prefer-external", "external", "internal")
MAX_ENTRIES = 10_000
MAX_VALUE_CHARS = 256 * 1024  # a longer value is not kept (a cache may drop anything)


class ValueCache:
    """Key → (expiry on the monotonic clock, value), least recently used evicted first."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[int, str], tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[int, str], now: float) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None:
            return False, None
        if hit[0] <= now:
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, hit[1]

    def put(self, key: tuple[int, str], value: Any, seconds: float, now: float) -> None:
        if isinstance(value, str | bytes) and len(value) > MAX_VALUE_CHARS:
            self._items.pop(key, None)
            return
        self._items[key] = (now + seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def remove(self, key: tuple[int, str]) -> None:
        self._items.pop(key, None)


VALUES = ValueCache()  # this process's cache (each gateway worker is a process)


def _key(ctx: Context, key: Value) -> tuple[int, str]:
    return ctx.service.id, to_text(key.get(ctx))


def _common(node: Node, extra: set[str]) -> Value:
    node.check_attrs({"key", "caching-type", *extra})
    node.check_children(frozenset())
    node.choice("caching-type", CACHING_TYPES, "prefer-external")
    key = node.value("key", required=True)
    assert key is not None
    return key


@policy
class CacheLookupValue(Policy):
    tag = "cache-lookup-value"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        self.key = _common(node, {"variable-name", "default-value"})
        self.variable = node.require("variable-name")
        self.default = node.value("default-value")

    def run(self, ctx: Context) -> Any:
        found, value = VALUES.get(_key(ctx, self.key), time.monotonic())
        if found:
            ctx.variables[self.variable] = value
        elif self.default is not None:
            ctx.variables[self.variable] = self.default.get(ctx)
        return None


@policy
class CacheStoreValue(Policy):
    tag = "cache-store-value"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        self.key = _common(node, {"value", "duration"})
        value = node.value("value", required=True)
        duration = node.value("duration", required=True)
        assert value is not None and duration is not None
        if duration.constant:
            node.integer("duration", required=True, minimum=1)
        self.value: Value = value
        self.duration: Value = duration

    def _seconds(self, ctx: Context) -> float:
        raw = self.duration.get(ctx)
        try:
            seconds = float(raw.strip() if isinstance(raw, str) else raw)
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            raise Reject(
                500,
                "duration did not evaluate to a positive number of seconds.",
                source="cache-store-value",
                reason="ExpressionValueEvaluationFailure",
            )
        return seconds

    def run(self, ctx: Context) -> Any:
        VALUES.put(_key(ctx, self.key), self.value.get(ctx), self._seconds(ctx), time.monotonic())
        return None


@policy
class CacheRemoveValue(Policy):
    tag = "cache-remove-value"

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        self.key = _common(node, set())

    def run(self, ctx: Context) -> Any:
        VALUES.remove(_key(ctx, self.key))
        return None


__all__ = ["VALUES", "ValueCache"]
