"""Parser and compiler: each parse function returns (closure, static type); the closures call the
run-time library only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from portico.gateway.expressions._base import Env, ExpressionError, Fn
from portico.gateway.expressions._catalog import (
    BODY_TYPES,
    CAST_TYPES,
    MEMBERS,
    METHODS,
    STATIC_TYPES,
)
from portico.gateway.expressions._lexer import Tok, tokenize
from portico.gateway.expressions._runtime import (
    STATICS,
    add,
    call_method,
    cast,
    comparison,
    divide,
    equals,
    get_index,
    get_member,
    modulo,
    set_index,
    to_number,
    to_text,
    truthy,
)

_KEYWORDS = {
    "true",
    "false",
    "null",
    "return",
    "var",
    "if",
    "else",
    "new",
    "for",
    "foreach",
    "while",
    "typeof",
}


class ReturnValue(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0
        self.locals: dict[str, str] = {}
        self.body_reads: set[str] = set()  # "request" / "response": whose body this reads
        self.last_index: tuple[Fn, Fn] | None = None  # the target and key of a postfix's last `[...]`

    # helpers
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> Tok:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def error(self, message: str, tok: Tok | None = None) -> ExpressionError:
        t = tok or self.tok
        return ExpressionError(f"{message} at position {t.pos + 1}")

    def accept(self, value: str) -> bool:
        if self.tok.kind in ("op", "id") and self.tok.value == value:
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            got = "end of expression" if self.tok.kind == "eof" else repr(self.tok.value)
            raise self.error(f"expected '{value}' but found {got}")

    # expressions
    def expression(self) -> tuple[Fn, str]:
        if (self.tok.kind == "op" and self.tok.value == "=>") or (
            self.peek().kind == "op" and self.peek().value == "=>"
        ):
            raise self.error("lambda expressions are not supported")
        return self.ternary()

    def ternary(self) -> tuple[Fn, str]:
        cond, ct = self.coalesce()
        if self.accept("?"):
            a, at = self.expression()
            self.expect(":")
            b, bt = self.expression()
            return (lambda e: a(e) if truthy(cond(e)) else b(e)), (at if at == bt else "any")
        return cond, ct

    def coalesce(self) -> tuple[Fn, str]:
        left, lt = self.or_()
        if self.accept("??"):
            right, _rt = self.coalesce()

            def f(e: Env) -> Any:
                v = left(e)
                return right(e) if v is None else v

            return f, lt
        return left, lt

    def or_(self) -> tuple[Fn, str]:
        left, lt = self.and_()
        while self.accept("||"):
            right, _ = self.and_()
            left = (lambda a, b: lambda e: truthy(a(e)) or truthy(b(e)))(left, right)
            lt = "bool"
        return left, lt

    def and_(self) -> tuple[Fn, str]:
        left, lt = self.equality()
        while self.accept("&&"):
            right, _ = self.equality()
            left = (lambda a, b: lambda e: truthy(a(e)) and truthy(b(e)))(left, right)
            lt = "bool"
        return left, lt

    def equality(self) -> tuple[Fn, str]:
        left, lt = self.relational()
        while self.tok.kind == "op" and self.tok.value in ("==", "!="):
            op = self.tok.value
            self.i += 1
            right, _ = self.relational()
            if op == "==":
                left = (lambda a, b: lambda e: equals(a(e), b(e)))(left, right)
            else:
                left = (lambda a, b: lambda e: not equals(a(e), b(e)))(left, right)
            lt = "bool"
        return left, lt

    def relational(self) -> tuple[Fn, str]:
        left, lt = self.additive()
        while self.tok.kind == "op" and self.tok.value in ("<", "<=", ">", ">="):
            op = self.tok.value
            self.i += 1
            right, _ = self.additive()
            left = (lambda a, b, c: lambda e: c(a(e), b(e)))(left, right, comparison(op))
            lt = "bool"
        return left, lt

    def additive(self) -> tuple[Fn, str]:
        left, lt = self.multiplicative()
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            op = self.tok.value
            self.i += 1
            right, rt = self.multiplicative()
            if op == "+":
                left = (lambda a, b: lambda e: add(a(e), b(e)))(left, right)
                lt = "string" if "string" in (lt, rt) else lt
            else:
                left = (lambda a, b: lambda e: to_number(a(e), "-") - to_number(b(e), "-"))(left, right)
        return left, lt

    def multiplicative(self) -> tuple[Fn, str]:
        left, lt = self.unary()
        while self.tok.kind == "op" and self.tok.value in ("*", "/", "%"):
            op = self.tok.value
            self.i += 1
            right, _ = self.unary()
            if op == "*":
                left = (lambda a, b: lambda e: to_number(a(e), "*") * to_number(b(e), "*"))(left, right)
            elif op == "/":
                left = (lambda a, b: lambda e: divide(a(e), b(e)))(left, right)
            else:
                left = (lambda a, b: lambda e: modulo(a(e), b(e)))(left, right)
        return left, lt

    def unary(self) -> tuple[Fn, str]:
        if self.accept("!"):
            inner, _ = self.unary()
            return (lambda e: not truthy(inner(e))), "bool"
        if self.accept("-"):
            inner, t = self.unary()
            return (lambda e: -to_number(inner(e), "-")), t
        # cast: "(" type ")" followed by something that starts an operand
        if (
            self.tok.kind == "op"
            and self.tok.value == "("
            and self.peek().kind == "id"
            and self.peek().value in CAST_TYPES
            and self.peek(2).kind == "op"
            and self.peek(2).value == ")"
            and (
                self.peek(3).kind in ("id", "str", "num", "interp")
                or (self.peek(3).kind == "op" and self.peek(3).value in ("(", "!"))
            )
        ):
            type_name = self.peek().value
            self.i += 3
            inner, _ = self.unary()
            t = {"String": "string", "Int32": "int", "Int64": "long", "Boolean": "bool"}.get(
                type_name, type_name
            )
            return (lambda e: cast(type_name, inner(e))), ("any" if t in ("object", "var", "JToken") else t)
        return self.postfix()

    def postfix(self) -> tuple[Fn, str]:
        fn, t = self.primary()
        self.last_index = None
        while True:
            null_conditional = self.accept("?.")
            if null_conditional or self.accept("."):
                self.last_index = None
                if self.tok.kind != "id":
                    raise self.error("expected a member name after '.'")
                name_tok = self.tok
                name = name_tok.value
                self.i += 1
                generic = self._generic_args()
                target = fn
                if self.tok.kind == "op" and self.tok.value == "(":
                    args = self.arguments()
                    fn, t = self._method(fn, t, name, generic, args, name_tok)
                else:
                    if generic:
                        raise self.error(f"'{name}' is not a method", name_tok)
                    fn, t = self._member(fn, t, name, name_tok)
                self.last_index = None
                if null_conditional:  # `a?.B`: null when `a` is null (`a` is evaluated again otherwise)
                    fn = (lambda a, m: lambda e: None if a(e) is None else m(e))(target, fn)
            elif self.accept("["):
                key, _ = self.expression()
                self.expect("]")
                target = fn
                fn = (lambda a, k: lambda e: get_index(a(e), k(e)))(target, key)
                t = {"Headers": "string", "Form": "Array", "Array": "any", "string": "string"}.get(t, "any")
                self.last_index = (target, key)
                continue
            else:
                return fn, t

    def _generic_args(self) -> str | None:
        # Method<T>( ... ) — only when the `<` is followed by a type name, `>` and `(`.
        if (
            self.tok.kind == "op"
            and self.tok.value == "<"
            and self.peek().kind == "id"
            and self.peek(2).kind == "op"
            and self.peek(2).value == ">"
            and self.peek(3).kind == "op"
            and self.peek(3).value == "("
        ):
            name = str(self.peek().value)
            self.i += 3
            return name
        if (  # As<byte[]>()
            self.tok.kind == "op"
            and self.tok.value == "<"
            and self.peek().kind == "id"
            and [(t.kind, t.value) for t in (self.peek(2), self.peek(3), self.peek(4), self.peek(5))]
            == [("op", "["), ("op", "]"), ("op", ">"), ("op", "(")]
        ):
            name = str(self.peek().value) + "[]"
            self.i += 5
            return name
        return None

    def arguments(self) -> list[tuple[Fn, str]]:
        self.expect("(")
        args: list[tuple[Fn, str]] = []
        if self.accept(")"):
            return args
        while True:
            # a named argument (`As<string>(preserveContent: true)`): passed by position
            if self.tok.kind == "id" and self.peek().kind == "op" and self.peek().value == ":":
                self.i += 2
            args.append(self.expression())
            if self.accept(")"):
                return args
            self.expect(",")

    def _member(self, target: Fn, t: str, name: str, tok: Tok) -> tuple[Fn, str]:
        if t.startswith("static:"):
            cls = t[7:]
            entry = STATICS[cls].get(name)
            if entry is None or entry[0] != -1:
                raise self.error(f"'{cls}' has no property '{name}'", tok)
            impl = entry[3]
            return (lambda e: impl()), entry[2]
        if t != "any":
            members = MEMBERS.get(t, {})
            if name not in members:
                raise self.error(f"'{t}' does not contain a definition for '{name}'", tok)
            rt = members[name]
            if rt == "MessageBody":
                self.body_reads.add(t.lower())
        else:
            rt = "any"
        return (lambda e: get_member(target(e), name)), rt

    def _method(
        self, target: Fn, t: str, name: str, generic: str | None, args: list[tuple[Fn, str]], tok: Tok
    ) -> tuple[Fn, str]:
        fns = [a[0] for a in args]
        if t.startswith("static:"):
            cls = t[7:]
            entry = STATICS[cls].get(name)
            if entry is None or entry[0] == -1:
                raise self.error(f"'{cls}' does not contain a method '{name}'", tok)
            lo, hi, rt, impl = entry
            if not lo <= len(fns) <= hi:
                raise self.error(
                    f"'{name}' takes {lo}{'' if lo == hi else '-' + str(hi)} argument(s), got {len(fns)}", tok
                )
            return (lambda e: impl(*[f(e) for f in fns])), rt
        if t != "any":
            methods = METHODS.get(t, {})
            if name not in methods:
                raise self.error(f"'{t}' does not contain a method '{name}'", tok)
            lo, hi, rt = methods[name]
            if name == "As" and t in ("Body", "MessageBody") and (generic or "string") not in BODY_TYPES[t]:
                raise self.error(
                    f"{t}.As<{generic}>() is not supported (supported: {', '.join(BODY_TYPES[t])})", tok
                )
            if not lo <= len(fns) <= hi:
                raise self.error(
                    f"'{name}' takes {lo}{'' if lo == hi else '-' + str(hi)} argument(s), got {len(fns)}", tok
                )
            if rt == "any" and generic:
                rt = {"String": "string", "Int32": "int", "Int64": "long", "Boolean": "bool"}.get(
                    generic, generic
                )
                if rt not in MEMBERS and rt not in METHODS:
                    rt = "any"
        else:
            if name not in _ALL_METHOD_NAMES:
                raise self.error(f"unknown method '{name}'", tok)
            rt = "any"
        return (lambda e: call_method(target(e), name, [f(e) for f in fns], generic)), rt

    def _interpolation(self, parts: list[tuple[bool, str]]) -> Fn:
        """`$"a{x}b"`: each hole compiled in this scope (its locals), rendered with ToString()."""
        fns: list[Fn] = []
        for is_expr, text in parts:
            if not is_expr:
                fns.append((lambda t: lambda e: t)(text))
                continue
            sub = Parser(text)
            sub.locals = self.locals
            sub.body_reads = self.body_reads
            fn, _t = sub.expression()
            if sub.tok.kind != "eof":
                raise sub.error(f"unexpected {sub.tok.value!r} in an interpolated string hole")
            fns.append(fn)
        return lambda e: "".join(to_text(f(e)) for f in fns)

    def primary(self) -> tuple[Fn, str]:
        tok = self.tok
        if tok.kind == "num":
            self.i += 1
            v = tok.value
            return (lambda e: v), ("double" if isinstance(v, float) else "int")
        if tok.kind == "str":
            self.i += 1
            s = tok.value
            return (lambda e: s), "string"
        if tok.kind == "interp":
            self.i += 1
            return self._interpolation(tok.value), "string"
        if tok.kind == "op" and tok.value == "(":
            self.i += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind == "id":
            name = tok.value
            self.i += 1
            if name == "true":
                return (lambda e: True), "bool"
            if name == "false":
                return (lambda e: False), "bool"
            if name == "null":
                return (lambda e: None), "any"
            if name == "context":
                return (lambda e: e["context"]), "context"
            if name in self.locals:
                return (lambda e: e["locals"][name]), self.locals[name]
            if name in STATIC_TYPES:
                return (lambda e: None), "static:" + STATIC_TYPES[name]
            if name in _KEYWORDS:
                raise self.error(f"'{name}' is not supported in policy expressions", tok)
            raise self.error(f"unknown name '{name}'", tok)
        if tok.kind == "eof":
            raise self.error("unexpected end of expression")
        raise self.error(f"unexpected {tok.value!r}")

    # statements (for @{ ... } blocks)
    def block_body(self) -> Callable[[Env], None]:
        stmts: list[Callable[[Env], None]] = []
        while not (self.tok.kind == "eof" or (self.tok.kind == "op" and self.tok.value == "}")):
            stmts.append(self.statement())

        def run(e: Env) -> None:
            for s in stmts:
                s(e)

        return run

    def statement(self) -> Callable[[Env], None]:
        tok = self.tok
        if self.accept("{"):
            body = self.block_body()
            self.expect("}")
            return body
        if self.accept("return"):
            value, _ = self.expression()
            self.expect(";")

            def ret(e: Env) -> None:
                raise ReturnValue(value(e))

            return ret
        if self.accept("if"):
            self.expect("(")
            cond, _ = self.expression()
            self.expect(")")
            then = self.statement()
            other = self.statement() if self.accept("else") else None

            def if_(e: Env) -> None:
                if truthy(cond(e)):
                    then(e)
                elif other is not None:
                    other(e)

            return if_
        if tok.kind == "id" and (tok.value == "var" or tok.value in CAST_TYPES) and self.peek().kind == "id":
            self.i += 1
            name = self.tok.value
            if name in _KEYWORDS or name == "context":
                raise self.error(f"'{name}' cannot be used as a variable name")
            self.i += 1
            self.expect("=")
            value, vt = self.expression()
            self.expect(";")
            self.locals[name] = vt if tok.value == "var" else {"String": "string"}.get(tok.value, tok.value)

            def assign(e: Env) -> None:
                e["locals"][name] = value(e)

            return assign
        if (
            tok.kind == "id"
            and tok.value in self.locals
            and self.peek().kind == "op"
            and self.peek().value == "="
        ):
            name = tok.value
            self.i += 2
            value, _ = self.expression()
            self.expect(";")

            def reassign(e: Env) -> None:
                e["locals"][name] = value(e)

            return reassign
        after = self.peek()
        if tok.kind == "id" and tok.value in self.locals and after.kind == "op" and after.value in (".", "["):
            return self._index_assignment()
        if tok.kind == "id" and tok.value in ("for", "foreach", "while", "new", "try", "throw"):
            raise self.error(f"'{tok.value}' is not supported in policy expressions")
        raise self.error("expected a statement (var, if, return or an assignment)")

    def _index_assignment(self) -> Callable[[Env], None]:
        """`o["k"] = value;` (and `o["a"]["b"] = value;`) on a local JSON object or array, or a
        method called for its effect (`o.Remove("k");`)."""
        start = self.tok
        fn, _t = self.postfix()
        where = self.last_index
        ends_with_call = self.toks[self.i - 1].kind == "op" and self.toks[self.i - 1].value == ")"
        if where is None and ends_with_call and self.accept(";"):

            def call(e: Env) -> None:
                fn(e)

            return call
        if where is None or not self.accept("="):
            raise self.error("expected a statement (var, if, return or an assignment)", start)
        target, key = where
        value, _ = self.expression()
        self.expect(";")

        def assign(e: Env) -> None:
            set_index(target(e), key(e), value(e))

        return assign


_ALL_METHOD_NAMES = {n for table in METHODS.values() for n in table}
