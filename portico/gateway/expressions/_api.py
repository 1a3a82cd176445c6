"""Compiled expressions and policy values: what the policies use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from portico.gateway.expressions._base import Env, ExpressionError, Fn
from portico.gateway.expressions._compiler import Parser, ReturnValue
from portico.gateway.expressions._runtime import to_text

# the sets that expressions compiled now report their body reads to (see `body_reads`)
_COLLECTORS: ContextVar[tuple[set[str], ...]] = ContextVar("body_read_collectors", default=())


@contextmanager
def body_reads() -> Iterator[set[str]]:
    """Collect which message bodies ("request", "response") the expressions compiled inside the
    block read: a policy whose expressions read a body has it buffered before it runs, since
    expressions are evaluated synchronously."""
    found: set[str] = set()
    token = _COLLECTORS.set((*_COLLECTORS.get(), found))
    try:
        yield found
    finally:
        _COLLECTORS.reset(token)


class Expression:
    """A compiled policy expression; `evaluate(context)` runs it. `reads_body`: the bodies it reads
    (context.Request.Body → "request", context.Response.Body → "response")."""

    __slots__ = ("_fn", "reads_body", "source", "static_type")

    def __init__(
        self, source: str, fn: Fn, static_type: str, reads_body: frozenset[str] = frozenset()
    ) -> None:
        self.source = source
        self._fn = fn
        self.static_type = static_type
        self.reads_body = reads_body
        for found in _COLLECTORS.get():
            found.update(reads_body)

    def evaluate(self, context: Any) -> Any:
        try:
            return self._fn({"context": context, "locals": {}})
        except ExpressionError:
            raise
        except RecursionError:
            raise ExpressionError("expression too deeply nested") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            raise ExpressionError(f"expression evaluation failed: {type(exc).__name__}") from None


MAX_SOURCE = 16 * 1024


def compile_expression(text: str) -> Expression:
    """Compile `@(...)` or `@{...}` (the whole attribute or element text)."""
    src = text.strip()
    if len(src) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")
    try:
        if src.startswith("@(") and src.endswith(")"):
            p = Parser(src[2:-1])
            fn, t = p.expression()
            if p.tok.kind != "eof":
                raise p.error(f"unexpected {p.tok.value!r} after the end of the expression")
            return Expression(src, fn, t, frozenset(p.body_reads))
        if src.startswith("@{") and src.endswith("}"):
            p = Parser(src[2:-1])
            body = p.block_body()
            if p.tok.kind != "eof":
                raise p.error(f"unexpected {p.tok.value!r}")

            def run(e: Env) -> Any:
                try:
                    body(e)
                except ReturnValue as r:
                    return r.value
                raise ExpressionError("the expression block ended without a return statement")

            return Expression(src, run, "any", frozenset(p.body_reads))
    except RecursionError:
        raise ExpressionError("expression too deeply nested") from None
    raise ExpressionError("an expression must be written @( ... ) or @{ ... }")


def is_expression(text: str | None) -> bool:
    if not text:
        return False
    s = text.strip()
    return (s.startswith("@(") and s.endswith(")")) or (s.startswith("@{") and s.endswith("}"))


class Value:
    """A policy value: literal text, or an expression evaluated per request."""

    __slots__ = ("expr", "literal")

    def __init__(self, text: str) -> None:
        if is_expression(text):
            self.expr: Expression | None = compile_expression(text)
            self.literal = ""
        else:
            self.expr = None
            self.literal = text

    @property
    def constant(self) -> bool:
        return self.expr is None

    def get(self, context: Any) -> Any:
        return self.literal if self.expr is None else self.expr.evaluate(context)

    def text(self, context: Any) -> str:
        return self.literal if self.expr is None else to_text(self.expr.evaluate(context))
