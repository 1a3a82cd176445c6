"""The OData schemas the gateway keeps: each OData API's metadata document (its `odata` schema),
read on first use by `validate-odata-request` into the entity container's names and the version.
Reading is cached by document, so a configuration reload re-reads nothing that did not change."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from portico.edmx import EdmxError, ODataModel, read_model
from portico.names import fold_name

ODATA_SCHEMA_MARKER = "odata.schema"  # in the content type application/vnd.ms-azure-apim.odata.schema


class ODataSchemas:
    """Folded API id → the JSON text of its OData schema entity; models read when asked for."""

    def __init__(self, texts: dict[str, str | bytes] | None = None) -> None:
        self.texts = texts or {}
        self._models: dict[str, ODataModel | str] = {}

    def model(self, api: str) -> ODataModel | str | None:
        """The model of API `api` (folded id), why its schema is unusable, or None: it has none."""
        found = self._models.get(api)
        if found is None:
            text = self.texts.get(api)
            if text is None:
                return None
            found = self._models[api] = _model_of_entity(text)
        return found


def odata_schemas(apis: dict[str, Any], raw_schemas: dict[tuple[str, str], Any]) -> ODataSchemas:
    """The OData schemas of the OData APIs in `apis` (folded id → routing.Api), from the schema
    rows (parent, name) → JSON text."""
    wanted = {k for k, a in apis.items() if str(a.data.get("type") or "").lower() == "odata"}
    texts: dict[str, str | bytes] = {}
    if wanted:
        for (parent, _name), text in sorted(raw_schemas.items()):
            api = fold_name(parent.split("/", 1)[-1])
            if api in wanted and api not in texts and is_odata_schema(text):
                texts[api] = text
    return ODataSchemas(texts)


def is_odata_schema(text: str | bytes) -> bool:
    marker = ODATA_SCHEMA_MARKER
    return marker.encode() in text if isinstance(text, bytes) else marker in text


def _model_of_entity(text: str | bytes) -> ODataModel | str:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "the OData schema is not readable"
    value = ((data.get("document") or {}) if isinstance(data, dict) else {}).get("value")
    if not isinstance(value, str):
        return "the OData schema has no metadata document"
    return _model_of_document(value)


@lru_cache(maxsize=64)
def _model_of_document(value: str) -> ODataModel | str:
    try:
        return read_model(value)
    except EdmxError as exc:
        return exc.message


__all__ = ["ODataSchemas", "is_odata_schema", "odata_schemas"]
