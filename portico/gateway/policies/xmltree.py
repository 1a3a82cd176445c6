"""Policy XML → a small element tree that remembers line and column (for error messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.parsers import expat
from xml.sax.saxutils import escape

from portico.gateway.expressions import ExpressionError, Value
from portico.names import fold_name

NAMED_VALUE = re.compile(r"\{\{\s*([A-Za-z0-9._-]+)\s*\}\}")
# An HTTP field name is a token (RFC 9110, tchar); bounded, as request header sizes are.
HEADER_NAME_MAX = 256
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class PolicyDocumentError(Exception):
    """An invalid policy document; `str()` names the element, line and column."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        if node is not None:
            message = f"Error in element '{node.tag}' on line {node.line}, column {node.col}: {message}"
        super().__init__(message)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    line: int
    col: int
    children: list[Node] = field(default_factory=list)
    text: str = ""

    # --- attribute helpers (validation happens while compiling) -------------------------------
    def check_attrs(self, allowed: set[str] | frozenset[str]) -> None:
        for name in self.attrs:
            if name not in allowed:
                listing = ", ".join(sorted(allowed)) or "none"
                raise PolicyDocumentError(f"attribute '{name}' is not allowed (allowed: {listing}).", self)

    def check_children(self, allowed: set[str] | frozenset[str]) -> None:
        for child in self.children:
            if child.tag not in allowed:
                listing = ", ".join(sorted(allowed)) or "none"
                raise PolicyDocumentError(
                    f"element <{child.tag}> is not allowed inside <{self.tag}> (allowed: {listing}).", child
                )

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    def require(self, name: str) -> str:
        v = self.attrs.get(name)
        if v is None or v == "":
            raise PolicyDocumentError(f"attribute '{name}' is required.", self)
        return v

    def check_header_name(self, name: str, where: str) -> str:
        """`name` (what `where` holds, e.g. "attribute 'name'") if it is a header name: an HTTP token
        of at most HEADER_NAME_MAX characters. A named value reference stands for a token until it
        is substituted (the gateway checks the name again then)."""
        if len(name) > HEADER_NAME_MAX or not _TOKEN.fullmatch(NAMED_VALUE.sub("x", name)):
            shown = name if len(name) <= 60 else name[:60] + "..."
            raise PolicyDocumentError(
                f"{where} must be a header name (an HTTP token of at most {HEADER_NAME_MAX} characters),"
                f" got '{shown}' ({len(name)} characters).",
                self,
            )
        return name

    def header_name(self, name: str, *, required: bool = False) -> str | None:
        """The header name in attribute `name` (None when absent and not required)."""
        raw = self.require(name) if required else self.attrs.get(name)
        return None if raw is None else self.check_header_name(raw, f"attribute '{name}'")

    def value(self, name: str, required: bool = False, default: str | None = None) -> Value | None:
        raw = self.require(name) if required else self.attrs.get(name, default)
        if raw is None:
            return None
        return self.compile_value(raw, f"attribute '{name}'")

    def compile_value(self, raw: str, where: str) -> Value:
        try:
            return Value(raw)
        except ExpressionError as exc:
            raise PolicyDocumentError(f"invalid expression in {where}: {exc}.", self) from None

    def text_value(self) -> Value:
        return self.compile_value(self.text.strip(), "the element text")

    def integer(
        self, name: str, *, required: bool = False, default: int | None = None, minimum: int = 0
    ) -> int | None:
        raw = self.attrs.get(name)
        if raw is None or raw == "":
            if required:
                raise PolicyDocumentError(f"attribute '{name}' is required.", self)
            return default
        if NAMED_VALUE.search(raw):  # validated only once named values are substituted
            return default if default is not None else minimum
        try:
            n = int(raw.strip())
        except ValueError:
            raise PolicyDocumentError(
                f"attribute '{name}' must be an integer, got '{raw[:40]}'.", self
            ) from None
        if n < minimum:
            raise PolicyDocumentError(f"attribute '{name}' must be at least {minimum}, got {n}.", self)
        return n

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.attrs.get(name)
        if raw is None or NAMED_VALUE.search(raw):
            return default
        low = raw.strip().lower()
        if low not in ("true", "false"):
            raise PolicyDocumentError(
                f"attribute '{name}' must be 'true' or 'false', got '{raw[:40]}'.", self
            )
        return low == "true"

    def choice(self, name: str, options: tuple[str, ...], default: str | None) -> str | None:
        raw = self.attrs.get(name)
        if raw is None:
            return default
        if NAMED_VALUE.search(raw):
            return default
        for o in options:
            if raw.strip().lower() == o.lower():
                return o
        raise PolicyDocumentError(
            f"attribute '{name}' has invalid value '{raw[:40]}' (allowed: {', '.join(options)}).", self
        )


MAX_DEPTH = 64
MAX_NODES = 20_000


def is_template_body(tag: str, attrs: dict[str, str]) -> bool:
    """`<set-body template="...">`: its content is template text, markup included."""
    return tag == "set-body" and "template" in attrs


def parse(xml: str) -> Node:
    """Parse a policy document; DTDs and entity declarations are refused (no XXE, no bombs).
    The content of a templated set-body (a SOAP envelope in a Liquid template...) is kept as its
    text, elements written back as markup."""
    parser = expat.ParserCreate()
    root: Node | None = None
    stack: list[Node] = []
    count = 0
    raw: Node | None = None  # the templated set-body being read
    raw_depth = 0

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal root, count, raw, raw_depth
        count += 1
        if count > MAX_NODES or len(stack) + raw_depth >= MAX_DEPTH:
            raise PolicyDocumentError("policy document is too large or too deeply nested.")
        if raw is not None:
            raw_depth += 1
            raw.text += (
                "<" + tag + "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in attrs.items())
            )
            raw.text += ">"
            return
        node = Node(tag, dict(attrs), parser.CurrentLineNumber, parser.CurrentColumnNumber + 1)
        if is_template_body(tag, attrs):
            raw = node
        if stack:
            stack[-1].children.append(node)
        elif root is None:
            root = node
        stack.append(node)

    def end(tag: str) -> None:
        nonlocal raw, raw_depth
        if raw is not None and raw_depth:
            raw_depth -= 1
            raw.text += f"</{tag}>"
            return
        raw = None
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    def refuse(*_args: object) -> None:
        raise PolicyDocumentError("DOCTYPE and entity declarations are not allowed in policy documents.")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        raise PolicyDocumentError(
            f"Policy document is not well-formed XML: {expat.ErrorString(exc.code)} on line {exc.lineno}, column {exc.offset + 1}."
        ) from None
    if root is None:
        raise PolicyDocumentError("Policy document is empty.")
    return root


def substitute_named_values(xml: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Replace `{{name}}` (by display name or id, case-insensitive) with the XML-escaped value.

    Returns the new text and the names that had no value (left in place). The content of a
    Liquid set-body is left alone: `{{body.x}}` there is Liquid's, not a named value."""
    missing: list[str] = []

    def rep(m: re.Match[str]) -> str:
        v = values.get(fold_name(m.group(1)))
        if v is None:
            missing.append(m.group(1))
            return m.group(0)
        return escape(v, {'"': "&quot;"})

    parts = []
    at = 0
    for m in _LIQUID_BODY.finditer(xml):
        parts.append(NAMED_VALUE.sub(rep, xml[at : m.start(2)]))
        parts.append(m.group(2))
        at = m.end(2)
    parts.append(NAMED_VALUE.sub(rep, xml[at:]))
    return "".join(parts), missing


_LIQUID_BODY = re.compile(
    r"(<set-body\b[^>]*\btemplate\s*=\s*[\"']liquid[\"'][^>]*>)(.*?)(?=</set-body>)",
    re.DOTALL | re.IGNORECASE,
)


INCLUDE_FRAGMENT = re.compile(
    r"<include-fragment\s+fragment-id\s*=\s*(?:\"([^\"]*)\"|'([^']*)')\s*/>", re.IGNORECASE
)
_FRAGMENT_BODY = re.compile(
    r"^\s*<fragment(?:\s[^>]*)?>(.*)</fragment>\s*$|^\s*<fragment\s*/>\s*$", re.DOTALL
)
MAX_FRAGMENT_DEPTH = 8


def inline_fragments(xml: str, fragments: dict[str, str]) -> str:
    """Replace each `<include-fragment fragment-id="x"/>` with the policies of fragment `x`
    (folded id → its `<fragment>` document), fragments within fragments too. An unknown
    fragment, or one nested deeper than MAX_FRAGMENT_DEPTH (a cycle), is left in place, where
    compiling the document reports it."""
    for _ in range(MAX_FRAGMENT_DEPTH):
        changed = False

        def rep(m: re.Match[str]) -> str:
            nonlocal changed
            doc = fragments.get(fold_name(m.group(1) if m.group(1) is not None else m.group(2)))
            body = _FRAGMENT_BODY.match(doc) if doc is not None else None
            if body is None:
                return m.group(0)
            changed = True
            return body.group(1) or ""

        xml = INCLUDE_FRAGMENT.sub(rep, xml)
        if not changed:
            break
    return xml
