"""Caching policies: cache-lookup and cache-store (whole responses), cache-lookup-value,
cache-store-value and cache-remove-value (values by key).

API Management's built-in cache is volatile: a lookup may miss at any time. Here the caches are the
gateway worker process's memory (`TtlCache`), bounded in entries and bytes, least recently used
out first; workers do not share them, so with N workers a response or value stored by one request
is found by the requests the same worker serves. Keys are per service: one service never sees
another's entries. `caching-type` is accepted for compatibility; every type uses these caches.

Responses: `cache-lookup` (inbound) keys a GET request by API, operation, path, the values of its
`vary-by-header` headers and `vary-by-query-parameter` parameters (other query parameters are not
part of the key, as in API Management), and the developer (for `vary-by-developer`, and for
`vary-by-developer-groups`: a finer key than the groups, so never a wrong answer, only fewer hits).
A request with an `Authorization` header is not cached unless `allow-private-response-caching`.
On a hit the response is answered from the cache and processing goes on with the outbound
policies after `cache-store`, as API Management does. `cache-store` (outbound) keeps the response
as it is at that step: status 200 (or any status with `cache-response`), no `Set-Cookie`, a body
of at most `MAX_RESPONSE_BYTES` (a streamed body is kept while it is sent). With
`downstream-caching-type` private or public the answer gets `Cache-Control: private|public,
max-age=N[, must-revalidate]`; with none, the response's own headers are left as they are.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from portico.gateway.context import HeaderMap, Response
from portico.gateway.expressions import Value, to_text, truthy
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

CACHING_TYPES = ("prefer-external", "external", "internal")
MAX_VALUE_CHARS = 256 * 1024  # a longer value is not kept (a cache may drop anything)
MAX_RESPONSE_BYTES = 1 << 20  # a larger response body is not kept
RESPONSE_CACHE_BYTES = 64 << 20  # per worker process


class TtlCache:
    """Key → (expiry on the monotonic clock, value, size), least recently used evicted first when
    there are more than `max_entries` entries or more than `max_bytes` in all."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Any, tuple[float, Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any, now: float) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None:
            return False, None
        if hit[0] <= now:
            self.remove(key)
            return False, None
        self._items.move_to_end(key)
        return True, hit[1]

    def expires(self, key: Any) -> float:
        hit = self._items.get(key)
        return hit[0] if hit is not None else 0.0

    def put(self, key: Any, value: Any, seconds: float, now: float, size: int = 0) -> None:
        self.remove(key)
        if size > self.max_bytes:
            return
        self._items[key] = (now + seconds, value, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            _key, (_exp, _value, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped

    def remove(self, key: Any) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[2]


class ValueCache(TtlCache):
    """cache-store-value's values: a string longer than MAX_VALUE_CHARS is not kept."""

    def put(self, key: Any, value: Any, seconds: float, now: float, size: int = 0) -> None:
        if isinstance(value, str | bytes) and len(value) > MAX_VALUE_CHARS:
            self.remove(key)
            return
        super().put(key, value, seconds, now, len(value) if isinstance(value, str | bytes) else 64)


VALUES = ValueCache()  # this process's caches (each gateway worker is a process)
RESPONSES = TtlCache(max_bytes=RESPONSE_CACHE_BYTES)


def _key(ctx: Context, key: Value) -> tuple[int, str]:  # values are per service
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

    def run(self, ctx: Context) -> Any:
        VALUES.put(
            _key(ctx, self.key), self.value.get(ctx), _seconds(self.duration, ctx, self.tag), time.monotonic()
        )
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


# --- whole responses ---------------------------------------------------------------------------------
_NOT_KEPT = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive"))


class CacheState:
    """A cacheable request's cache key and what `cache-store` decided (Context.cache)."""

    __slots__ = ("downstream", "hit", "key", "must_revalidate", "pending")

    def __init__(self, key: tuple[Any, ...], downstream: str, must_revalidate: bool) -> None:
        self.key = key
        self.downstream = downstream
        self.must_revalidate = must_revalidate
        self.hit = False
        # (status, reason, headers, seconds, upstream) for a body still to come from the backend
        self.pending: tuple[int, str, list[tuple[bytes, bytes]], float, Any] | None = None

    def cache_control(self, response: Response, seconds: float) -> None:
        if self.downstream in ("private", "public"):
            value = f"{self.downstream}, max-age={max(0, int(seconds))}"
            response.header_map().set(
                "Cache-Control", [value + (", must-revalidate" if self.must_revalidate else "")]
            )


def _flag(node: Node, name: str, default: bool) -> Value | bool:
    raw = node.get(name)
    if raw is not None and raw.strip().startswith("@"):
        v = node.value(name)
        assert v is not None
        return v
    return node.boolean(name, default)


def _truth(flag: Value | bool, ctx: Context) -> bool:
    return flag if isinstance(flag, bool) else truthy(flag.get(ctx))


@policy
class CacheLookup(Policy):
    tag = "cache-lookup"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "vary-by-developer",
                "vary-by-developer-groups",
                "caching-type",
                "downstream-caching-type",
                "must-revalidate",
                "allow-private-response-caching",
            }
        )
        node.check_children({"vary-by-header", "vary-by-query-parameter"})
        for name in ("vary-by-developer", "vary-by-developer-groups"):
            node.require(name)
        node.choice("caching-type", CACHING_TYPES, "prefer-external")
        self.by_developer = _flag(node, "vary-by-developer", False)
        self.by_groups = _flag(node, "vary-by-developer-groups", False)
        self.must_revalidate = _flag(node, "must-revalidate", True)
        self.private = _flag(node, "allow-private-response-caching", False)
        raw = node.get("downstream-caching-type") or "none"
        if raw.strip().startswith("@"):
            v = node.value("downstream-caching-type")
            assert v is not None
            self.downstream: Value | str = v
        else:
            choice = node.choice("downstream-caching-type", ("none", "private", "public"), "none")
            assert choice is not None
            self.downstream = choice
        self.headers: list[str] = []
        self.params: list[str] = []
        for child in node.children:
            child.check_attrs(frozenset())
            names = [n.strip() for n in child.text.split(";") if n.strip()]
            if not names:
                raise PolicyDocumentError(f"<{child.tag}> needs a name.", child)
            if child.tag == "vary-by-header":
                for n in names:
                    child.check_header_name(n, "the element text")
            (self.headers if child.tag == "vary-by-header" else self.params).extend(
                n.lower() if child.tag == "vary-by-header" else n for n in names
            )

    def run(self, ctx: Context) -> Any:
        if ctx.method != "GET":
            return None  # API Management looks up (and stores) GET requests only
        if "authorization" in ctx.headers and not _truth(self.private, ctx):
            return None
        query = ctx.query_map() if self.params else None
        developer = ""
        if _truth(self.by_developer, ctx) or _truth(self.by_groups, ctx):
            owner = ctx.subscription.owner if ctx.subscription is not None else None
            developer = owner or "\x00anonymous"
        assert ctx.api is not None
        key = (
            ctx.service.id,
            ctx.api.name,
            ctx.operation.name if ctx.operation is not None else "",
            ctx.path,
            tuple(tuple(ctx.headers.get_all(h)) for h in self.headers),
            tuple(tuple(query.get_all(q)) for q in self.params) if query is not None else (),
            developer,
        )
        downstream = (
            self.downstream if isinstance(self.downstream, str) else to_text(self.downstream.get(ctx))
        )
        state = CacheState(key, downstream.strip().lower(), _truth(self.must_revalidate, ctx))
        ctx.cache = state
        now = time.monotonic()
        found, entry = RESPONSES.get(key, now)
        if not found:
            return None
        status, reason, headers, body = entry
        if ctx.response is not None:
            ctx.response.drop_upstream()
        ctx.response = Response(status, HeaderMap.from_raw(headers), body, reason)
        state.hit = True
        state.cache_control(ctx.response, RESPONSES.expires(key) - now)
        ctx.stopped_by = self.tag
        return STOP


@policy
class CacheStore(Policy):
    tag = "cache-store"
    sections = frozenset({"outbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"duration", "cache-response"})
        node.check_children(frozenset())
        duration = node.value("duration", required=True)
        assert duration is not None
        if duration.constant:
            node.integer("duration", required=True, minimum=1)
        self.duration: Value = duration
        self.any_status = _flag(node, "cache-response", False)

    def run(self, ctx: Context) -> Any:
        state = ctx.cache
        r = ctx.response
        if state is None or state.hit or r is None:
            return None
        if r.status != 200 and not _truth(self.any_status, ctx):
            return None
        raw = r.headers.to_raw() if r.headers is not None else list(r.raw_headers or [])
        headers = [(n.lower(), v) for n, v in raw if n.lower() not in _NOT_KEPT]
        if any(n == b"set-cookie" for n, _v in headers):
            return None  # one client's cookie is never handed to another
        seconds = _seconds(self.duration, ctx, self.tag)
        if r.upstream is None:
            remember(state, r.status, r.reason, headers, r.body, seconds)
        else:
            state.pending = (r.status, r.reason, headers, seconds, r.upstream)
        state.cache_control(r, seconds)
        return None


def remember(
    state: CacheState,
    status: int,
    reason: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    seconds: float,
) -> None:
    """Keep a response whose whole body is known (cache-store, or the end of a streamed body)."""
    if len(body) > MAX_RESPONSE_BYTES:
        return
    size = len(body) + sum(len(n) + len(v) for n, v in headers)
    RESPONSES.put(state.key, (status, reason, headers, body), seconds, time.monotonic(), size)


def pending_store(ctx: Context, upstream: Any) -> Callable[[bytes | None], None] | None:
    """For the send side (proxy.py): a function to call with the backend body that was sent in
    full (or None when it was cut short), when cache-store asked to keep this response."""
    state = ctx.cache
    if state is None or state.pending is None or state.pending[4] is not upstream:
        return None
    status, reason, headers, seconds, _upstream = state.pending
    state.pending = None

    def done(body: bytes | None) -> None:
        if body is not None:
            remember(state, status, reason, headers, body, seconds)

    return done


def _seconds(duration: Value, ctx: Context, source: str) -> float:
    raw = duration.get(ctx)
    try:
        seconds = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise Reject(
            500,
            "duration did not evaluate to a positive number of seconds.",
            source=source,
            reason="ExpressionValueEvaluationFailure",
        )
    return seconds


__all__ = ["RESPONSES", "VALUES", "CacheState", "TtlCache", "ValueCache", "pending_store"]
