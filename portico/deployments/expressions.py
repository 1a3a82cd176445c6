"""The ARM template expression language: `[function(args).property[index]]` inside JSON strings.

A JSON string is an expression when it starts with `[` and ends with `]`; a leading `[[` escapes a
literal `[`. Inside: function calls, single-quoted strings (`''` is a quote), integers, property
access (`.name`) and indexing (`[expr]`). There are no operators: everything is a function.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

MAX_EXPRESSION_LENGTH = 24_576  # ARM's own limit on one expression string
MAX_DEPTH = 64


class ExpressionError(ValueError):
    """A malformed expression or an evaluation that cannot succeed; the message names the cause."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class FunctionCall:
    name: str  # lower-cased
    display: str  # as written, for messages
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Member:
    target: Node
    name: str


@dataclass(frozen=True)
class Index:
    target: Node
    index: Node


Node = Literal | FunctionCall | Member | Index


def is_expression(value: str) -> bool:
    return len(value) >= 2 and value[0] == "[" and value[-1] == "]" and not value.startswith("[[")


def unescape(value: str) -> str:
    """A string that is not an expression: `[[x]` stands for the literal `[x]`."""
    return value[1:] if value.startswith("[[") else value


@functools.lru_cache(maxsize=4096)  # copy loops evaluate the same expressions many times
def parse(text: str) -> Node:
    """Parse the inside of one expression string (with its outer brackets)."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    parser = _Parser(text[1:-1])
    node = parser.expression(0)
    parser.skip_space()
    if parser.pos != len(parser.text):
        raise ExpressionError(f"unexpected '{parser.text[parser.pos]}' at position {parser.pos + 1}")
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.text[self.pos] if self.pos < len(self.text) else "the end"
            raise ExpressionError(f"expected '{char}' at position {self.pos + 1}, found {found!r}")
        self.pos += 1

    def expression(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels")
        char = self.peek()
        node: Node
        if char == "'":
            node = Literal(self.string())
        elif char.isdigit() or char == "-":
            node = Literal(self.number())
        elif char.isalpha() or char == "_":
            node = self.call(depth)
        else:
            raise ExpressionError(
                f"unexpected {char!r} at position {self.pos + 1}" if char else "the expression is empty"
            )
        while True:
            char = self.peek()
            if char == ".":
                self.pos += 1
                node = Member(node, self.identifier())
            elif char == "[":
                self.pos += 1
                node = Index(node, self.expression(depth + 1))
                self.expect("]")
            else:
                return node

    def identifier(self) -> str:
        self.skip_space()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "_$"):
            self.pos += 1
        if start == self.pos:
            raise ExpressionError(f"expected a name at position {start + 1}")
        return self.text[start : self.pos]

    def call(self, depth: int) -> Node:
        name = self.identifier()
        if self.peek() == ".":  # namespaced user-defined function: ns.name(...)
            self.pos += 1
            name = f"{name}.{self.identifier()}"
        self.expect("(")
        args: list[Node] = []
        if self.peek() != ")":
            while True:
                args.append(self.expression(depth + 1))
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
        self.expect(")")
        return FunctionCall(name.lower(), name, tuple(args))

    def string(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while True:
            end = self.text.find("'", self.pos)
            if end < 0:
                raise ExpressionError("a string literal is not closed")
            out.append(self.text[self.pos : end])
            if self.text.startswith("''", end):
                out.append("'")
                self.pos = end + 2
                continue
            self.pos = end + 1
            return "".join(out)

    def number(self) -> int | float:
        start = self.pos
        if self.text[self.pos] == "-":
            self.pos += 1
        while self.pos < len(self.text) and (self.text[self.pos].isdigit() or self.text[self.pos] == "."):
            self.pos += 1
        raw = self.text[start : self.pos]
        try:
            return float(raw) if "." in raw else int(raw)
        except ValueError:
            raise ExpressionError(f"'{raw}' is not a number") from None
