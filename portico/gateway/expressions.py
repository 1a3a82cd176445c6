"""Policy expressions: a small, safe interpreter for the C#-like `@(...)` and `@{...}` of API Management.

Nothing here uses Python's `eval`/`exec`, attribute introspection or imports: source text is
tokenised, parsed into a tree and compiled into closures that can only reach the members listed
in `MEMBERS` / `METHODS` / `STATICS` below. Unknown members are rejected when the policy is saved
(400 pointing at the expression), and evaluation errors at request time fail the request through
the policy's on-error section instead of escaping.

Supported (documented in docs/gateway.md):
- literals: "strings" (C# escapes), @"verbatim", 'c' chars, integers, decimals, true, false, null
- operators: `?:`, `??`, `||`, `&&`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `%`,
  unary `!` and `-`, casts `(string)x`, `(int)x`, `(bool)x`, `(long)x`, `(double)x`
- member access and indexers on `context` (Request, Response, Subscription, User, Product, Api,
  Operation, Variables, LastError, Deployment, RequestId, Timestamp, Elapsed), string methods,
  `GetValueOrDefault<T>(name[, default])`, `ContainsKey`, and a few statics (`string.IsNullOrEmpty`,
  `string.Join`, `string.Format`, `Math.Min/Max/Abs`, `DateTime.UtcNow`, `Guid.NewGuid()`,
  `int.Parse`, `Convert.ToInt32`, `Convert.ToString`)
- multi-statement blocks `@{ var x = ...; if (...) { ... } else { ... } return ...; }`
Not supported: lambdas, LINQ, `new`, loops, bodies (`context.Request.Body`), JSON/XML objects.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


class ExpressionError(Exception):
    """A policy expression that cannot be parsed, or failed while it ran."""


Env = dict[str, Any]  # {"context": Context, "locals": {...}}
Fn = Callable[[Env], Any]

# ------------------------------------------------------------------------------------------------
# Static description of what an expression may touch. Types are names; "any" disables checks.
# ------------------------------------------------------------------------------------------------
MEMBERS: dict[str, dict[str, str]] = {
    "context": {
        "Request": "Request",
        "Response": "Response",
        "Subscription": "Subscription",
        "User": "User",
        "Product": "Product",
        "Api": "Api",
        "Operation": "Operation",
        "Variables": "Dict",
        "LastError": "LastError",
        "Deployment": "Deployment",
        "RequestId": "string",
        "Timestamp": "DateTime",
        "Elapsed": "TimeSpan",
        "Tracing": "bool",
    },
    "Request": {
        "Method": "string",
        "Url": "Url",
        "OriginalUrl": "Url",
        "Headers": "Headers",
        "IpAddress": "string",
        "MatchedParameters": "Dict",
    },
    "Url": {
        "Scheme": "string",
        "Host": "string",
        "Port": "int",
        "Path": "string",
        "QueryString": "string",
        "Query": "Headers",
    },
    "Response": {"StatusCode": "int", "StatusReason": "string", "Headers": "Headers"},
    "Subscription": {
        "Id": "string",
        "Key": "string",
        "Name": "string",
        "PrimaryKey": "string",
        "SecondaryKey": "string",
        "CreatedDate": "DateTime",
        "StartDate": "DateTime",
        "EndDate": "DateTime",
    },
    "User": {
        "Id": "string",
        "Email": "string",
        "FirstName": "string",
        "LastName": "string",
        "Note": "string",
        "RegistrationDate": "DateTime",
    },
    "Product": {"Id": "string", "Name": "string", "SubscriptionRequired": "bool", "ApprovalRequired": "bool"},
    "Api": {
        "Id": "string",
        "Name": "string",
        "Path": "string",
        "ServiceUrl": "Url",
        "Version": "string",
        "Revision": "string",
        "IsCurrentRevision": "bool",
        "Protocols": "Array",
        "SubscriptionKeyParameterNames": "KeyNames",
    },
    "KeyNames": {"Header": "string", "Query": "string"},
    "Operation": {"Id": "string", "Name": "string", "Method": "string", "UrlTemplate": "string"},
    "LastError": {
        "Source": "string",
        "Reason": "string",
        "Message": "string",
        "Scope": "string",
        "Section": "string",
        "Path": "string",
        "PolicyId": "string",
    },
    "Deployment": {"Region": "string", "ServiceName": "string", "GatewayId": "string"},
    "string": {"Length": "int"},
    "Array": {"Length": "int", "Count": "int"},
    "Dict": {"Count": "int", "Keys": "Array"},
    "Headers": {"Count": "int", "Keys": "Array"},
    "DateTime": {
        "Year": "int",
        "Month": "int",
        "Day": "int",
        "Hour": "int",
        "Minute": "int",
        "Second": "int",
        "Ticks": "long",
    },
    "TimeSpan": {"TotalSeconds": "double", "TotalMilliseconds": "double"},
}

# method name -> (min args, max args, result type)
_STRING_METHODS: dict[str, tuple[int, int, str]] = {
    "ToUpper": (0, 0, "string"),
    "ToLower": (0, 0, "string"),
    "ToUpperInvariant": (0, 0, "string"),
    "ToLowerInvariant": (0, 0, "string"),
    "Trim": (0, 1, "string"),
    "TrimStart": (0, 1, "string"),
    "TrimEnd": (0, 1, "string"),
    "StartsWith": (1, 2, "bool"),
    "EndsWith": (1, 2, "bool"),
    "Contains": (1, 2, "bool"),
    "Substring": (1, 2, "string"),
    "Replace": (2, 2, "string"),
    "IndexOf": (1, 2, "int"),
    "Split": (1, 2, "Array"),
    "Equals": (1, 2, "bool"),
    "ToString": (0, 1, "string"),
    "PadLeft": (1, 2, "string"),
    "PadRight": (1, 2, "string"),
}
METHODS: dict[str, dict[str, tuple[int, int, str]]] = {
    "string": _STRING_METHODS,
    "Array": {
        "Contains": (1, 1, "bool"),
        "First": (0, 0, "any"),
        "FirstOrDefault": (0, 0, "any"),
        "Last": (0, 0, "any"),
        "LastOrDefault": (0, 0, "any"),
        "ToString": (0, 0, "string"),
    },
    "Dict": {"GetValueOrDefault": (1, 2, "any"), "ContainsKey": (1, 1, "bool"), "ToString": (0, 0, "string")},
    "Headers": {
        "GetValueOrDefault": (1, 2, "string"),
        "ContainsKey": (1, 1, "bool"),
        "ToString": (0, 0, "string"),
    },
    "DateTime": {
        "ToString": (0, 1, "string"),
        "AddSeconds": (1, 1, "DateTime"),
        "AddMinutes": (1, 1, "DateTime"),
        "AddHours": (1, 1, "DateTime"),
        "AddDays": (1, 1, "DateTime"),
    },
    "int": {"ToString": (0, 1, "string"), "Equals": (1, 1, "bool")},
    "long": {"ToString": (0, 1, "string"), "Equals": (1, 1, "bool")},
    "double": {"ToString": (0, 1, "string"), "Equals": (1, 1, "bool")},
    "bool": {"ToString": (0, 0, "string"), "Equals": (1, 1, "bool")},
    "TimeSpan": {"ToString": (0, 0, "string")},
    "Url": {"ToString": (0, 0, "string")},
    "Guid": {"ToString": (0, 1, "string")},
}
STATIC_TYPES = {
    "string": "String",
    "String": "String",
    "Math": "Math",
    "DateTime": "DateTime",
    "Guid": "Guid",
    "int": "Int",
    "Int32": "Int",
    "long": "Int",
    "Int64": "Int",
    "double": "Double",
    "bool": "Bool",
    "Boolean": "Bool",
    "Convert": "Convert",
    "StringComparison": "StringComparison",
}
CAST_TYPES = {
    "string",
    "int",
    "long",
    "bool",
    "double",
    "String",
    "Int32",
    "Int64",
    "Boolean",
    "object",
    "var",
}


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
    return type(v).__name__


def _num(v: Any, op: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ExpressionError(f"Operator '{op}' cannot be applied to an operand of type '{_type_name(v)}'.")
    return v


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool) and a is not None and b is not None:
        return False
    return bool(a == b)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        return to_text(a) + to_text(b)
    if a is None or b is None:
        return None
    return _num(a, "+") + _num(b, "+")


def _div(a: Any, b: Any) -> Any:
    a, b = _num(a, "/"), _num(b, "/")
    if b == 0:
        if isinstance(a, int) and isinstance(b, int):
            raise ExpressionError("Attempted to divide by zero.")
        return math.inf if a > 0 else -math.inf if a < 0 else math.nan
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


def _mod(a: Any, b: Any) -> Any:
    a, b = _num(a, "%"), _num(b, "%")
    if b == 0:
        raise ExpressionError("Attempted to divide by zero.")
    return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else int(math.fmod(a, b))


def _cmp(op: str) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        if isinstance(a, str) or isinstance(b, str):
            raise ExpressionError(f"Operator '{op}' cannot be applied to operands of type 'string'.")
        if isinstance(a, datetime) and isinstance(b, datetime):
            x, y = a.timestamp(), b.timestamp()
        else:
            x, y = _num(a, op), _num(b, op)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]

    return f


def _cast(type_name: str, v: Any) -> Any:
    t = type_name.lower()
    if t in ("object", "var"):
        return v
    if t in ("string",):
        if v is None or isinstance(v, str):
            return v
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
        "Min": (2, 2, "any", lambda a, b: min(_num(a, "Min"), _num(b, "Min"))),
        "Max": (2, 2, "any", lambda a, b: max(_num(a, "Max"), _num(b, "Max"))),
        "Abs": (1, 1, "any", lambda a: abs(_num(a, "Abs"))),
        "Floor": (1, 1, "double", lambda a: float(math.floor(_num(a, "Floor")))),
        "Ceiling": (1, 1, "double", lambda a: float(math.ceil(_num(a, "Ceiling")))),
        "Round": (1, 1, "double", lambda a: float(round(_num(a, "Round")))),
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
        "ToInt32": (1, 1, "int", lambda s: _parse_int(s) if isinstance(s, str) else int(_num(s, "ToInt32"))),
        "ToInt64": (1, 1, "long", lambda s: _parse_int(s) if isinstance(s, str) else int(_num(s, "ToInt64"))),
        "ToString": (1, 1, "string", to_text),
        "ToBoolean": (1, 1, "bool", lambda s: _parse_bool(s) if isinstance(s, str) else bool(s)),
    },
    "StringComparison": {
        "Ordinal": (-1, -1, "any", lambda: "Ordinal"),
        "OrdinalIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "InvariantCultureIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "CurrentCultureIgnoreCase": (-1, -1, "any", lambda: "OrdinalIgnoreCase"),
        "InvariantCulture": (-1, -1, "any", lambda: "Ordinal"),
    },
}


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
        start = int(_num(args[0], "Substring"))
        if start < 0 or start > len(s):
            raise ExpressionError("startIndex cannot be larger than length of string.")
        if len(args) == 2:
            n = int(_num(args[1], "Substring"))
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
        width = int(_num(args[0], name))
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
            return _eq(target, args[0])
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
        from datetime import timedelta

        unit = {"AddSeconds": "seconds", "AddMinutes": "minutes", "AddHours": "hours", "AddDays": "days"}.get(
            name
        )
        if unit:
            return target + timedelta(**{unit: float(_num(args[0], name))})
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
    elif isinstance(target, list | tuple):
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
    if isinstance(target, str | list | tuple):
        i = _num(key, "[]")
        if not isinstance(i, int) or not 0 <= i < len(target):
            raise ExpressionError("Index was outside the bounds of the array.")
        return target[i]
    if hasattr(target, "expr_index"):
        return target.expr_index(key)
    raise ExpressionError(f"Cannot apply indexing to an expression of type '{_type_name(target)}'.")


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Parser + compiler (each parse function returns (closure, static type))
# ------------------------------------------------------------------------------------------------
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


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0
        self.locals: dict[str, str] = {}

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
                left = (lambda a, b: lambda e: _eq(a(e), b(e)))(left, right)
            else:
                left = (lambda a, b: lambda e: not _eq(a(e), b(e)))(left, right)
            lt = "bool"
        return left, lt

    def relational(self) -> tuple[Fn, str]:
        left, lt = self.additive()
        while self.tok.kind == "op" and self.tok.value in ("<", "<=", ">", ">="):
            op = self.tok.value
            self.i += 1
            right, _ = self.additive()
            left = (lambda a, b, c: lambda e: c(a(e), b(e)))(left, right, _cmp(op))
            lt = "bool"
        return left, lt

    def additive(self) -> tuple[Fn, str]:
        left, lt = self.multiplicative()
        while self.tok.kind == "op" and self.tok.value in ("+", "-"):
            op = self.tok.value
            self.i += 1
            right, rt = self.multiplicative()
            if op == "+":
                left = (lambda a, b: lambda e: _add(a(e), b(e)))(left, right)
                lt = "string" if "string" in (lt, rt) else lt
            else:
                left = (lambda a, b: lambda e: _num(a(e), "-") - _num(b(e), "-"))(left, right)
        return left, lt

    def multiplicative(self) -> tuple[Fn, str]:
        left, lt = self.unary()
        while self.tok.kind == "op" and self.tok.value in ("*", "/", "%"):
            op = self.tok.value
            self.i += 1
            right, _ = self.unary()
            if op == "*":
                left = (lambda a, b: lambda e: _num(a(e), "*") * _num(b(e), "*"))(left, right)
            elif op == "/":
                left = (lambda a, b: lambda e: _div(a(e), b(e)))(left, right)
            else:
                left = (lambda a, b: lambda e: _mod(a(e), b(e)))(left, right)
        return left, lt

    def unary(self) -> tuple[Fn, str]:
        if self.accept("!"):
            inner, _ = self.unary()
            return (lambda e: not truthy(inner(e))), "bool"
        if self.accept("-"):
            inner, t = self.unary()
            return (lambda e: -_num(inner(e), "-")), t
        # cast: "(" type ")" followed by something that starts an operand
        if (
            self.tok.kind == "op"
            and self.tok.value == "("
            and self.peek().kind == "id"
            and self.peek().value in CAST_TYPES
            and self.peek(2).kind == "op"
            and self.peek(2).value == ")"
            and (
                self.peek(3).kind in ("id", "str", "num")
                or (self.peek(3).kind == "op" and self.peek(3).value in ("(", "!"))
            )
        ):
            type_name = self.peek().value
            self.i += 3
            inner, _ = self.unary()
            t = {"String": "string", "Int32": "int", "Int64": "long", "Boolean": "bool"}.get(
                type_name, type_name
            )
            return (lambda e: _cast(type_name, inner(e))), ("any" if t in ("object", "var") else t)
        return self.postfix()

    def postfix(self) -> tuple[Fn, str]:
        fn, t = self.primary()
        while True:
            if self.accept("."):
                if self.tok.kind != "id":
                    raise self.error("expected a member name after '.'")
                name_tok = self.tok
                name = name_tok.value
                self.i += 1
                generic = self._generic_args()
                if self.tok.kind == "op" and self.tok.value == "(":
                    args = self.arguments()
                    fn, t = self._method(fn, t, name, generic, args, name_tok)
                else:
                    if generic:
                        raise self.error(f"'{name}' is not a method", name_tok)
                    fn, t = self._member(fn, t, name, name_tok)
            elif self.accept("["):
                key, _ = self.expression()
                self.expect("]")
                target = fn
                fn = (lambda a, k: lambda e: get_index(a(e), k(e)))(target, key)
                t = {"Headers": "string", "Array": "any", "string": "string"}.get(t, "any")
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
        return None

    def arguments(self) -> list[tuple[Fn, str]]:
        self.expect("(")
        args: list[tuple[Fn, str]] = []
        if self.accept(")"):
            return args
        while True:
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
                raise _Return(value(e))

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
        if tok.kind == "id" and tok.value in ("for", "foreach", "while", "new", "try", "throw"):
            raise self.error(f"'{tok.value}' is not supported in policy expressions")
        raise self.error("expected a statement (var, if, return or an assignment)")


_ALL_METHOD_NAMES = {n for table in METHODS.values() for n in table}


class Expression:
    """A compiled policy expression; `evaluate(context)` runs it."""

    __slots__ = ("_fn", "source", "static_type")

    def __init__(self, source: str, fn: Fn, static_type: str) -> None:
        self.source = source
        self._fn = fn
        self.static_type = static_type

    def evaluate(self, context: Any) -> Any:
        try:
            return self._fn({"context": context, "locals": {}})
        except ExpressionError:
            raise
        except RecursionError:
            raise ExpressionError("expression too deeply nested") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            raise ExpressionError(f"expression evaluation failed: {type(exc).__name__}") from None


MAX_SOURCE = 16 * 1024


def compile_expression(text: str) -> Expression:
    """Compile `@(...)` or `@{...}` (the whole attribute or element text)."""
    src = text.strip()
    if len(src) > MAX_SOURCE:
        raise ExpressionError(f"expression longer than {MAX_SOURCE} characters")
    try:
        if src.startswith("@(") and src.endswith(")"):
            p = _Parser(src[2:-1])
            fn, t = p.expression()
            if p.tok.kind != "eof":
                raise p.error(f"unexpected {p.tok.value!r} after the end of the expression")
            return Expression(src, fn, t)
        if src.startswith("@{") and src.endswith("}"):
            p = _Parser(src[2:-1])
            body = p.block_body()
            if p.tok.kind != "eof":
                raise p.error(f"unexpected {p.tok.value!r}")

            def run(e: Env) -> Any:
                try:
                    body(e)
                except _Return as r:
                    return r.value
                raise ExpressionError("the expression block ended without a return statement")

            return Expression(src, run, "any")
    except RecursionError:
        raise ExpressionError("expression too deeply nested") from None
    raise ExpressionError("an expression must be written @( ... ) or @{ ... }")


def is_expression(text: str | None) -> bool:
    if not text:
        return False
    s = text.strip()
    return (s.startswith("@(") and s.endswith(")")) or (s.startswith("@{") and s.endswith("}"))


class Value:
    """A policy value: literal text, or an expression evaluated per request."""

    __slots__ = ("expr", "literal")

    def __init__(self, text: str) -> None:
        if is_expression(text):
            self.expr: Expression | None = compile_expression(text)
            self.literal = ""
        else:
            self.expr = None
            self.literal = text

    @property
    def constant(self) -> bool:
        return self.expr is None

    def get(self, context: Any) -> Any:
        return self.literal if self.expr is None else self.expr.evaluate(context)

    def text(self, context: Any) -> str:
        return self.literal if self.expr is None else to_text(self.expr.evaluate(context))
