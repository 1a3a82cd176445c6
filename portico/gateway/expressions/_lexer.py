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
  | (?P<op>=>|==|!=|<=|>=|&&|\|\||\?\?|[-+*/%<>!?:.,()\[\]{};=])
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


def tokenize(src: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(src):
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
