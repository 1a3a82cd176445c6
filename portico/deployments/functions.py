"""The ARM template functions API Management templates call, evaluated over parsed expressions.

Values are JSON values (dict, list, str, int, float, bool, None). Functions that need the deployment
(parameters, variables, resource ids, `reference`, `list*`) ask the `Scope` they are given.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from portico.deployments.expressions import (
    ExpressionError,
    FunctionCall,
    Index,
    Literal,
    Member,
    Node,
    is_expression,
    parse,
    unescape,
)
from portico.deployments.values import (
    arity,
    as_int,
    as_str,
    concat,
    contains,
    empty,
    equals,
    format_string,
    intersection,
    length,
    provider_path,
    to_string,
    type_name,
    union,
    unique_string,
)

_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")


class Scope(Protocol):
    """What a template expression can see of its deployment."""

    def parameter(self, name: str) -> Any: ...
    def variable(self, name: str) -> Any: ...
    def copy_index(self, loop: str | None) -> int: ...
    def subscription_id(self) -> str: ...
    def resource_group(self) -> dict[str, Any]: ...
    def subscription(self) -> dict[str, Any]: ...
    def deployment(self) -> dict[str, Any]: ...
    def environment(self) -> dict[str, Any]: ...
    def reference(self, target: str, api_version: str | None, full: bool) -> Any: ...
    def list_action(self, resource_id: str, action: str, api_version: str, body: Any) -> Any: ...
    def allow_now(self) -> bool: ...


def evaluate_value(value: Any, scope: Scope) -> Any:
    """A template value with every expression string in it evaluated (objects and arrays deeply)."""
    if isinstance(value, str):
        return evaluate_string(value, scope)
    if isinstance(value, dict):
        return {k: evaluate_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, scope) for v in value]
    return value


def evaluate_string(value: str, scope: Scope) -> Any:
    if not is_expression(value):
        return unescape(value)
    return evaluate(parse(value), scope)


def evaluate(node: Node, scope: Scope) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Member):
        return _member(evaluate(node.target, scope), node.name)
    if isinstance(node, Index):
        return _index(evaluate(node.target, scope), evaluate(node.index, scope))
    lazy = _LAZY.get(node.name)
    if lazy is not None:
        return lazy(node, scope)
    fn = FUNCTIONS.get(node.name)
    if fn is None:
        if node.name.startswith("list"):
            return _list_action(node.display, [evaluate(a, scope) for a in node.args], scope)
        raise ExpressionError(f"the template function '{node.display}' is not supported")
    args = [evaluate(a, scope) for a in node.args]
    try:
        return fn(scope, args)
    except ExpressionError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise ExpressionError(f"{node.display}(): {_reason(exc)}") from None


def functions_used(node: Node) -> list[FunctionCall]:
    """Every function call in an expression (for validation before anything runs)."""
    out: list[FunctionCall] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, FunctionCall):
            out.append(n)
            stack.extend(n.args)
        elif isinstance(n, Member):
            stack.append(n.target)
        elif isinstance(n, Index):
            stack.extend((n.target, n.index))
    return out


def is_known_function(name: str) -> bool:
    return name in FUNCTIONS or name in _LAZY or name.startswith("list")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip("'\"") or type(exc).__name__
    return text[:200]


# --- access ----------------------------------------------------------------------------------------------
def _member(target: Any, name: str) -> Any:
    if isinstance(target, dict):
        if name in target:
            return target[name]
        low = name.lower()
        for k, v in target.items():  # ARM property names ignore case
            if k.lower() == low:
                return v
        raise ExpressionError(f"the object has no property '{name}'")
    raise ExpressionError(f"cannot read property '{name}' of a {type_name(target)}")


def _index(target: Any, index: Any) -> Any:
    if isinstance(target, list):
        if not isinstance(index, int) or isinstance(index, bool):
            raise ExpressionError("an array index must be an integer")
        if not -len(target) <= index < len(target) or index < 0:
            raise ExpressionError(f"index {index} is out of range for an array of length {len(target)}")
        return target[index]
    if isinstance(target, dict) and isinstance(index, str):
        return _member(target, index)
    raise ExpressionError(f"cannot index a {type_name(target)} with a {type_name(index)}")


# --- lazy functions: arguments evaluated only when needed -------------------------------------------------
def _if(node: FunctionCall, scope: Scope) -> Any:
    if len(node.args) != 3:
        raise ExpressionError("if() takes a condition and two values")
    cond = evaluate(node.args[0], scope)
    if not isinstance(cond, bool):
        raise ExpressionError("if(): the condition must be a bool")
    return evaluate(node.args[1] if cond else node.args[2], scope)


def _coalesce(node: FunctionCall, scope: Scope) -> Any:
    for arg in node.args:
        value = evaluate(arg, scope)
        if value is not None:
            return value
    return None


_LAZY: dict[str, Callable[[FunctionCall, Scope], Any]] = {"if": _if, "coalesce": _coalesce}


def _resource_id(scope: Scope, args: list[Any]) -> str:
    strs = [as_str(a) for a in args]
    type_at = next((i for i, a in enumerate(strs[:3]) if "." in a.split("/")[0] and "/" in a), None)
    if type_at is None:
        raise ExpressionError("resourceId() needs a resource type such as 'Microsoft.ApiManagement/service'")
    before, resource_type, names = strs[:type_at], strs[type_at], strs[type_at + 1 :]
    sub, rg = scope.subscription_id(), str(scope.resource_group()["name"])
    if len(before) == 2:
        sub, rg = before
    elif len(before) == 1:
        rg = before[0]
    return f"/subscriptions/{sub}/resourceGroups/{rg}/{provider_path(resource_type, names)}"


def _subscription_resource_id(scope: Scope, args: list[Any]) -> str:
    strs = [as_str(a) for a in args]
    sub = scope.subscription_id()
    if strs and "/" not in strs[0] and len(strs) > 1 and "/" in strs[1]:
        sub, strs = strs[0], strs[1:]
    return f"/subscriptions/{sub}/{provider_path(strs[0], strs[1:])}"


def _list_action(display: str, args: list[Any], scope: Scope) -> Any:
    if len(args) < 2:
        raise ExpressionError(f"{display}() takes a resource id and an api-version")
    body = args[2] if len(args) > 2 else None
    return scope.list_action(as_str(args[0], "resource id"), display, as_str(args[1], "api-version"), body)


def _reference(scope: Scope, args: list[Any]) -> Any:
    arity(args, 1, 3)
    target = as_str(args[0], "resource")
    api_version = as_str(args[1], "api-version") if len(args) > 1 and args[1] is not None else None
    full = len(args) > 2 and str(args[2]).lower() == "full"
    return scope.reference(target, api_version, full)


def _utc_now(scope: Scope, args: list[Any]) -> str:
    if not scope.allow_now():
        raise ExpressionError("utcNow() may only be used in the default value of a parameter")
    now = datetime.now(UTC)
    fmt = as_str(args[0]) if args else "yyyyMMddTHHmmssZ"
    table = {
        "yyyy": "%Y",
        "MM": "%m",
        "dd": "%d",
        "HH": "%H",
        "mm": "%M",
        "ss": "%S",
        "u": "%Y-%m-%d %H:%M:%SZ",
    }
    if fmt in ("u", "s", "o"):
        return {"u": now.strftime("%Y-%m-%d %H:%M:%SZ"), "s": now.strftime("%Y-%m-%dT%H:%M:%S")}.get(
            fmt, now.isoformat().replace("+00:00", "Z")
        )
    out = fmt
    for k, v in table.items():
        out = out.replace(k, v)
    return now.strftime(out)


def _new_guid(scope: Scope, args: list[Any]) -> str:
    if not scope.allow_now():
        raise ExpressionError("newGuid() may only be used in the default value of a parameter")
    return str(uuid.uuid4())


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int):
        return value != 0
    raise ExpressionError(f"bool() cannot convert '{to_string(value)[:40]}'")


def _int_of(value: Any) -> int:
    if isinstance(value, bool):
        raise ExpressionError("int() cannot convert a bool")
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(as_str(value).strip())
    except ValueError:
        raise ExpressionError(f"int() cannot convert '{str(value)[:40]}'") from None


def _json(value: Any) -> Any:
    try:
        return json.loads(as_str(value))
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"json(): the string is not valid JSON ({exc.msg})") from None


def _split(value: Any, delimiter: Any) -> list[str]:
    text = as_str(value)
    delims = [delimiter] if isinstance(delimiter, str) else list(delimiter)
    if not delims:
        return [text]
    return re.split("|".join(re.escape(as_str(d)) for d in delims), text)


def _first(value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[0] if value else ("" if isinstance(value, str) else None)
    raise ExpressionError("first() needs a string or an array")


def _last(value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[-1] if value else ("" if isinstance(value, str) else None)
    raise ExpressionError("last() needs a string or an array")


def _substring(args: list[Any]) -> str:
    arity(args, 1, 3)
    text = as_str(args[0])
    start = as_int(args[1]) if len(args) > 1 else 0
    length = as_int(args[2]) if len(args) > 2 else len(text) - start
    if start < 0 or length < 0 or start + length > len(text):
        raise ExpressionError("substring(): the start and length must lie within the string")
    return text[start : start + length]


def _take_skip(args: list[Any], take: bool) -> Any:
    value, count = args[0], max(0, as_int(args[1]))
    if not isinstance(value, (str, list)):
        raise ExpressionError("needs a string or an array")
    return value[:count] if take else value[count:]


def _range(args: list[Any]) -> list[int]:
    start, count = as_int(args[0]), as_int(args[1])
    if count < 0 or count > 10_000:
        raise ExpressionError("range(): the count must be between 0 and 10000")
    return list(range(start, start + count))


def _create_object(args: list[Any]) -> dict[str, Any]:
    if len(args) % 2:
        raise ExpressionError("createObject() takes key/value pairs")
    return {as_str(args[i], "key"): args[i + 1] for i in range(0, len(args), 2)}


def _base64_to_string(value: Any) -> str:
    try:
        return base64.b64decode(as_str(value), validate=True).decode()
    except ValueError:
        raise ExpressionError("base64ToString(): the string is not valid base64") from None


def _num(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"expects a number, not a {type_name(value)}")
    return value


def _compare(args: list[Any], op: Callable[[Any, Any], bool]) -> bool:
    arity(args, 2)
    a, b = args
    if isinstance(a, str) and isinstance(b, str):
        return op(a, b)
    return op(_num(a), _num(b))


def _div(a: Any, b: Any) -> int:
    x, y = as_int(a), as_int(b)
    if y == 0:
        raise ExpressionError("div(): division by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _mod(a: Any, b: Any) -> int:
    x, y = as_int(a), as_int(b)
    if y == 0:
        raise ExpressionError("mod(): division by zero")
    return x - y * _div(x, y)


def _items(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise ExpressionError("items() needs an object")
    return [{"key": k, "value": v} for k, v in sorted(value.items(), key=lambda kv: kv[0].lower())]


def _pad_left(args: list[Any]) -> str:
    arity(args, 2, 3)
    text = to_string(args[0])
    pad = as_str(args[2]) if len(args) > 2 else " "
    if len(pad) != 1:
        raise ExpressionError("padLeft(): the padding must be one character")
    return text.rjust(as_int(args[1]), pad)


def _uri(base: Any, relative: Any) -> str:
    return urllib.parse.urljoin(as_str(base), as_str(relative))


def _data_uri(value: Any) -> str:
    return "data:text/plain;charset=utf8;base64," + base64.b64encode(to_string(value).encode()).decode()


def _data_uri_to_string(value: Any) -> str:
    text = as_str(value)
    head, _, data = text.partition(",")
    if not head.startswith("data:"):
        raise ExpressionError("dataUriToString(): not a data URI")
    return base64.b64decode(data).decode() if head.endswith(";base64") else urllib.parse.unquote(data)


def _index_of(args: list[Any], last: bool) -> int:
    container, item = args
    if isinstance(container, str):
        needle = as_str(item)
        found = container.lower().rfind(needle.lower()) if last else container.lower().find(needle.lower())
        return found
    if isinstance(container, list):
        indexes = [i for i, x in enumerate(container) if equals(x, item)]
        return (indexes[-1] if last else indexes[0]) if indexes else -1
    raise ExpressionError("needs a string or an array")


F = Callable[[Scope, list[Any]], Any]


def _pure(fn: Callable[..., Any], low: int, high: int | None = None) -> F:
    def call(_scope: Scope, args: list[Any]) -> Any:
        arity(args, low, high)
        return fn(*args)

    return call


def _pure_list(fn: Callable[[list[Any]], Any], low: int = 1) -> F:
    def call(_scope: Scope, args: list[Any]) -> Any:
        arity(args, low, 999)
        return fn(args)

    return call


def _scoped(fn: Callable[[Scope, list[Any]], Any], low: int, high: int | None = None) -> F:
    def call(scope: Scope, args: list[Any]) -> Any:
        arity(args, low, high)
        return fn(scope, args)

    return call


FUNCTIONS: dict[str, F] = {
    # deployment
    "parameters": _scoped(lambda s, a: s.parameter(as_str(a[0], "parameter name")), 1),
    "variables": _scoped(lambda s, a: s.variable(as_str(a[0], "variable name")), 1),
    "copyindex": _scoped(
        lambda s, a: (
            s.copy_index(next((x for x in a if isinstance(x, str)), None))
            + next((x for x in a if isinstance(x, int) and not isinstance(x, bool)), 0)
        ),
        0,
        2,
    ),
    "resourcegroup": _scoped(lambda s, a: s.resource_group(), 0),
    "subscription": _scoped(lambda s, a: s.subscription(), 0),
    "deployment": _scoped(lambda s, a: s.deployment(), 0),
    "environment": _scoped(lambda s, a: s.environment(), 0),
    "tenant": _scoped(lambda s, a: {"tenantId": s.subscription().get("tenantId"), "countryCode": "US"}, 0),
    "resourceid": _scoped(_resource_id, 2, 99),
    "subscriptionresourceid": _scoped(_subscription_resource_id, 2, 99),
    "tenantresourceid": _scoped(
        lambda s, a: "/" + provider_path(as_str(a[0]), [as_str(x) for x in a[1:]]), 2, 99
    ),
    "extensionresourceid": _scoped(
        lambda s, a: as_str(a[0]).rstrip("/") + "/" + provider_path(as_str(a[1]), [as_str(x) for x in a[2:]]),
        3,
        99,
    ),
    "reference": _reference,
    "utcnow": _scoped(_utc_now, 0, 1),
    "newguid": _scoped(_new_guid, 0),
    # strings
    "concat": _pure_list(concat),
    "format": _pure_list(format_string),
    "tolower": _pure(lambda v: as_str(v).lower(), 1),
    "toupper": _pure(lambda v: as_str(v).upper(), 1),
    "replace": _pure(lambda v, old, new: as_str(v).replace(as_str(old), as_str(new)), 3),
    "split": _pure(_split, 2),
    "join": _pure(lambda a, d: as_str(d).join(to_string(x) for x in a), 2),
    "string": _pure(to_string, 1),
    "trim": _pure(lambda v: as_str(v).strip(), 1),
    "substring": _pure_list(_substring),
    "startswith": _pure(lambda v, p: as_str(v).lower().startswith(as_str(p).lower()), 2),
    "endswith": _pure(lambda v, p: as_str(v).lower().endswith(as_str(p).lower()), 2),
    "indexof": _pure_list(lambda a: _index_of(a, False), 2),
    "lastindexof": _pure_list(lambda a: _index_of(a, True), 2),
    "padleft": _pure_list(_pad_left, 2),
    "uniquestring": _pure_list(lambda a: unique_string(*[as_str(x) for x in a])),
    "guid": _pure_list(lambda a: str(uuid.uuid5(_GUID_NAMESPACE, "-".join(as_str(x) for x in a)))),
    "base64": _pure(lambda v: base64.b64encode(as_str(v).encode()).decode(), 1),
    "base64tostring": _pure(_base64_to_string, 1),
    "base64tojson": _pure(lambda v: _json(_base64_to_string(v)), 1),
    "uri": _pure(_uri, 2),
    "uricomponent": _pure(lambda v: urllib.parse.quote(as_str(v), safe=""), 1),
    "uricomponenttostring": _pure(lambda v: urllib.parse.unquote(as_str(v)), 1),
    "datauri": _pure(_data_uri, 1),
    "datauritostring": _pure(_data_uri_to_string, 1),
    # conversions and literals
    "int": _pure(_int_of, 1),
    "bool": _pure(_bool, 1),
    "float": _pure(lambda v: float(v), 1),
    "json": _pure(_json, 1),
    "array": _pure(lambda v: v if isinstance(v, list) else [v], 1),
    "createarray": _pure_list(lambda a: list(a), 0),
    "createobject": _pure_list(_create_object, 0),
    "null": _pure(lambda: None, 0),
    "true": _pure(lambda: True, 0),
    "false": _pure(lambda: False, 0),
    # logic and comparison
    "equals": _pure(equals, 2),
    "not": _pure(lambda v: not _bool_arg(v), 1),
    "and": _pure_list(lambda a: all(_bool_arg(x) for x in a), 2),
    "or": _pure_list(lambda a: any(_bool_arg(x) for x in a), 2),
    "greater": _pure_list(lambda a: _compare(a, lambda x, y: x > y), 2),
    "greaterorequals": _pure_list(lambda a: _compare(a, lambda x, y: x >= y), 2),
    "less": _pure_list(lambda a: _compare(a, lambda x, y: x < y), 2),
    "lessorequals": _pure_list(lambda a: _compare(a, lambda x, y: x <= y), 2),
    # collections
    "empty": _pure(empty, 1),
    "length": _pure(length, 1),
    "contains": _pure(contains, 2),
    "union": _pure_list(union),
    "intersection": _pure_list(intersection),
    "first": _pure(_first, 1),
    "last": _pure(_last, 1),
    "take": _pure_list(lambda a: _take_skip(a, True), 2),
    "skip": _pure_list(lambda a: _take_skip(a, False), 2),
    "range": _pure_list(_range, 2),
    "items": _pure(_items, 1),
    "objectkeys": _pure(
        lambda v: list(v.keys()) if isinstance(v, dict) else _fail("objectKeys() needs an object"), 1
    ),
    "flatten": _pure(lambda v: [y for x in v for y in (x if isinstance(x, list) else [x])], 1),
    "shallowmerge": _pure(lambda v: {k: x for o in v for k, x in o.items()}, 1),
    # numbers
    "add": _pure(lambda a, b: as_int(a) + as_int(b), 2),
    "sub": _pure(lambda a, b: as_int(a) - as_int(b), 2),
    "mul": _pure(lambda a, b: as_int(a) * as_int(b), 2),
    "div": _pure(_div, 2),
    "mod": _pure(_mod, 2),
    "min": _pure_list(lambda a: min(_flat_numbers(a))),
    "max": _pure_list(lambda a: max(_flat_numbers(a))),
}


def _fail(message: str) -> Any:
    raise ExpressionError(message)


def _bool_arg(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"expects a bool, not a {type_name(value)}")
    return value


def _flat_numbers(args: list[Any]) -> list[int | float]:
    flat = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    if not flat:
        raise ExpressionError("needs at least one number")
    return [_num(x) for x in flat]
