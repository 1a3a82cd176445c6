"""Which APIs of a service are GraphQL endpoints, from its configuration rows: the API (`type:
graphql`), its `graphql` schema entity, its resolvers (`Type/field`) and their policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from portico.gateway.gql.datasource import DataSource
from portico.gateway.gql.executor import GraphqlEndpoint, schema_of
from portico.names import fold_name

GRAPHQL_CONTENT_TYPE = "application/vnd.ms-azure-apim.graphql.schema"  # as the control plane stores it

CompileResolver = Callable[[str, str], "DataSource | str"]


def is_resolver_policy(parent: str) -> bool:
    """A policy row whose parent is a resolver (`apis/{id}/resolvers/{id}`)."""
    parts = parent.split("/")
    return len(parts) == 4 and parts[2].lower() == "resolvers"


def _sdl(text: Any) -> str | None:
    data = orjson.loads(text) if isinstance(text, bytes | str) else text
    if not isinstance(data, dict) or data.get("contentType") != GRAPHQL_CONTENT_TYPE:
        return None
    value = (data.get("document") or {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


def graphql_endpoints(
    apis: dict[str, Any], raw: dict[str, dict[tuple[str, str], Any]], compile_resolver: CompileResolver
) -> dict[str, GraphqlEndpoint]:
    """Folded API id → endpoint, for each GraphQL API in `apis` (folded id → routing.Api).
    `raw["schema"]` holds schema JSON text; the other kinds their parsed JSON."""
    wanted = {k: a for k, a in apis.items() if str(a.data.get("type") or "").lower() == "graphql"}
    if not wanted:
        return {}
    sdls: dict[str, str] = {}
    for (parent, _name), text in raw["schema"].items():
        api = fold_name(parent.split("/", 1)[-1])
        if api in wanted and api not in sdls:
            sdl = _sdl(text)
            if sdl is not None:
                sdls[api] = sdl
    policies = {
        fold_name(parent): data for (parent, _n), data in raw["policy"].items() if is_resolver_policy(parent)
    }
    resolvers: dict[str, dict[tuple[str, str], DataSource | str]] = {}
    for (parent, name), data in raw["resolver"].items():
        api = fold_name(parent.split("/", 1)[-1])
        if api not in wanted:
            continue
        type_name, _, field_name = str(data.get("path") or "").partition("/")
        scope = f"{parent}/resolvers/{name}"
        policy = policies.get(fold_name(scope))
        if policy is None:
            continue  # a resolver without a policy resolves nothing yet: the default applies
        resolvers.setdefault(api, {})[(type_name, field_name)] = compile_resolver(
            scope, str(policy.get("value") or "")
        )
    out: dict[str, GraphqlEndpoint] = {}
    for key, api in wanted.items():
        own = resolvers.get(key, {})
        sdl = sdls.get(key)
        out[key] = GraphqlEndpoint(
            schema_of(sdl) if sdl is not None else None,
            own,
            synthetic=bool(own) or not api.service_url,
            fallback=bool(own) and bool(api.service_url),
        )
    return out


__all__ = ["GRAPHQL_CONTENT_TYPE", "graphql_endpoints", "is_resolver_policy"]
