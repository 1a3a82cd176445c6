"""Policy documents in API Management's `rawxml` format: XML whose policy expressions are written as
C# rather than XML-encoded, so `value="@(context.Variables.GetValueOrDefault<string>("a"))"` is
allowed, which no XML parser reads. Policies are stored in the `xml` format; `encode` turns a rawxml
document into it on write, `decode` turns a stored document back for `GET ...?format=rawxml`
(what APIOps extracts and publishes).

An expression is recognised where API Management allows one: a whole attribute value or the whole
text of an element, starting with `@(` (single statement) or `@{` (block). It ends at its matching
bracket; brackets inside C# string and character literals and comments do not count.
"""

from __future__ import annotations

import html
import re

from portico.arm.errors import invalid_field

# an `&` that does not start an entity reference: escaped (one that does is kept, so a document
# already encoded passes through unchanged)
_BARE_AMPERSAND = re.compile(r"&(?!(?:quot|lt|gt|amp|apos|#\d+|#x[0-9A-Fa-f]+);)")
_CLOSING = {"(": ")", "{": "}", "[": "]"}
# a stored expression: a whole attribute value ("..." or '...') or a whole element text
_STORED_ATTRIBUTE = re.compile(r"""(=\s*)(?:"(@[({][^"]*)"|'(@[({][^']*)')""")
_STORED_TEXT = re.compile(r">(\s*@[({][^<]*)<")


def encode(document: str, field: str = "properties.value") -> str:
    """The rawxml `document` as well-formed XML: each expression's `<`, `>`, `"` and bare `&`
    encoded. Raises a 400 naming `field` for an expression whose brackets never close."""
    out: list[str] = []
    i = 0
    n = len(document)
    while True:
        at = document.find("@", i)
        if at < 0 or at + 1 >= n:
            out.append(document[i:])
            return "".join(out)
        if document[at + 1] not in "({" or not _starts_value(document, at):
            out.append(document[i : at + 1])
            i = at + 1
            continue
        end = _expression_end(document, at + 1)
        if end is None:
            line = document.count("\n", 0, at) + 1
            raise invalid_field(field, f"the policy expression on line {line} has no closing bracket")
        out.append(document[i:at])
        expression = document[at:end]
        expression = _BARE_AMPERSAND.sub("&amp;", expression)
        out.append(expression.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))
        i = end


def decode(document: str) -> str:
    """A stored (well-formed) policy document in the rawxml format: expressions as plain C#."""
    document = _STORED_ATTRIBUTE.sub(_raw_attribute, document)
    return _STORED_TEXT.sub(lambda m: ">" + html.unescape(m.group(1)) + "<", document)


def _raw_attribute(m: re.Match[str]) -> str:
    if m.group(2) is not None:
        return f'{m.group(1)}"{html.unescape(m.group(2))}"'
    return f"{m.group(1)}'{html.unescape(m.group(3))}'"


def _starts_value(document: str, at: int) -> bool:
    """Whether `@` at `at` starts an attribute value (after `="`) or an element's text (after `>`)."""
    k = at - 1
    while k >= 0 and document[k] in " \t\r\n":
        k -= 1
    if k < 0:
        return False
    if document[k] == ">":
        return True
    if document[k] not in "\"'" or k != at - 1:
        return False
    k -= 1
    while k >= 0 and document[k] in " \t\r\n":
        k -= 1
    return k >= 0 and document[k] == "="


def _expression_end(text: str, start: int) -> int | None:
    """The index after the bracket matching `text[start]`, skipping C# literals and comments."""
    stack = [_CLOSING[text[start]]]
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            verbatim = text[i - 1] == "@" or text[i - 2 : i] in ("@$", "$@")
            i = _string_end(text, i + 1, verbatim)
        elif ch == "'":
            i = _string_end(text, i + 1, False, quote="'")
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif ch in _CLOSING:
            stack.append(_CLOSING[ch])
            i += 1
        elif ch in ")}]":
            if ch != stack[-1]:
                return None
            stack.pop()
            i += 1
            if not stack:
                return i
        else:
            i += 1
    return None


def _string_end(text: str, i: int, verbatim: bool, quote: str = '"') -> int:
    """The index after the literal whose body starts at `i`."""
    n = len(text)
    while i < n:
        ch = text[i]
        if verbatim:
            if ch == quote:
                if text.startswith(quote * 2, i):
                    i += 2
                    continue
                return i + 1
        elif ch == "\\":
            i += 2
            continue
        elif ch == quote:
            return i + 1
        i += 1
    return n
