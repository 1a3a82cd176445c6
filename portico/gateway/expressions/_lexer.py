"""Tokens of expression source text."""

from __future__ import annotations

import re
from typing import Any

from portico.gateway.expressions._base import ExpressionError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d+|\d+)(?P<suffix>[LlMmDdFf]?)
  | (?P<vstr>@"(?:[^"]|"")*")
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\\n]|\\.)')
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>=>|==|!=|<=|>=|&&|\|\||\?\?|\?\.(?!\d)|[-+*/%<>!?:.,()\[\]{};=])
    """,
    re.VERBOSE,
)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16))
            if m.group(1)[0] == "u" and len(m.group(1)) == 5
            else _ESC.get(m.group(1), m.group(1))
        ),
        body,
    )


class Tok:
    __slots__ = ("kind", "pos", "value")

    def __init__(self, kind: str, value: Any, pos: int) -> None:
        self.kind, self.value, self.pos = kind, value, pos

    def __repr__(self) -> str:
        return f"{self.kind}:{self.value!r}"


def _interpolated(src: str, start: int) -> tuple[list[tuple[bool, str]], int]:
    """C#'s `$"text {expression} text"` from `start` (at the `$`): its parts, (is an expression,
    text), and the position after the closing quote. `{{` and `}}` are literal braces."""
    parts: list[tuple[bool, str]] = []
    text: list[str] = []
    i = start + 2
    while i < len(src):
        c = src[i]
        if c == '"':
            if text:
                parts.append((False, "".join(text)))
            return parts, i + 1
        if c == "\\" and i + 1 < len(src):
            text.append(_unescape(src[i : i + 2]))
            i += 2
        elif src.startswith("{{", i) or src.startswith("}}", i):
            text.append(c)
            i += 2
        elif c == "{":
            if text:
                parts.append((False, "".join(text)))
                text = []
            i, hole = _hole(src, i + 1)
            parts.append((True, hole))
        elif c == "}":
            raise ExpressionError(f"unexpected '}}' in an interpolated string at position {i + 1}")
        else:
            text.append(c)
            i += 1
    raise ExpressionError(f"unterminated interpolated string at position {start + 1}")


def _hole(src: str, i: int) -> tuple[int, str]:
    """The expression of a `{...}` hole starting at `i`: (position after its `}`, its text)."""
    begin, depth = i, 0
    while i < len(src):
        c = src[i]
        if c == '"':
            m = _TOKEN.match(src, i)
            if m is None or not m.group("str"):
                break
            i = m.end()
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                if c != "}":
                    break
                expr = src[begin:i]
                if not expr.strip():
                    raise ExpressionError(f"empty hole in an interpolated string at position {begin}")
                return i + 1, expr
            depth -= 1
        elif c == ":" and depth == 0:
            raise ExpressionError(
                f"format specifiers in interpolated strings are not supported (position {i + 1})"
            )
        i += 1
    raise ExpressionError(f"unterminated interpolated string hole at position {begin}")


def tokenize(src: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(src):
        if src.startswith('$"', i):
            parts, end = _interpolated(src, i)
            out.append(Tok("interp", parts, i))
            i = end
            continue
        m = _TOKEN.match(src, i)
        if not m:
            raise ExpressionError(f"unexpected character {src[i]!r} at position {i + 1}")
        kind = m.lastgroup
        if m.group("ws"):
            pass
        elif m.group("num") is not None:
            text = m.group("num")
            out.append(
                Tok(
                    "num",
                    float(text) if "." in text or m.group("suffix").lower() in ("d", "f", "m") else int(text),
                    i,
                )
            )
        elif m.group("vstr"):
            out.append(Tok("str", m.group("vstr")[2:-1].replace('""', '"'), i))
        elif m.group("str"):
            out.append(Tok("str", _unescape(m.group("str")[1:-1]), i))
        elif m.group("chr"):
            out.append(Tok("str", _unescape(m.group("chr")[1:-1]), i))
        elif m.group("id"):
            out.append(Tok("id", m.group("id"), i))
        else:
            assert kind is not None
            out.append(Tok("op", m.group("op"), i))
        i = m.end()
    out.append(Tok("eof", None, len(src)))
    return out
