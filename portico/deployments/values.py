"""Pure value helpers of the template functions: argument checks, conversions, comparisons, strings."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from portico.deployments.expressions import ExpressionError

_B32 = "abcdefghijklmnopqrstuvwxyz234567"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def arity(args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
        raise ExpressionError(f"expects {want} arguments, got {len(args)}")


def as_str(value: Any, what: str = "argument") -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"the {what} must be a string, not a {type_name(value)}")
    return value


def as_int(value: Any, what: str = "argument") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExpressionError(f"the {what} must be an integer, not a {type_name(value)}")
    return value


def to_string(value: Any) -> str:
    """ARM's `string()`: booleans as True/False, objects and arrays as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def unique_string(*values: str) -> str:
    """13 lowercase base32 characters, deterministic for the inputs (as ARM's, not equal to its values)."""
    digest = hashlib.sha256("-".join(values).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    return "".join(_B32[(number >> (5 * i)) & 31] for i in range(13))


def equals(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equals(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b if not isinstance(a, (int, float)) else a == b


def contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return to_string(item) in container
    if isinstance(container, list):
        return any(equals(x, item) for x in container)
    if isinstance(container, dict):
        key = as_str(item, "key").lower()
        return any(k.lower() == key for k in container)
    raise ExpressionError(f"contains() needs a string, array or object, not a {type_name(container)}")


def length(value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ExpressionError(f"length() needs a string, array or object, not a {type_name(value)}")


def empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    raise ExpressionError(f"empty() needs a string, array or object, not a {type_name(value)}")


def union(args: list[Any]) -> Any:
    if all(isinstance(a, dict) for a in args):
        out: dict[str, Any] = {}
        for a in args:
            for k, v in a.items():
                out[k] = union([out[k], v]) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
        return out
    if all(isinstance(a, list) for a in args):
        result: list[Any] = []
        for a in args:
            for x in a:
                if not any(equals(x, y) for y in result):
                    result.append(x)
        return result
    raise ExpressionError("union() needs all objects or all arrays")


def intersection(args: list[Any]) -> Any:
    first = args[0]
    if isinstance(first, dict):
        return {
            k: v for k, v in first.items() if all(isinstance(a, dict) and equals(a.get(k), v) for a in args)
        }
    if isinstance(first, list):
        return [x for x in first if all(isinstance(a, list) and any(equals(x, y) for y in a) for a in args)]
    raise ExpressionError("intersection() needs all objects or all arrays")


def concat(args: list[Any]) -> Any:
    if args and isinstance(args[0], list):
        out: list[Any] = []
        for a in args:
            out.extend(a if isinstance(a, list) else [a])
        return out
    return "".join(to_string(a) for a in args)


FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:,(-?\d+))?(?::([^}]*))?\}")


def format_string(args: list[Any]) -> str:
    arity(args, 1, 999)
    template = as_str(args[0], "format string")
    values = args[1:]

    def item(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        i = int(m.group(1))
        if i >= len(values):
            raise ExpressionError(
                f"format(): the format string uses {{{i}}} but only {len(values)} values follow"
            )
        value, spec = values[i], m.group(3)
        text = to_string(value)
        if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
            kind, digits = spec[0].upper(), spec[1:]
            if kind == "D":
                text = str(int(value)).zfill(int(digits or 0))
            elif kind in "NF":
                places = int(digits) if digits else 2
                text = f"{value:,.{places}f}" if kind == "N" else f"{value:.{places}f}"
            elif kind == "X":
                text = format(int(value), "X" if spec[0] == "X" else "x").zfill(int(digits or 0))
        if m.group(2):
            width = int(m.group(2))
            text = text.rjust(width) if width > 0 else text.ljust(-width)
        return text

    return FORMAT_ITEM.sub(item, template)


def split_type(resource_type: str) -> tuple[str, list[str]]:
    parts = resource_type.strip("/").split("/")
    if len(parts) < 2 or not parts[0]:
        raise ExpressionError(f"'{resource_type}' is not a resource type (Namespace/type)")
    return parts[0], parts[1:]


def provider_path(resource_type: str, names: list[str]) -> str:
    """`Microsoft.X/a/b` with names [n1, n2] → `providers/Microsoft.X/a/n1/b/n2`."""
    namespace, types = split_type(resource_type)
    flat: list[str] = []
    for n in names:
        flat.extend(str(n).split("/"))
    if len(flat) != len(types):
        raise ExpressionError(
            f"the resource type '{resource_type}' needs {len(types)} name segment(s), got {len(flat)}"
        )
    out = ["providers", namespace]
    for t, n in zip(types, flat, strict=True):
        out += [t, n]
    return "/".join(out)
