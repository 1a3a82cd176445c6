"""XML Schema validation for validate-content (`validate-as="xml"` and `"soap"`) with `xmlschema`,
hardened: neither a schema nor a message may declare entities, and nothing is fetched (a schema
that includes or imports another by location is refused: Portico resolves no `schemaLocation`)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
import xmlschema
from defusedxml import DefusedXmlException

XSD_CONTENT_TYPE = "application/vnd.ms-azure-apim.xsd+xml"  # the schema entities a WSDL import makes
SOAP_ENVELOPES = frozenset(
    {"http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope"}
)
MAX_ERRORS = 5  # validation messages reported per message checked
MAX_MESSAGE = 300  # characters of one validation message


class XsdUnusable(Exception):
    """The XML schema cannot be built (invalid, or it refers to another by location)."""


def compile_xsd(sources: list[str]) -> Any:
    """A schema built from `sources` (XSD texts, one namespace or several). Raises XsdUnusable."""
    try:
        # no resource is fetched (allow), no entity or DTD is accepted (defuse)
        source: list[Any] | str = list(sources) if len(sources) > 1 else sources[0]
        return xmlschema.XMLSchema(source, allow="none", defuse="always")
    except (xmlschema.XMLSchemaException, xmlschema.XMLResourceError, ParseError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise XsdUnusable(_clip(first)) from None


def xml_errors(schema: Any, body: bytes, soap: bool) -> list[str]:
    """What is wrong with `body` (an XML document, or the elements in a SOAP envelope's Body)."""
    try:
        if soap:
            root = SafeET.fromstring(body, forbid_dtd=True)
            items: list[Any] = []
            namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
            if namespace not in SOAP_ENVELOPES or root.tag.rsplit("}", 1)[-1] != "Envelope":
                return ["The body is not a SOAP envelope."]
            for child in root:
                if child.tag == f"{{{namespace}}}Body":
                    items.extend(child)
        else:
            items = [xmlschema.XMLResource(body, allow="none", defuse="always")]
    except (ParseError, DefusedXmlException, xmlschema.XMLResourceError, ValueError) as exc:
        return [f"The body is not well-formed XML or is not allowed: {_clip(str(exc))}"]
    out: list[str] = []
    for item in items:
        try:
            for error in schema.iter_errors(item):
                out.append(f"{_clip(str(error.reason or error.message))} Path: {error.path or '/'}")
                if len(out) >= MAX_ERRORS:
                    return out
        except (xmlschema.XMLResourceError, ParseError) as exc:
            return [f"The body is not well-formed XML or is not allowed: {_clip(str(exc))}"]
    return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


__all__ = ["XSD_CONTENT_TYPE", "XsdUnusable", "compile_xsd", "xml_errors"]
