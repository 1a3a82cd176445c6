"""API import: turning an API definition (OpenAPI, Swagger, WSDL, WADL, GraphQL) into the ordinary
configuration of an API — its properties, operations and schemas — as Azure API Management does.

Each format has its own module; `parse` dispatches. Parsing is pure (no I/O, no database): link
formats are fetched first (`fetch.py`), and the result is written by `portico/resources/api_import.py`.
"""

from __future__ import annotations

from portico.resources.importers.model import Imported, ImportFailed, Options
from portico.resources.importers.parse import LINK_FORMATS, SUPPORTED_FORMATS, parse

__all__ = ["LINK_FORMATS", "SUPPORTED_FORMATS", "ImportFailed", "Imported", "Options", "parse"]
