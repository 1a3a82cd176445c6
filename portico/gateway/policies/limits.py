"""rate-limit, quota (per subscription), rate-limit-by-key and quota-by-key.

Rate-limit counters are per gateway node (like API Management's, per gateway): with N nodes behind
a balancer the effective limit is up to N times the configured one. The worker processes of one
node share one table (portico/gateway/shared_counters.py); `Counters` is the in-process table of a
gateway running inside the management process. Windows are fixed, starting at the first call of a
key; expired windows are swept every few seconds so memory follows the number of active keys.

Quota counters (`quota`, `quota-by-key`) are periods of hours to years: they live in the database,
shared by every process and node, and the management API reads and resets them
(portico/gateway/quotas.py: `QuotaLedger`, and the bound on overshoot).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from portico.gateway.expressions import Value, to_text, truthy
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.quotas import (
    ANONYMOUS,
    EPOCH_ZERO,
    NEVER_LEFT,
    Entry,
    Period,
    QuotaLedger,
    instant,
    period_at,
)

if TYPE_CHECKING:
    from portico.gateway.context import Context

INBOUND = frozenset({"inbound"})


class CounterStore(Protocol):
    """What the limit policies need of a counter table (`Counters`, `SharedCounters`)."""

    def __len__(self) -> int: ...

    def peek(self, key: Any, period: float, now: float) -> tuple[float, float]: ...

    def add(self, key: Any, period: float, now: float, amount: float) -> float: ...

    def take(self, key: Any, period: float, now: float, limit: float) -> tuple[bool, float, float]:
        """Count one call if the window has room below `limit`: (taken, count before, seconds until
        the window renews). peek + add in one step (one lock round trip for the shared table)."""
        ...


class Counters:
    """Fixed windows keyed by anything hashable: key → [window start, count]."""

    def __init__(self) -> None:
        self._w: dict[Any, list[float]] = {}
        self._last_sweep = time.monotonic()

    def __len__(self) -> int:
        return len(self._w)

    def _window(self, key: Any, period: float, now: float) -> list[float]:
        w = self._w.get(key)
        if w is None or now - w[0] >= period:
            w = [now, 0.0]
            self._w[key] = w
        if now - self._last_sweep > 5.0:
            self._sweep(now)
        return w

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        # periods are at most a year; a window idle for longer than its own age+period is dead
        dead = [
            k
            for k, w in self._w.items()
            if now - w[0] >= (k[-1] if isinstance(k, tuple) and isinstance(k[-1], float) else 3600.0)
        ]
        for k in dead:
            del self._w[k]

    def peek(self, key: Any, period: float, now: float) -> tuple[float, float]:
        """(count in the current window, seconds until it renews)."""
        w = self._window(key, period, now)
        return w[1], max(0.0, w[0] + period - now)

    def add(self, key: Any, period: float, now: float, amount: float) -> float:
        w = self._window(key, period, now)
        w[1] += amount
        return w[1]

    def take(self, key: Any, period: float, now: float, limit: float) -> tuple[bool, float, float]:
        w = self._window(key, period, now)
        count = w[1]
        if count + 1 <= limit:
            w[1] = count + 1
            return True, count, max(0.0, w[0] + period - now)
        return False, count, max(0.0, w[0] + period - now)


class _Limit:
    __slots__ = ("bandwidth_kb", "calls", "key", "period")

    def __init__(self, calls: int | None, bandwidth_kb: int | None, period: float, key: str) -> None:
        self.calls = calls
        self.bandwidth_kb = bandwidth_kb
        self.period = period
        self.key = key


def _nested(
    node: Node, cc: CompileContext, *, quota: bool
) -> list[tuple[str, str | None, str | None, _Limit, list[tuple[str, str | None, str | None, _Limit]]]]:
    """<api name|id calls renewal-period><operation .../></api> children of rate-limit and quota."""
    out = []
    node.check_children({"api"})
    for api in node.children:
        api.check_attrs(
            {"name", "id", "calls", "renewal-period", "bandwidth"}
            if quota
            else {"name", "id", "calls", "renewal-period"}
        )
        api.check_children({"operation"})
        if not api.get("name") and not api.get("id"):
            raise PolicyDocumentError("<api> needs a 'name' or an 'id'.", api)
        ops = []
        for op in api.children:
            op.check_attrs(
                {"name", "id", "calls", "renewal-period", "bandwidth"}
                if quota
                else {"name", "id", "calls", "renewal-period"}
            )
            if op.children:
                raise PolicyDocumentError("<operation> takes no child elements.", op)
            if not op.get("name") and not op.get("id"):
                raise PolicyDocumentError("<operation> needs a 'name' or an 'id'.", op)
            ops.append(("operation", op.get("name"), op.get("id"), _limit_of(op, cc, quota)))
        out.append(("api", api.get("name"), api.get("id"), _limit_of(api, cc, quota), ops))
    return out


def _limit_of(node: Node, cc: CompileContext, quota: bool) -> _Limit:
    calls = node.integer("calls", minimum=0, required=not quota)
    bandwidth = node.integer("bandwidth", minimum=0) if quota else None
    if quota and calls is None and bandwidth is None:
        raise PolicyDocumentError("at least one of 'calls' and 'bandwidth' is required.", node)
    period = node.integer("renewal-period", required=True, minimum=0 if quota else 1)  # quota: 0 never renews
    assert period is not None
    if period > 366 * 86400 * 5:
        raise PolicyDocumentError("attribute 'renewal-period' is too long.", node)
    return _Limit(calls, bandwidth, float(period), f"{cc.scope}@{node.line}:{node.col}")


def _matches(ctx: Context, kind: str, name: str | None, ident: str | None) -> bool:
    target = ctx.api if kind == "api" else ctx.operation
    if target is None:
        return False
    if ident is not None and ident.lower() == target.name.lower():
        return True
    return name is not None and name == target.display_name


def _retry_text(seconds: float) -> str:
    s = math.ceil(seconds)
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _quota_exceeded(what: str, seconds: float, source: str) -> Reject:
    """API Management's 403 for an exhausted call volume or bandwidth quota."""
    return Reject(
        403,
        f"Out of {what} quota. Quota will be replenished in {_retry_text(seconds)}.",
        source=source,
        reason="QuotaExceeded",
        headers={"Retry-After": str(max(1, math.ceil(seconds)))},
    )


class _HeaderNames:
    def __init__(self, node: Node) -> None:
        self.retry_after_header = node.header_name("retry-after-header-name")
        self.retry_after_variable = node.get("retry-after-variable-name")
        self.remaining_header = node.header_name("remaining-calls-header-name")
        self.remaining_variable = node.get("remaining-calls-variable-name")
        self.total_header = node.header_name("total-calls-header-name")

    def report(self, ctx: Context, remaining: int, total: int) -> None:
        if self.remaining_header:
            ctx.extra_headers.append((self.remaining_header, str(max(0, remaining))))
        if self.remaining_variable:
            ctx.variables[self.remaining_variable] = max(0, remaining)
        if self.total_header:
            ctx.extra_headers.append((self.total_header, str(total)))

    def reject(self, ctx: Context, retry: float) -> dict[str, str]:
        seconds = str(max(1, math.ceil(retry)))
        if self.retry_after_variable:
            ctx.variables[self.retry_after_variable] = int(seconds)
        return {self.retry_after_header or "Retry-After": seconds}


_LIMIT_ATTRS = {
    "calls",
    "renewal-period",
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-calls-header-name",
    "remaining-calls-variable-name",
    "total-calls-header-name",
}


def _by_key(node: Node) -> tuple[Value, Value | None, Value | None]:
    """The attributes the by-key policies share: counter-key, increment-condition, increment-count."""
    counter_key = node.value("counter-key", required=True)
    assert counter_key is not None
    condition = node.value("increment-condition")
    if (
        condition is not None
        and condition.constant
        and condition.literal.strip().lower() not in ("true", "false")
    ):
        raise PolicyDocumentError(
            "attribute 'increment-condition' must be an expression or true/false.", node
        )
    increment = node.value("increment-count", default="1")
    if increment is not None and increment.constant:
        node.integer("increment-count", minimum=1)
    return counter_key, condition, increment


def _increment(ctx: Context, increment: Value | None, source: str) -> int:
    """increment-count of the by-key policies: an integer, or the request fails with a 500."""
    if increment is None:
        return 1
    v = increment.get(ctx)
    try:
        n = int(v if not isinstance(v, str) else v.strip())
    except (TypeError, ValueError):
        raise Reject(
            500,
            "increment-count did not evaluate to an integer.",
            source=source,
            reason="ExpressionValueEvaluationFailure",
        ) from None
    return max(0, n)


def _subscription_key(ctx: Context) -> str:
    s = ctx.subscription
    return s.name if s is not None else "\x00anonymous"


class _PerSubscriptionLimit(Policy):
    """rate-limit: the policy's own limit plus nested <api>/<operation> limits, checked per
    subscription; subclasses say how one limit is checked (`_check`)."""

    limit: Any
    nested: Any

    def _check(self, ctx: Context, limit: Any, who: Any, now: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, ctx: Context) -> Any:
        now = time.monotonic()
        who = _subscription_key(ctx)
        for _k, name, ident, limit, ops in self.nested:
            if _matches(ctx, "api", name, ident):
                for _ko, oname, oident, olimit in ops:
                    if _matches(ctx, "operation", oname, oident):
                        self._check(ctx, olimit, who, now)
                self._check(ctx, limit, who, now)
        self._check(ctx, self.limit, who, now)
        return None


@policy
class RateLimit(_PerSubscriptionLimit):
    tag = "rate-limit"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(_LIMIT_ATTRS)
        self.limit = _limit_of(node, cc, quota=False)
        self.nested = _nested(node, cc, quota=False)
        self.names = _HeaderNames(node)
        self.counters: CounterStore = cc.limits if cc.limits is not None else Counters()

    def _check(self, ctx: Context, limit: _Limit, who: Any, now: float) -> None:
        assert limit.calls is not None
        key = (ctx.service.id, limit.key, who, limit.period)
        taken, count, renew = self.counters.take(key, limit.period, now, limit.calls)
        if not taken:
            raise Reject(
                429,
                f"Rate limit is exceeded. Try again in {max(1, math.ceil(renew))} seconds.",
                source="rate-limit",
                reason="RateLimitExceeded",
                headers=self.names.reject(ctx, renew),
            )
        self.names.report(ctx, int(limit.calls - count - 1), limit.calls)


@policy
class Quota(Policy):
    """Calls and/or kilobytes per renewal period and subscription, with nested <api>/<operation>
    limits. The counter key is the subscription's id; its periods start at the subscription's start
    (as in API Management). Counters live in the database (portico/gateway/quotas.py)."""

    tag = "quota"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"calls", "bandwidth", "renewal-period"})
        self.limit = _limit_of(node, cc, quota=True)
        self.nested = _nested(node, cc, quota=True)
        self.ledger: QuotaLedger = cc.quotas if cc.quotas is not None else QuotaLedger()

    def run(self, ctx: Context) -> Any:
        sub = ctx.subscription
        who = sub.name if sub is not None else ANONYMOUS
        first = (
            instant(sub.data.get("startDate") or sub.data.get("createdDate"))
            if sub is not None
            else EPOCH_ZERO
        )
        wall = time.time()
        for _k, name, ident, limit, ops in self.nested:
            if _matches(ctx, "api", name, ident):
                assert ctx.api is not None
                api = ctx.api.name
                for _ko, oname, oident, olimit in ops:
                    if _matches(ctx, "operation", oname, oident):
                        assert ctx.operation is not None
                        self._check(ctx, olimit, who, f"_{api}_{ctx.operation.name}", first, wall)
                self._check(ctx, limit, who, f"_{api}", first, wall)
        self._check(ctx, self.limit, who, "", first, wall)
        return None

    def _check(self, ctx: Context, limit: _Limit, who: str, scope: str, first: float, wall: float) -> None:
        period = period_at(int(limit.period), first, wall)
        e = self.ledger.entry(ctx.service.store_id, who, period.key + scope, period)
        _enforce(ctx, self.tag, e, limit.calls, limit.bandwidth_kb, None, 1, period)


@policy
class RateLimitByKey(Policy):
    tag = "rate-limit-by-key"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(_LIMIT_ATTRS | {"counter-key", "increment-condition", "increment-count"})
        node.check_children(frozenset())
        self.limit = _limit_of(node, cc, quota=False)
        self.counter_key, self.condition, self.increment = _by_key(node)
        self.names = _HeaderNames(node)
        self.counters: CounterStore = cc.limits if cc.limits is not None else Counters()

    def run(self, ctx: Context) -> Any:
        limit = self.limit
        assert limit.calls is not None
        now = time.monotonic()
        who = to_text(self.counter_key.get(ctx))
        key = (ctx.service.id, limit.key, who, limit.period)
        count, renew = self.counters.peek(key, limit.period, now)
        if count + 1 > limit.calls:
            raise Reject(
                429,
                f"Rate limit is exceeded. Try again in {max(1, math.ceil(renew))} seconds.",
                source="rate-limit-by-key",
                reason="RateLimitExceeded",
                headers=self.names.reject(ctx, renew),
            )
        amount = _increment(ctx, self.increment, self.tag)
        if self.condition is None or (
            self.condition.constant and self.condition.literal.strip().lower() == "true"
        ):
            self.counters.add(key, limit.period, now, amount)
            self.names.report(ctx, int(limit.calls - count - amount), limit.calls)
        elif not self.condition.constant:
            cond, counters, period = self.condition, self.counters, limit.period

            def later(c: Context) -> None:
                if truthy(cond.get(c)):
                    counters.add(key, period, time.monotonic(), amount)

            ctx.deferred.append(later)
            self.names.report(ctx, int(limit.calls - count), limit.calls)
        return None


@policy
class QuotaByKey(Policy):
    """Calls and/or kilobytes per renewal period for any key (`counter-key`). Periods are aligned
    to `first-period-start` on the wall clock (a monthly quota renews on its date, whichever node
    counts); `renewal-period="0"` never renews. The increment condition, like rate-limit-by-key's,
    is evaluated once the response is known; so is the bandwidth used. Counters live in the
    database (portico/gateway/quotas.py)."""

    tag = "quota-by-key"
    sections = INBOUND

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "calls",
                "bandwidth",
                "renewal-period",
                "counter-key",
                "increment-condition",
                "increment-count",
                "first-period-start",
            }
        )
        node.check_children(frozenset())
        self.calls = node.integer("calls", minimum=0)
        self.bandwidth_kb = node.integer("bandwidth", minimum=0)
        if self.calls is None and self.bandwidth_kb is None:
            raise PolicyDocumentError("at least one of 'calls' and 'bandwidth' is required.", node)
        period = node.integer("renewal-period", required=True, minimum=0)
        assert period is not None
        if period > 366 * 86400 * 5:
            raise PolicyDocumentError("attribute 'renewal-period' is too long.", node)
        self.renewal = period
        self.counter_key, self.condition, self.increment = _by_key(node)
        start = node.get("first-period-start")
        self.first = EPOCH_ZERO
        if start:
            try:
                when = datetime.fromisoformat(start.strip().replace("Z", "+00:00"))
            except ValueError:
                raise PolicyDocumentError(
                    f"attribute 'first-period-start' must be an ISO 8601 date-time (yyyy-MM-ddTHH:mm:ssZ), got '{start[:40]}'.",
                    node,
                ) from None
            self.first = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        self.ledger: QuotaLedger = cc.quotas if cc.quotas is not None else QuotaLedger()
        self._period = period_at(self.renewal, self.first, time.time())

    def period(self, wall: float) -> Period:
        """The current period (the last one computed while it lasts)."""
        p = self._period
        if wall < p.start or (p.end is not None and wall >= p.end):
            p = self._period = period_at(self.renewal, self.first, wall)
        return p

    def run(self, ctx: Context) -> Any:
        period = self.period(time.time())
        # One counter per key value for every scope that uses it (as in API Management), and
        # one increment per request however many of those policies the request meets.
        e = self.ledger.entry(ctx.service.store_id, to_text(self.counter_key.get(ctx)), period.key, period)
        cond = self.condition
        if cond is not None and cond.constant:
            if cond.literal.strip().lower() != "true":
                _enforce(ctx, self.tag, e, self.calls, self.bandwidth_kb, None, 0, period, count=False)
                return None  # increment-condition="false": nothing counts
            cond = None
        _enforce(ctx, self.tag, e, self.calls, self.bandwidth_kb, cond, self.increment, period)
        return None


def _enforce(
    ctx: Context,
    tag: str,
    e: Entry,
    calls: int | None,
    kb: int | None,
    cond: Value | None,
    increment: Value | int | None,
    period: Period,
    *,
    count: bool = True,
) -> None:
    """Reject when the counter is over a limit; else count the call (now, or once the response is
    known when an increment condition decides) and the kilobytes (once the response is known).
    A counter is counted once per request, whichever policies meet it."""
    counted: set[Any] = getattr(ctx, "counted", None) or set()
    ctx.counted = counted
    calls = None if (e, "calls") in counted else calls  # admitted by a policy before
    kb = None if (e, "kb") in counted else kb
    if calls is not None and e.total_calls() + 1 > calls:
        raise _quota_exceeded("call volume", _left(period), tag)
    if kb is not None and e.total_kb() >= kb:
        raise _quota_exceeded("bandwidth", _left(period), tag)
    if not count or (calls is None and kb is None):
        return
    amount = increment if isinstance(increment, int) else _increment(ctx, increment, tag)
    if calls is not None:
        counted.add((e, "calls"))
        if cond is None:
            QuotaLedger.add(e, calls=amount)
    if kb is not None:
        counted.add((e, "kb"))
    if (cond is None or calls is None) and kb is None:
        return

    def after(c: Context) -> None:
        if cond is not None and not truthy(cond.get(c)):
            return
        QuotaLedger.add(
            e,
            calls=amount if calls is not None and cond is not None else 0,
            kb=(c.bytes_in + c.bytes_out) / 1024.0 if kb is not None else 0.0,
        )

    ctx.deferred.append(after)


def _left(period: Period) -> float:
    return NEVER_LEFT if period.end is None else max(0.0, period.end - time.time())
