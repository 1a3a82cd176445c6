"""GraphQL pass-through import: the endpoint's schema (SDL, or the answer to an introspection
query) validated with graphql-core and kept as the API's `graphql` schema; the endpoint is the
serviceUrl. Queries are routed by the gateway to the single endpoint, so there are no REST
operations to create."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, build_client_schema, build_schema, get_introspection_query, print_schema

from portico.resources.importers.model import Imported, ImportFailed

GRAPHQL_CONTENT_TYPE = "application/vnd.ms-azure-apim.graphql.schema"
GRAPHQL_SCHEMA_ID = "graphql"
INTROSPECTION_QUERY = get_introspection_query(descriptions=True)


def sdl_from_text(text: str) -> str:
    """A GraphQL schema in SDL, validated (and printed back in canonical form)."""
    try:
        return print_schema(build_schema(text))
    except (GraphQLError, TypeError) as exc:
        where = None
        if isinstance(exc, GraphQLError) and exc.locations:
            loc = exc.locations[0]
            where = f"line {loc.line}, column {loc.column}"
        raise ImportFailed(
            f"the GraphQL schema is invalid: {str(exc).splitlines()[0][:300]}", where=where
        ) from None


def sdl_from_introspection(answer: Any) -> str:
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict) or "__schema" not in data:
        raise ImportFailed("the GraphQL endpoint did not answer the introspection query with a schema")
    try:
        return print_schema(build_client_schema(data))  # type: ignore[arg-type]
    except (GraphQLError, TypeError, KeyError) as exc:
        raise ImportFailed(f"the GraphQL introspection result is invalid: {str(exc)[:300]}") from None


def import_graphql(endpoint: str, sdl: str) -> Imported:
    out = Imported()
    out.api["type"] = "graphql"
    out.api["serviceUrl"] = endpoint
    out.schemas.append((GRAPHQL_SCHEMA_ID, {"contentType": GRAPHQL_CONTENT_TYPE, "document": {"value": sdl}}))
    return out
