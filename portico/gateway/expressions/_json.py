"""Message bodies and JSON in expressions: `Body.As<T>()` of a response held in memory (send-request's
IResponse), and the JObject / JArray it yields. JSON scalars are plain values (string, number,
bool, null); objects and arrays are wrapped so that only the members listed in _catalog.py reach them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from portico.gateway.expressions._base import ExpressionError
from portico.gateway.expressions._runtime import cast, to_text
from portico.gateway.expressions._xml import parse_xml


def wrap(v: Any) -> Any:
    if isinstance(v, dict):
        return JObject(v)
    if isinstance(v, list):
        return JArray(v)
    return v


def _plain(v: Any) -> Any:
    return v.data if isinstance(v, JObject | JArray) else v


def _json_data(v: Any) -> Any:
    """A value assigned into JSON (`o["k"] = v`): JSON values, and dates as Json.NET writes them."""
    if isinstance(v, JObject | JArray):
        return v.data
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise ExpressionError(f"A value of type '{type(v).__name__}' cannot be stored in a JSON object.")


def _render(data: Any) -> str:
    """Json.NET's ToString(): indented by two spaces."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def _token_text(v: Any) -> str:
    """A JSON value converted to string as Json.NET's `Value<string>()` does."""
    if isinstance(v, JObject | JArray):
        return v.expr_text()
    if v is True:
        return "True"
    if v is False:
        return "False"
    return to_text(v)


def convert(v: Any, generic: str | None) -> Any:
    """`Value<T>()`: a JSON value as T (string, int, long, double, bool; others: the value)."""
    if generic is None or v is None:
        return v
    t = generic.lower()
    if t == "string":
        return _token_text(v)
    if t in ("int", "int32", "long", "int64", "double") and isinstance(v, str):
        try:
            n = float(v) if t == "double" else int(v.strip())
        except ValueError:
            raise ExpressionError(f"Could not convert string '{v[:40]}' to {generic}.") from None
        return n
    if t in ("bool", "boolean") and isinstance(v, str):
        if v.strip().lower() not in ("true", "false"):
            raise ExpressionError(f"Could not convert string '{v[:40]}' to Boolean.")
        return v.strip().lower() == "true"
    return cast(generic, v) if t in ("int", "int32", "long", "int64", "double", "bool", "boolean") else v


class JObject:
    """A JSON object (Newtonsoft.Json.Linq.JObject): `o["name"]` (null when absent), `Value<T>(name)`,
    `GetValue(name)`, `ContainsKey`, `SelectToken(path)`, `Count`, `ToString()`."""

    __slots__ = ("data",)
    expr_type = "JObject"

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def expr_text(self) -> str:
        return _render(self.data)

    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self.data)
        raise ExpressionError(f"'JObject' does not contain a definition for '{name}'.")

    def expr_index(self, key: Any) -> Any:
        return wrap(self.data.get(to_text(key)))

    def expr_set_index(self, key: Any, value: Any) -> None:
        self.data[to_text(key)] = _json_data(value)

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name in ("GetValue", "Value"):
            v = self.expr_index(args[0])
            return convert(v, generic) if name == "Value" else v
        if name == "ContainsKey":
            return to_text(args[0]) in self.data
        if name == "Remove":
            return self.data.pop(to_text(args[0]), _ABSENT) is not _ABSENT
        if name == "SelectToken":
            return select_token(self, to_text(args[0]))
        if name == "ToString":
            return self.expr_text() if not args else orjson.dumps(self.data).decode()
        raise ExpressionError(f"'JObject' does not contain a method '{name}'.")


class JArray:
    """A JSON array (Newtonsoft.Json.Linq.JArray): `a[0]`, `Count`, `First`, `Last`, `ToString()`."""

    __slots__ = ("data",)
    expr_type = "JArray"

    def __init__(self, data: list[Any]) -> None:
        self.data = data

    def expr_text(self) -> str:
        return _render(self.data)

    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self.data)
        raise ExpressionError(f"'JArray' does not contain a definition for '{name}'.")

    def expr_index(self, key: Any) -> Any:
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(self.data):
            raise ExpressionError("Index was out of range. Must be non-negative and less than the size.")
        return wrap(self.data[key])

    def expr_set_index(self, key: Any, value: Any) -> None:
        self.expr_index(key)  # the same bounds check
        self.data[key] = _json_data(value)

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name in ("First", "Last", "FirstOrDefault", "LastOrDefault"):
            if not self.data:
                if name.endswith("OrDefault"):
                    return None
                raise ExpressionError("Sequence contains no elements.")
            return wrap(self.data[0] if name.startswith("First") else self.data[-1])
        if name == "SelectToken":
            return select_token(self, to_text(args[0]))
        if name == "ToString":
            return self.expr_text() if not args else orjson.dumps(self.data).decode()
        if name == "Value":
            return convert(self.expr_index(args[0]), generic)
        raise ExpressionError(f"'JArray' does not contain a method '{name}'.")


def select_token(root: Any, path: str) -> Any:
    """Json.NET's SelectToken for plain paths: `a.b[0].c`, `$.a`, `['a b']` (no filters, no wildcards);
    null when the path leads nowhere."""
    data = _plain(root)
    p = path.strip()
    if p.startswith("$"):
        p = p[1:]
    i = 0
    while i < len(p):
        c = p[i]
        if c == ".":
            i += 1
            continue
        if c == "[":
            end = p.find("]", i)
            if end < 0:
                raise ExpressionError(f"Unterminated '[' in JSON path '{path[:60]}'.")
            inner = p[i + 1 : end].strip()
            i = end + 1
            if inner[:1] in ("'", '"'):
                key: Any = inner[1:-1]
            elif inner.isdigit():
                key = int(inner)
            else:
                raise ExpressionError(f"Unsupported JSON path '{path[:60]}' (filters and wildcards are not).")
        else:
            end = i
            while end < len(p) and p[end] not in ".[":
                end += 1
            key, i = p[i:end], end
            if key == "*":
                raise ExpressionError(f"Unsupported JSON path '{path[:60]}' (filters and wildcards are not).")
        if isinstance(key, int) and isinstance(data, list):
            data = data[key] if key < len(data) else None
        elif isinstance(key, str) and isinstance(data, dict):
            data = data.get(key)
        else:
            data = None
        if data is None:
            return None
    return wrap(data)


_ABSENT = object()


def _parse_json(data: bytes, generic: str | None) -> Any:
    t = (generic or "").lower()
    try:
        value = orjson.loads(data) if data.strip() else None
    except orjson.JSONDecodeError:
        raise ExpressionError(f"The body is not valid JSON (As<{generic}>).") from None
    if t == "jobject" and not isinstance(value, dict | None):
        raise ExpressionError("The body is not a JSON object (As<JObject>).")
    if t == "jarray" and not isinstance(value, list | None):
        raise ExpressionError("The body is not a JSON array (As<JArray>).")
    return wrap(value)


class MessageBody:
    """`Body` of a message held in memory: `As<string>()`, `As<JObject>()`, `As<JArray>()`,
    `As<JToken>()` (the `preserveContent` argument is accepted; the bytes stay readable)."""

    __slots__ = ("data",)
    expr_type = "Body"

    def __init__(self, data: bytes) -> None:
        self.data = data

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name != "As":
            raise ExpressionError(f"'Body' does not contain a method '{name}'.")
        t = (generic or "string").lower()
        if t == "string":
            return self.data.decode("utf-8", "replace")
        if t in ("jobject", "jarray", "jtoken"):
            return _parse_json(self.data, generic)
        raise ExpressionError(
            f"Body.As<{generic}>() is not supported (supported: string, JObject, JArray, JToken)."
        )

    def expr_text(self) -> str:
        return "Body"


class FormContent:
    """`AsFormUrlEncodedContent()`: field name → its values (IDictionary<string, IList<string>>)."""

    __slots__ = ("fields",)
    expr_type = "Form"

    def __init__(self, text: str) -> None:
        self.fields: dict[str, list[str]] = {}
        for k, v in parse_qsl(text, keep_blank_values=True):
            self.fields.setdefault(k, []).append(v)

    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self.fields)
        if name == "Keys":
            return list(self.fields)
        raise ExpressionError(f"'Form' does not contain a definition for '{name}'.")

    def expr_index(self, key: Any) -> Any:
        k = to_text(key)
        if k not in self.fields:
            raise ExpressionError(f"The given key '{k[:60]}' was not present in the dictionary.")
        return list(self.fields[k])

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "GetValueOrDefault":
            k = to_text(args[0])
            return list(self.fields[k]) if k in self.fields else (args[1] if len(args) > 1 else None)
        if name == "ContainsKey":
            return to_text(args[0]) in self.fields
        if name == "ToString":
            return "System.Collections.Generic.Dictionary`2[System.String,System.Collections.Generic.IList`1[System.String]]"
        raise ExpressionError(f"'Form' does not contain a method '{name}'.")


class LiveBody:
    """`context.Request.Body` / `context.Response.Body` (IMessageBody): the message's body, buffered
    by the gateway before the policy ran. As API Management documents it, reading it consumes it
    (what is forwarded or answered afterwards is empty, unless a policy sets a new body) unless
    `preserveContent: true` is passed."""

    __slots__ = ("_consume", "_read")
    expr_type = "MessageBody"

    def __init__(self, read: Callable[[], bytes], consume: Callable[[], None]) -> None:
        self._read = read
        self._consume = consume

    def _take(self, args: list[Any]) -> bytes:
        preserve = args[0] if args else False
        if not isinstance(preserve, bool):
            raise ExpressionError("preserveContent must be true or false.")
        data = self._read()
        if not preserve:
            self._consume()
        return data

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "AsFormUrlEncodedContent":
            return FormContent(self._take(args).decode("utf-8", "replace"))
        if name != "As":
            raise ExpressionError(f"'MessageBody' does not contain a method '{name}'.")
        t = (generic or "string").lower()
        if t not in ("string", "byte[]", "jobject", "jarray", "jtoken", "xnode", "xelement", "xdocument"):
            raise ExpressionError(f"Body.As<{generic}>() is not supported.")
        data = self._take(args)
        if t == "string":
            return data.decode("utf-8", "replace")
        if t == "byte[]":
            return data
        if t.startswith("x"):
            return parse_xml(data, generic)
        return _parse_json(data, generic)

    def expr_text(self) -> str:
        return "Microsoft.WindowsAzure.ApiManagement.Proxy.Gateway.MessageBody"
