"""OData import: a service's metadata document (EDMX / CSDL XML, OData v2 or v4) kept as the API's
OData schema; the API is of type `odata` and its entity sets, singletons and functions are read from
that schema. As for pass-through GraphQL, no operations are created: the gateway passes every
request under the API's path to the service (keys, `$metadata`, `$batch`, query options).

The document is untrusted: `portico/edmx.py` reads it without DTDs or entities and bounded; a
refusal names the cause and, where there is one, the line."""

from __future__ import annotations

from portico.edmx import EdmxError, ODataModel
from portico.edmx import read_model as read_edmx
from portico.resources.importers.model import Imported, ImportFailed

ODATA_CONTENT_TYPE = "application/vnd.ms-azure-apim.odata.schema"
ODATA_SCHEMA_ID = "odata"


def read_model(text: str) -> ODataModel:
    """The model of a metadata document, or the import's 400 naming what is wrong."""
    try:
        return read_edmx(text)
    except EdmxError as exc:
        raise ImportFailed(exc.message, where=exc.where) from None


def service_url_of(link: str) -> str:
    """The service root of a `$metadata` URL (the URL without `/$metadata` and its query)."""
    base = link.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if base.lower().endswith("/$metadata"):
        base = base[: -len("/$metadata")]
    return base


def import_odata(text: str, link: str | None) -> Imported:
    read_model(text)
    out = Imported()
    out.api["type"] = "odata"
    if link is not None:
        out.api["serviceUrl"] = service_url_of(link)
    out.schemas.append((ODATA_SCHEMA_ID, {"contentType": ODATA_CONTENT_TYPE, "document": {"value": text}}))
    return out
