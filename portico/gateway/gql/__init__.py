"""Synthetic GraphQL APIs in the gateway: resolver policies (`<http-data-source>`, datasource.py),
what their expressions see (values.py), execution with graphql-core behind the backend seam
(executor.py) and the endpoints of a service's configuration (endpoints.py). Import from here."""

from __future__ import annotations

from portico.gateway.gql.datasource import DataSource, validate_data_source
from portico.gateway.gql.endpoints import GRAPHQL_CONTENT_TYPE, graphql_endpoints, is_resolver_policy
from portico.gateway.gql.executor import GraphqlBackend, GraphqlEndpoint, GraphqlRequest, execute_request

__all__ = [
    "GRAPHQL_CONTENT_TYPE",
    "DataSource",
    "GraphqlBackend",
    "GraphqlEndpoint",
    "GraphqlRequest",
    "execute_request",
    "graphql_endpoints",
    "is_resolver_policy",
    "validate_data_source",
]
