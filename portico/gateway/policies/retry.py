"""`retry`: run the child policies once, then again while the condition holds and retries remain,
waiting between attempts as the interval, delta and max-interval attributes say (fixed, linear or
exponential). A forward-request inside is sent again with the same body: the client's body is read
into memory first (within the gateway's body limit), since its stream can be read only once."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from portico.gateway.expressions import ExpressionError, Value, truthy
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import ALL, CompileContext, Policy, compile_policies, policy, run_list
from portico.gateway.policies.xmltree import Node, PolicyDocumentError

if TYPE_CHECKING:
    from portico.gateway.context import Context

MAX_COUNT = 50
COPIES = frozenset({"send-request", "send-one-way-request"})


def _sends_client_body(node: Node) -> bool:
    """Whether a policy under `node` may send the client's body: forward-request, or a side request
    whose mode is not a literal "new"."""
    if node.tag == "forward-request":
        return True
    if node.tag in COPIES and (node.attrs.get("mode") or "new").strip().lower() != "new":
        return True
    return any(_sends_client_body(child) for child in node.children)


def _number(
    node: Node, name: str, *, required: bool, minimum: float, maximum: float | None = None
) -> Value | None:
    value = node.value(name, required=required)
    if value is None or not value.constant or "{{" in value.literal:
        return value
    try:
        n = float(value.literal.strip())
    except ValueError:
        raise PolicyDocumentError(
            f"attribute '{name}' must be a number, got '{value.literal[:40]}'.", node
        ) from None
    if n < minimum or (maximum is not None and n > maximum):
        limits = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise PolicyDocumentError(f"attribute '{name}' must be {limits}, got '{value.literal[:40]}'.", node)
    return value


def _boolean(node: Node, name: str, default: str) -> Value:
    value = node.value(name, default=default)
    assert value is not None
    if (
        value.constant
        and "{{" not in value.literal
        and value.literal.strip().lower() not in ("true", "false")
    ):
        raise PolicyDocumentError(
            f"attribute '{name}' must be 'true', 'false' or an expression, got '{value.literal[:40]}'.", node
        )
    return value


def _evaluate_bool(value: Value, ctx: Context) -> bool:
    v = value.get(ctx)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "false"):
            return low == "true"
    return truthy(v)


def _evaluate_number(value: Value | None, ctx: Context, name: str) -> float | None:
    if value is None:
        return None
    v = value.get(ctx)
    if isinstance(v, bool):
        raise ExpressionError(f"retry {name} must be a number")
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        raise ExpressionError(f"retry {name} must be a number, got '{str(v)[:30]}'") from None


def delay(retry: int, interval: float, delta: float | None, max_interval: float | None) -> float:
    """Seconds to wait before retry number `retry` (1-based): interval only: fixed; with delta:
    linear, interval + (retry - 1) * delta; with delta and max-interval: exponential,
    interval + (2^(retry-1) - 1) * random(0.8 delta, 1.2 delta), at most max-interval."""
    if delta is None:
        wait = interval
    elif max_interval is None:
        wait = interval + (retry - 1) * delta
    else:
        wait = interval + (2 ** min(retry - 1, 30) - 1) * random.uniform(delta * 0.8, delta * 1.2)
    return min(wait, max_interval) if max_interval is not None else wait


@policy
class Retry(Policy):
    tag = "retry"
    sections = ALL
    is_async = True

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"condition", "count", "interval", "max-interval", "delta", "first-fast-retry"})
        self.condition = _boolean(node, "condition", "")
        if "condition" not in node.attrs or not node.attrs["condition"].strip():
            raise PolicyDocumentError("attribute 'condition' is required.", node)
        count = _number(node, "count", required=True, minimum=1, maximum=MAX_COUNT)
        interval = _number(node, "interval", required=True, minimum=0)
        assert count is not None and interval is not None
        self.count, self.interval = count, interval
        self.max_interval = _number(node, "max-interval", required=False, minimum=0)
        self.delta = _number(node, "delta", required=False, minimum=0)
        self.first_fast = _boolean(node, "first-fast-retry", "false")
        for child in node.children:
            if child.tag == "wait":
                raise PolicyDocumentError("<wait> is not allowed inside <retry>.", child)
        self.body = compile_policies(node.children, section, cc, allow_base=False)
        self.replays = section != "outbound" and _sends_client_body(node)

    async def run(self, ctx: Context) -> Any:
        count = _evaluate_number(self.count, ctx, "count")
        assert count is not None
        if not count.is_integer() or not 1 <= count <= MAX_COUNT:
            raise ExpressionError(f"retry count must be an integer between 1 and {MAX_COUNT}, got {count:g}")
        if self.replays:
            await ctx.backend.buffer_body(ctx)
        retries = 0
        earlier = ctx.last_error  # an attempt's error is visible to the condition of that attempt only
        while True:
            failure: Reject | None = None
            ctx.last_error = earlier
            try:
                if await run_list(self.body, ctx) is STOP:
                    return STOP
            except Reject as exc:
                # a failed attempt (the backend unreachable, a timeout): the condition decides, with
                # context.LastError describing it, whether it is tried again
                failure = exc
                ctx.last_error = {
                    "source": exc.source,
                    "reason": exc.reason,
                    "message": exc.message,
                    "section": self.section,
                    "scope": "",
                    "path": "",
                    "policyid": "",
                }
            if retries >= count or not _evaluate_bool(self.condition, ctx):
                if failure is not None:
                    raise failure
                return None
            retries += 1
            wait = 0.0
            if retries > 1 or not _evaluate_bool(self.first_fast, ctx):
                interval = _evaluate_number(self.interval, ctx, "interval") or 0.0
                wait = delay(
                    retries,
                    interval,
                    _evaluate_number(self.delta, ctx, "delta"),
                    _evaluate_number(self.max_interval, ctx, "max-interval"),
                )
            if wait > 0:
                await asyncio.sleep(wait)


__all__ = ["Retry", "delay"]
