"""The run-time library of compiled expressions: C#-like conversions, operators, string and
date methods, and member/indexer access on the gateway's objects."""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from portico.gateway.expressions._base import ExpressionError


def _null(what: str) -> ExpressionError:
    return ExpressionError(f"Object reference not set to an instance of an object ({what} is null).")


# --- runtime helpers ----------------------------------------------------------------------------
def to_text(v: Any) -> str:
    """C#'s ToString() of a value, as string concatenation and attribute values render it."""
    if v is None:
        return ""
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v) if not v.is_integer() else str(int(v))
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%m/%d/%Y %H:%M:%S")
    if isinstance(v, list | tuple):
        return "System.String[]"
    if isinstance(v, bytes):
        return "System.Byte[]"
    if hasattr(v, "expr_text"):
        return str(v.expr_text())
    return str(v)


def truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ExpressionError(f"Cannot implicitly convert type '{_type_name(v)}' to 'bool'.")


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "string[]"
    if isinstance(v, bytes):
        return "byte[]"
    return type(v).__name__


def to_number(v: Any, op: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ExpressionError(f"Operator '{op}' cannot be applied to an operand of type '{_type_name(v)}'.")
    return v


def equals(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool) and a is not None and b is not None:
        return False
    return bool(a == b)


def add(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        return to_text(a) + to_text(b)
    if a is None or b is None:
        return None
    return to_number(a, "+") + to_number(b, "+")


def divide(a: Any, b: Any) -> Any:
    a, b = to_number(a, "/"), to_number(b, "/")
    if b == 0:
        if isinstance(a, int) and isinstance(b, int):
            raise ExpressionError("Attempted to divide by zero.")
        return math.inf if a > 0 else -math.inf if a < 0 else math.nan
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


def modulo(a: Any, b: Any) -> Any:
    a, b = to_number(a, "%"), to_number(b, "%")
    if b == 0:
        raise ExpressionError("Attempted to divide by zero.")
    return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else int(math.fmod(a, b))


def comparison(op: str) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        if isinstance(a, str) or isinstance(b, str):
            raise ExpressionError(f"Operator '{op}' cannot be applied to operands of type 'string'.")
        if isinstance(a, datetime) and isinstance(b, datetime):
            x, y = a.timestamp(), b.timestamp()
        else:
            x, y = to_number(a, op), to_number(b, op)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]

    return f


_OBJECT_CASTS = {
    "authorization": "Authorization",
    "iresponse": "IResponse",
    "jobject": "JObject",
    "jarray": "JArray",
    "jtoken": "JToken",
    "xelement": "XElement",
    "xdocument": "XDocument",
    "xattribute": "XAttribute",
}


def cast(type_name: str, v: Any) -> Any:
    t = type_name.lower()
    if t in ("object", "var"):
        return v
    if t in _OBJECT_CASTS:
        # the gateway's objects (get-authorization-context's Authorization, send-request's IResponse,
        # JSON of Body.As<T>()) say what they are; a JToken is any JSON value
        if v is None or getattr(v, "expr_type", None) == _OBJECT_CASTS[t] or t == "jtoken":
            return v
        raise ExpressionError(f"Unable to cast object of type '{_type_name(v)}' to type '{type_name}'.")
    if t in ("string",):
        if v is None or isinstance(v, str):
            return v
        if hasattr(v, "expr_string_cast"):  # (string)element / (string)attribute: its Value
            return v.expr_string_cast()
        raise ExpressionError(f"Unable to cast object of type '{_type_name(v)}' to type 'string'.")
    if t in ("int", "int32", "long", "int64"):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ExpressionError(f"Unable to cast object of type '{_type_name(v)}' to type '{type_name}'.")
        return int(v)
    if t == "double":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ExpressionError(f"Unable to cast object of type '{_type_name(v)}' to type 'double'.")
        return float(v)
    if t in ("bool", "boolean"):
        if not isinstance(v, bool):
            raise ExpressionError(f"Unable to cast object of type '{_type_name(v)}' to type 'bool'.")
        return v
    raise ExpressionError(f"Unsupported cast to '{type_name}'.")


def _parse_int(s: Any) -> int:
    try:
        return int(str(s).strip())
    except ValueError:
        raise ExpressionError(f"Input string '{to_text(s)[:40]}' was not in a correct format.") from None


def _format(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise ExpressionError("string.Format needs a format string.")

    def rep(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if i >= len(args):
            raise ExpressionError("Index (zero based) must be less than the size of the argument list.")
        return to_text(args[i])

    return (
        re.sub(r"\{(\d+)(?::[^}]*)?\}", rep, fmt.replace("{{", "\x00").replace("}}", "\x01"))
        .replace("\x00", "{")
        .replace("\x01", "}")
    )


class GuidValue:
    def __init__(self) -> None:
        self.value = str(uuid.uuid4())

    def expr_text(self) -> str:
        return self.value


def _dt_format(v: datetime, fmt: str | None) -> str:
    v = v.astimezone(UTC)
    if fmt in (None, ""):
        return to_text(v)
    if fmt in ("o", "O"):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    if fmt in ("s",):
        return v.strftime("%Y-%m-%dT%H:%M:%S")
    if fmt in ("u",):
        return v.strftime("%Y-%m-%d %H:%M:%SZ")
    if fmt in ("r", "R"):
        return v.strftime("%a, %d %b %Y %H:%M:%S GMT")
    # custom formats: the common tokens only
    out = fmt
    for token, py in (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")):
        out = out.replace(token, py)
    return v.strftime(out)


STATICS: dict[str, dict[str, tuple[int, int, str, Callable[..., Any]]]] = {
    "String": {
        "IsNullOrEmpty": (1, 1, "bool", lambda s: s is None or s == ""),
        "IsNullOrWhiteSpace": (1, 1, "bool", lambda s: s is None or (isinstance(s, str) and s.strip() == "")),
        "Join": (
            2,
            64,
            "string",
            lambda sep, *xs: to_text(sep).join(
                to_text(x) for x in (xs[0] if len(xs) == 1 and isinstance(xs[0], list | tuple) else xs)
            ),
        ),
        "Concat": (1, 64, "string", lambda *xs: "".join(to_text(x) for x in xs)),
        "Format": (1, 64, "string", _format),
        "Empty": (-1, -1, "string", lambda: ""),
    },
    "Math": {
        "Min": (2, 2, "any", lambda a, b: min(to_number(a, "Min"), to_number(b, "Min"))),
        "Max": (2, 2, "any", lambda a, b: max(to_number(a, "Max"), to_number(b, "Max"))),
        "Abs": (1, 1, "any", lambda a: abs(to_number(a, "Abs"))),
        "Floor": (1, 1, "double", lambda a: float(math.floor(to_number(a, "Floor")))),
        "Ceiling": (1, 1, "double", lambda a: float(math.ceil(to_number(a, "Ceiling")))),
        "Round": (1, 1, "double", lambda a: float(round(to_number(a, "Round")))),
    },
    "DateTime": {
        "UtcNow": (-1, -1, "DateTime", lambda: datetime.now(UTC)),
        "Now": (-1, -1, "DateTime", lambda: datetime.now(UTC)),
    },
    "Guid": {"NewGuid": (0, 0, "Guid", GuidValue)},
    "Int": {"Parse": (1, 1, "int", _parse_int)},
    "Double": {
        "Parse": (
            1,
            1,
            "double",
            lambda s: float(_parse_int(s)) if str(s).strip().lstrip("-").isdigit() else _parse_float(s),
        )
    },
    "Bool": {"Parse": (1, 1, "bool", lambda s: _parse_bool(s))},
    "Convert": {
        "ToInt32": (
            1,
            1,
            "int",
            lambda s: _parse_int(s) if isinstance(s, str) else int(to_number(s, "ToInt32")),
        ),
        "ToInt64": (
            1,
            1,
            "long",
            lambda s: _parse_int(s) if isinstance(s, str) else int(to_number(s, "ToInt64")),
        ),
        "ToString": (1, 1, "string", to_text),
        "ToBoolean": (1, 1, "bool", lambda s: _parse_bool(s) if isinstance(s, str) else bool(s)),
        "ToBase64String": (1, 1, "string", lambda b: _to_base64(b)),
    },
    "StringComparison": {
        "Ordinal": (-1, -1, "any", lambda: "Ordinal"),
        "OrdinalIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "InvariantCultureIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "CurrentCultureIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "InvariantCulture": (-1, -1, "any", lambda: "Ordinal"),
    },
}


def _to_base64(b: Any) -> str:
    if not isinstance(b, bytes):
        raise ExpressionError(f"Convert.ToBase64String needs a byte[], not '{_type_name(b)}'.")
    return base64.b64encode(b).decode("ascii")


def _parse_float(s: Any) -> float:
    try:
        return float(str(s).strip())
    except ValueError:
        raise ExpressionError(f"Input string '{to_text(s)[:40]}' was not in a correct format.") from None


def _parse_bool(s: Any) -> bool:
    t = str(s).strip().lower()
    if t in ("true", "false"):
        return t == "true"
    raise ExpressionError(f"String '{to_text(s)[:40]}' was not recognized as a valid Boolean.")


def _ignore_case(args: list[Any]) -> tuple[list[Any], bool]:
    if args and args[-1] in ("Ordinal", "OrdinalIgnoreCase"):
        return args[:-1], args[-1] == "OrdinalIgnoreCase"
    if args and isinstance(args[-1], bool):  # StartsWith(x, ignoreCase) overloads
        return args[:-1], args[-1]
    return args, False


def _string_method(s: str, name: str, args: list[Any]) -> Any:
    if name in ("ToUpper", "ToUpperInvariant"):
        return s.upper()
    if name in ("ToLower", "ToLowerInvariant"):
        return s.lower()
    if name in ("Trim", "TrimStart", "TrimEnd"):
        chars = to_text(args[0]) if args else None
        return (
            s.strip(chars) if name == "Trim" else s.lstrip(chars) if name == "TrimStart" else s.rstrip(chars)
        )
    if name in ("StartsWith", "EndsWith", "Contains", "Equals", "IndexOf"):
        rest, ic = _ignore_case(list(args))
        if not rest or rest[0] is None:
            raise ExpressionError(f"Value cannot be null (argument of {name}).")
        a, b = (s.lower(), to_text(rest[0]).lower()) if ic else (s, to_text(rest[0]))
        if name == "StartsWith":
            return a.startswith(b)
        if name == "EndsWith":
            return a.endswith(b)
        if name == "Contains":
            return b in a
        if name == "Equals":
            return a == b
        return a.find(b)
    if name == "Substring":
        start = int(to_number(args[0], "Substring"))
        if start < 0 or start > len(s):
            raise ExpressionError("startIndex cannot be larger than length of string.")
        if len(args) == 2:
            n = int(to_number(args[1], "Substring"))
            if n < 0 or start + n > len(s):
                raise ExpressionError("Index and length must refer to a location within the string.")
            return s[start : start + n]
        return s[start:]
    if name == "Replace":
        if not args[0]:
            raise ExpressionError("String cannot be of zero length (Replace).")
        return s.replace(to_text(args[0]), to_text(args[1]))
    if name == "Split":
        seps = [to_text(a) for a in args if isinstance(a, str)] or [" "]
        if len(seps) == 1:
            return s.split(seps[0]) if seps[0] else [s]
        return [p for p in re.split("|".join(re.escape(x) for x in seps if x), s)]
    if name == "ToString":
        return s
    if name in ("PadLeft", "PadRight"):
        width = int(to_number(args[0], name))
        ch = to_text(args[1])[:1] if len(args) > 1 else " "
        return s.rjust(width, ch) if name == "PadLeft" else s.ljust(width, ch)
    raise ExpressionError(f"'string' does not contain a definition for '{name}'.")


def _generic_default(generic: str | None) -> Any:
    if generic in ("int", "long", "Int32", "Int64", "double"):
        return 0
    if generic in ("bool", "Boolean"):
        return False
    return None


def call_method(target: Any, name: str, args: list[Any], generic: str | None) -> Any:
    """Run a whitelisted method on a runtime value."""
    if target is None:
        raise _null(f"target of {name}()")
    if isinstance(target, str):
        return _string_method(target, name, args)
    if isinstance(target, bool):
        if name == "ToString":
            return to_text(target)
        if name == "Equals":
            return target == args[0]
    elif isinstance(target, int | float):
        if name == "ToString":
            return to_text(target) if not args else format(target, _num_format(to_text(args[0])))
        if name == "Equals":
            return equals(target, args[0])
    elif isinstance(target, list | tuple):
        if name == "Contains":
            return args[0] in target
        if name in ("First", "Last"):
            if not target:
                raise ExpressionError("Sequence contains no elements.")
            return target[0] if name == "First" else target[-1]
        if name in ("FirstOrDefault", "LastOrDefault"):
            return (target[0] if name == "FirstOrDefault" else target[-1]) if target else None
        if name == "ToString":
            return "System.String[]"
    elif isinstance(target, datetime):
        if name == "ToString":
            return _dt_format(target, to_text(args[0]) if args else None)
        unit = {"AddSeconds": "seconds", "AddMinutes": "minutes", "AddHours": "hours", "AddDays": "days"}.get(
            name
        )
        if unit:
            return target + timedelta(**{unit: float(to_number(args[0], name))})
    elif isinstance(target, GuidValue):
        if name == "ToString":
            return (
                target.value
                if not args or to_text(args[0]) in ("D", "d", "")
                else target.value.replace("-", "")
            )
    elif hasattr(target, "expr_call"):
        return target.expr_call(name, args, generic)
    raise ExpressionError(f"'{_type_name(target)}' does not contain a definition for '{name}'.")


def _num_format(fmt: str) -> str:
    if fmt.upper().startswith("D") and fmt[1:].isdigit():
        return f"0{fmt[1:]}d"
    if fmt.upper().startswith("F") and fmt[1:].isdigit():
        return f".{fmt[1:]}f"
    return ""


def get_member(target: Any, name: str) -> Any:
    if target is None:
        raise _null(f"target of .{name}")
    if isinstance(target, str):
        if name == "Length":
            return len(target)
    elif isinstance(target, list | tuple | bytes):
        if name in ("Length", "Count"):
            return len(target)
    elif isinstance(target, datetime):
        if name in ("Year", "Month", "Day", "Hour", "Minute", "Second"):
            return getattr(target.astimezone(UTC), name.lower())
        if name == "Ticks":
            return int((target.timestamp() + 62135596800) * 10_000_000)
    elif isinstance(target, float) and name in ("TotalSeconds", "TotalMilliseconds"):
        return target if name == "TotalSeconds" else target * 1000.0
    elif hasattr(target, "expr_member"):
        return target.expr_member(name)
    raise ExpressionError(f"'{_type_name(target)}' does not contain a definition for '{name}'.")


def get_index(target: Any, key: Any) -> Any:
    if target is None:
        raise _null("indexed value")
    if isinstance(target, str | list | tuple | bytes):
        i = to_number(key, "[]")
        if not isinstance(i, int) or not 0 <= i < len(target):
            raise ExpressionError("Index was outside the bounds of the array.")
        return target[i]
    if hasattr(target, "expr_index"):
        return target.expr_index(key)
    raise ExpressionError(f"Cannot apply indexing to an expression of type '{_type_name(target)}'.")


def set_index(target: Any, key: Any, value: Any) -> None:
    """`x[key] = value;` in a statement block (JSON objects and arrays only)."""
    if target is None:
        raise _null("indexed value")
    if hasattr(target, "expr_set_index"):
        target.expr_set_index(key, value)
        return
    raise ExpressionError(f"Property or indexer of type '{_type_name(target)}' cannot be assigned to.")
