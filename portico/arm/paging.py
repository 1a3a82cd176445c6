"""Collection paging (`$top`, `$skip`, absolute `nextLink`) and the OData `$filter` subset."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from portico.arm.errors import ArmError

MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_INT = 2**31 - 1  # larger $skip/$top values overflow the databases' integers


@dataclass(frozen=True)
class Page:
    top: int
    skip: int
    filter: FilterExpr | None


def parse_page(top: str | None, skip: str | None, filt: str | None) -> Page:
    def as_int(name: str, raw: str | None, default: int, minimum: int) -> int:
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ArmError(
                400, "ValidationError", f"'{name}' must be an integer, got '{raw[:20]}'.", target=name
            ) from None
        if value < minimum:
            raise ArmError(400, "ValidationError", f"'{name}' must be at least {minimum}.", target=name)
        if value > MAX_INT:
            raise ArmError(400, "ValidationError", f"'{name}' must be at most {MAX_INT}.", target=name)
        return value

    return Page(
        top=min(as_int("$top", top, DEFAULT_PAGE, 1), MAX_PAGE),
        skip=as_int("$skip", skip, 0, 0),
        filter=parse_filter(filt) if filt else None,
    )


def next_link(base_url: str, query: dict[str, str], page: Page, returned: int, has_more: bool) -> str | None:
    if not has_more:
        return None
    params = {k: v for k, v in query.items() if k not in ("$skip", "$top")}
    params["$top"] = str(page.top)
    params["$skip"] = str(page.skip + returned)
    return f"{base_url}?{urlencode(params)}"


# --- $filter ---------------------------------------------------------------------------------------
# Grammar (a documented subset of OData as API Management uses it):
#   expr   := term ( ("and" | "or") term )*
#   term   := "not"? ( "(" expr ")" | cmp | func )
#   cmp    := field ("eq"|"ne"|"gt"|"ge"|"lt"|"le") literal
#   func   := ("contains"|"startswith"|"endswith") "(" field "," literal ")"
#   field  := name | displayName | properties/<x> | <x>
#   literal:= 'string' (quote doubled to escape) | number | true | false | null

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<punc>[(),])|(?P<word>[A-Za-z_][\w./]*))"
)

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class FilterExpr:
    text: str
    predicate: Predicate


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise _filter_error(f"unexpected character at position {pos}: '{text[pos : pos + 10]}'")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _filter_error(message: str) -> ArmError:
    return ArmError(400, "InvalidFilter", f"Invalid $filter: {message}.", target="$filter")


def _field_getter(name: str) -> Callable[[dict[str, Any]], Any]:
    path = name.split("/")
    if path[0] == "properties":
        path = path[1:]

    def get(entity: dict[str, Any]) -> Any:
        if path == ["name"]:
            return entity.get("name")
        cur: Any = entity.get("properties", {})
        for part in path:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(part)
        return cur

    return get


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _filter_error("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok[1] != value:
            raise _filter_error(f"expected '{value}' but found '{tok[1]}'")

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "word" and value in ("true", "false"):
            return value == "true"
        if kind == "word" and value == "null":
            return None
        raise _filter_error(f"expected a literal but found '{value}'")

    def expr(self) -> Predicate:
        left = self.term()
        while (tok := self.peek()) is not None and tok[0] == "word" and tok[1].lower() in ("and", "or"):
            self.take()
            right = self.term()
            if tok[1].lower() == "and":
                left = (lambda a, b: lambda e: a(e) and b(e))(left, right)
            else:
                left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
        return left

    def term(self) -> Predicate:
        tok = self.take()
        if tok[0] == "word" and tok[1].lower() == "not":
            inner = self.term()
            return lambda e: not inner(e)
        if tok[1] == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok[0] != "word":
            raise _filter_error(f"expected a field or function but found '{tok[1]}'")
        word = tok[1]
        low = word.lower()
        if low in ("contains", "startswith", "endswith") and (nxt := self.peek()) and nxt[1] == "(":
            self.take()
            field = self.take()
            if field[0] != "word":
                raise _filter_error(f"{word}() needs a field name first")
            self.expect(",")
            needle = self.literal()
            self.expect(")")
            if not isinstance(needle, str):
                raise _filter_error(f"{word}() needs a string literal")
            get = _field_getter(field[1])
            needle_l = needle.lower()
            ops: dict[str, Callable[[str, str], bool]] = {
                "contains": lambda h, n: n in h,
                "startswith": lambda h, n: h.startswith(n),
                "endswith": lambda h, n: h.endswith(n),
            }
            op = ops[low]
            return lambda e: isinstance(v := get(e), str) and op(v.lower(), needle_l)
        op_tok = self.take()
        cmp = op_tok[1].lower()
        if cmp not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise _filter_error(
                f"unsupported operator '{op_tok[1]}' (use eq, ne, gt, ge, lt, le, contains, startswith, endswith)"
            )
        value = self.literal()
        get = _field_getter(word)

        def compare(e: dict[str, Any]) -> bool:
            v = get(e)
            a, b = (v.lower(), value.lower()) if isinstance(v, str) and isinstance(value, str) else (v, value)
            if cmp == "eq":
                return bool(a == b)
            if cmp == "ne":
                return bool(a != b)
            if a is None or b is None:
                return False
            try:
                return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[cmp])
            except TypeError:
                return False

        return compare


def parse_filter(text: str) -> FilterExpr:
    if len(text) > 2000:
        raise _filter_error("expression longer than 2000 characters")
    parser = _Parser(text)
    predicate = parser.expr()
    if parser.peek() is not None:
        raise _filter_error(f"unexpected '{parser.peek()[1]}'")  # type: ignore[index]
    return FilterExpr(text=text, predicate=predicate)
