"""API Management's Liquid dialect on python-liquid, shared by `<set-body template="liquid">` in
API policies (portico/gateway/policies/liquid_body.py) and in GraphQL resolvers
(portico/gateway/gql/liquid.py): bounded rendering, PascalCase filter names (`Downcase`,
`AtLeast`...), C#-style `Date` formats, `XmlEscape`/`JsonEscape`, and `{% JSONArrayFor x in list %}`
(items separated by commas; a single item counts as a list of one, as an XML element that may repeat
arrives as one object when it occurs once)."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import orjson
from liquid import BoundTemplate, Environment, Undefined
from liquid.exceptions import LiquidError

from portico.gateway.expressions import ExpressionError

_JSON_ARRAY_FOR = re.compile(r"\{%(-?)\s*JSONArrayFor\s+(\w+)\s+in\s+(.+?)\s*(-?)%\}", re.DOTALL)
_END_JSON_ARRAY_FOR = re.compile(r"\{%(-?)\s*endJSONArrayFor\s*(-?)%\}")
# C# custom date format specifiers, longest first, and their strftime equivalents
_CS_DATE = re.compile(r"yyyy|yy|MMMM|MMM|MM|M|dddd|ddd|dd|d|HH|H|hh|h|mm|m|ss|s|fff|ff|f|tt|zzz|'[^']*'|\\.")
_CS_MAP = {
    "yyyy": "%Y",
    "yy": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "dddd": "%A",
    "ddd": "%a",
    "dd": "%d",
    "HH": "%H",
    "hh": "%I",
    "mm": "%M",
    "ss": "%S",
    "tt": "%p",
    "zzz": "%:z",
}


class _Environment(Environment):
    # bounds on what one template may cost a request
    loop_iteration_limit = 100_000
    output_stream_limit = 4 * 1024 * 1024
    local_namespace_limit = 1024 * 1024
    context_depth_limit = 30


def _as_array(value: Any) -> list[Any]:
    if value is None or isinstance(value, Undefined):
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _xml_escape(value: Any) -> str:
    return xml_escape(_text(value), {'"': "&quot;", "'": "&apos;"})


def _json_escape(value: Any) -> str:
    """The value as the inside of a JSON string (no surrounding quotes)."""
    return orjson.dumps(_text(value)).decode()[1:-1]


def to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if m := re.fullmatch(r"/Date\((-?\d+)\)/", text):
        return datetime.fromtimestamp(int(m.group(1)) / 1000, UTC)
    if text.lower() == "now":
        return datetime.now(UTC)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def cs_date_format(when: datetime, fmt: str) -> str:
    """A C# custom date format (`yyyy-MM-ddTHH:mm:ss`), as API Management's Liquid `Date` uses."""

    def one(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok.startswith("'"):
            return tok[1:-1]
        if tok.startswith("\\"):
            return tok[1:]
        if tok in ("M", "d", "H", "h", "m", "s"):
            n = {"M": when.month, "d": when.day, "H": when.hour, "m": when.minute, "s": when.second}.get(tok)
            return str(n if n is not None else (when.hour % 12 or 12))
        if tok in ("f", "ff", "fff"):
            return f"{when.microsecond:06d}"[: len(tok)]
        if tok == "zzz" and when.tzinfo is None:
            return "+00:00"
        return when.strftime(_CS_MAP[tok])

    return _CS_DATE.sub(one, fmt)


def _date(value: Any, fmt: Any = None) -> Any:
    when = to_datetime(value)
    if when is None:
        return value
    if not fmt:
        return when.strftime("%m/%d/%Y %H:%M:%S")
    return cs_date_format(when, str(fmt))


def _currency(value: Any, _culture: Any = None) -> Any:
    """.NET's `{0:C}` in the en-US culture (API Management's): `$1,234.50`, `-$3.00`."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return value
    return f"{'-' if n < 0 else ''}${abs(n):,.2f}"


def _environment() -> Environment:
    env = _Environment()
    for name, fn in list(env.filters.items()):
        env.filters["".join(part.capitalize() for part in name.split("_"))] = fn
    env.filters["H"] = env.filters["escape"]
    env.filters["TruncateWords"] = env.filters["truncatewords"]
    env.filters["Date"] = _date
    env.filters["Currency"] = _currency
    env.filters["XmlEscape"] = _xml_escape
    env.filters["JsonEscape"] = _json_escape
    env.filters["jsonarrayfor_items"] = _as_array
    return env


ENV = _environment()


def translate(source: str) -> str:
    """API Management's Liquid dialect → standard Liquid."""
    counter = itertools.count(1)

    def open_loop(m: re.Match[str]) -> str:
        var = f"jsonarrayfor_{next(counter)}"
        return (
            f"{{%{m.group(1)} assign {var} = {m.group(3)} | jsonarrayfor_items %}}"
            f"{{% for {m.group(2)} in {var} {m.group(4)}%}}"
        )

    out = _JSON_ARRAY_FOR.sub(open_loop, source)
    return _END_JSON_ARRAY_FOR.sub(
        lambda m: f"{{%{m.group(1)} unless forloop.last %}},{{% endunless %}}{{% endfor {m.group(2)}%}}", out
    )


class TemplateError(ValueError):
    """The template does not compile (the caller names the policy element)."""


def compile_template(source: str) -> BoundTemplate:
    try:
        template = ENV.from_string(translate(source))
        unknown = sorted({f for f in template.filter_names() if f not in ENV.filters})
    except LiquidError as exc:
        raise TemplateError(f"invalid Liquid template: {str(exc).splitlines()[0]}.") from None
    if unknown:  # found when the policy is saved rather than when a request renders it
        raise TemplateError(f"unknown Liquid filter(s): {', '.join(unknown)[:200]}.")
    return template


def render(template: BoundTemplate, **scope: Any) -> str:
    try:
        return template.render(**scope)
    except LiquidError as exc:
        raise ExpressionError(f"the Liquid template failed: {str(exc).splitlines()[0]}") from None


__all__ = ["ENV", "TemplateError", "compile_template", "cs_date_format", "render", "to_datetime", "translate"]
