"""What a resolver's policy expressions see of GraphQL: `context.GraphQL.Arguments` and
`context.GraphQL.Parent` as JSON values (Newtonsoft's JObject/JArray in API Management), and the
resolver's own request context (`ResolverContext`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from portico.gateway.context import Context, Variables
from portico.gateway.expressions import ExpressionError, to_text

if TYPE_CHECKING:
    from portico.gateway.backend import Backend


def json_default(v: Any) -> Any:
    if isinstance(v, JsonValue):
        return v.value
    raise TypeError


def wrap(v: Any) -> Any:
    """A JSON value as expressions see it: objects and arrays wrapped, scalars as they are."""
    return JsonValue(v) if isinstance(v, dict | list) else v


class JsonValue:
    """A JSON object or array: indexed by name or position, `ToString()` its JSON text."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any] | list[Any]) -> None:
        self.value = value

    def expr_index(self, key: Any) -> Any:
        v = self.value
        if isinstance(v, dict):
            k = to_text(key)
            return wrap(v[k]) if k in v else None  # JObject's indexer: null for a missing property
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(v):
            raise ExpressionError("Index was outside the bounds of the array.")
        return wrap(v[key])

    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self.value)
        if name == "Keys" and isinstance(self.value, dict):
            return list(self.value)
        raise ExpressionError(f"'JToken' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "ToString":
            return self.expr_text()
        if isinstance(self.value, dict):
            if name in ("ContainsKey", "ContainsProperty"):
                return to_text(args[0]) in self.value
            if name in ("GetValue", "GetValueOrDefault", "Value"):
                k = to_text(args[0])
                if k in self.value:
                    return wrap(self.value[k])
                return args[1] if len(args) > 1 else None
        raise ExpressionError(f"'JToken' does not contain a method '{name}'.")

    def expr_text(self) -> str:
        return orjson.dumps(self.value, default=json_default).decode()


class _GraphqlView:
    __slots__ = ("arguments", "parent")

    def __init__(self, arguments: dict[str, Any], parent: Any) -> None:
        self.arguments = arguments
        self.parent = parent

    def expr_member(self, name: str) -> Any:
        if name == "Arguments":
            return JsonValue(self.arguments)
        if name == "Parent":
            return wrap(self.parent if self.parent is not None else {})
        raise ExpressionError(f"'GraphQL' does not contain a definition for '{name}'.")


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class ResolverContext(Context):
    """The HTTP request of one resolver run: sent to its data source with only what its policy
    sets (nothing of the client's request is forwarded), while its expressions read the client's
    request, subscription, variables... as in the API's policies, plus `context.GraphQL`."""

    __slots__ = ("client", "graphql")

    def __init__(self, client: Context, backend: Backend, arguments: dict[str, Any], parent: Any) -> None:
        super().__init__(
            client.service,
            "GET",
            client.scheme,
            client.host,
            client.port,
            client.path,
            "",
            [],
            client.client_ip,
            client.request_id,
            _no_body,
            backend,
            client.client_certificate,
        )
        self.client = client
        self.api = client.api
        self.product = client.product
        self.subscription = client.subscription
        self.subscription_key = client.subscription_key
        self.variables: Variables = client.variables
        self.graphql = _GraphqlView(arguments, parent)

    def expr_member(self, name: str) -> Any:
        if name == "GraphQL":
            return self.graphql
        if name == "Response":
            return super().expr_member(name)  # the data source's answer
        return self.client.expr_member(name)


__all__ = ["JsonValue", "ResolverContext", "json_default", "wrap"]
