"""OData metadata documents (EDMX / CSDL XML, OData v2 and v4): what an OData API exposes, read
from untrusted text — without DTDs or entities (defusedxml), size- and element-bounded. Shared by the
API importer (which refuses a bad document) and the gateway (validate-odata-request)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

MAX_EDMX_BYTES = 20 * 1024 * 1024
MAX_ELEMENTS = 500_000

EDMX_V4 = "http://docs.oasis-open.org/odata/ns/edmx"
EDMX_V2 = "http://schemas.microsoft.com/ado/2007/06/edmx"  # OData v1-v3 (with m:DataServiceVersion)
METADATA_V2 = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
# The container members a client addresses as the first segment of a resource path.
MEMBERS = ("EntitySet", "Singleton", "FunctionImport", "ActionImport")


class EdmxError(Exception):
    """The document is not a usable OData metadata document: why, and where (a line) when known."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _ns(tag: object) -> str:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


@dataclass
class ODataModel:
    """What an OData schema exposes: its protocol version ("2.0", "4.0", "4.01") and the names of
    the entity container's members by kind."""

    version: str
    members: dict[str, list[str]] = field(default_factory=dict)

    def names(self) -> set[str]:
        return {name for names in self.members.values() for name in names}


class _LineBuilder(TreeBuilder):
    """A tree builder that remembers the line each element starts on (for refusals)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.expat: object = None
        self.count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        el = super().start(tag, attrs)
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise EdmxError(f"the metadata document has more than {MAX_ELEMENTS} elements")
        self.lines[id(el)] = int(getattr(self.expat, "CurrentLineNumber", 0))
        return el


def _parse(text: str) -> tuple[Element, dict[int, int]]:
    data = text.encode()
    if len(data) > MAX_EDMX_BYTES:
        raise EdmxError(f"the metadata document is larger than {MAX_EDMX_BYTES} bytes")
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    builder.expat = parser.parser
    try:
        parser.feed(data)
        root: Element = parser.close()
    except DefusedXmlException as exc:
        raise EdmxError(
            f"the metadata document is refused: {type(exc).__name__} (DTDs and entities are not accepted)"
        ) from None
    except ParseError as exc:
        line, col = exc.position
        raise EdmxError(
            "the metadata document is not well-formed XML", f"line {line}, column {col + 1}"
        ) from None
    return root, builder.lines


def read_model(text: str) -> ODataModel:
    """The model of an EDMX metadata document; EdmxError naming what is wrong (and its line)."""
    root, lines = _parse(text)

    def at(el: Element) -> str:
        return f"line {lines.get(id(el), 1)}"

    if _local(root.tag) != "Edmx" or _ns(root.tag) not in (EDMX_V4, EDMX_V2):
        raise EdmxError(
            f"the root element is '{_local(root.tag)[:80]}' in namespace '{_ns(root.tag)[:120]}', not an "
            "OData metadata document (edmx:Edmx)",
            at(root),
        )
    services = [c for c in root if _local(c.tag) == "DataServices" and _ns(c.tag) == _ns(root.tag)]
    if len(services) != 1:
        raise EdmxError("the metadata document needs exactly one edmx:DataServices element", at(root))
    version = _version(root, services[0], at)
    schemas = [c for c in services[0] if _local(c.tag) == "Schema"]
    if not schemas:
        raise EdmxError("the metadata document defines no Schema", at(services[0]))
    model = ODataModel(version, {kind: [] for kind in MEMBERS})
    containers = 0
    for schema in schemas:
        if not schema.get("Namespace"):
            raise EdmxError("a Schema has no Namespace attribute", at(schema))
        for container in (c for c in schema if _local(c.tag) == "EntityContainer"):
            containers += 1
            for member in container:
                kind = _local(member.tag)
                if kind not in MEMBERS:
                    continue
                name = member.get("Name")
                if not name:
                    raise EdmxError(f"an {kind} has no Name attribute", at(member))
                model.members[kind].append(name)
    if containers == 0:
        raise EdmxError("the metadata document defines no EntityContainer (nothing to address)")
    return model


def _version(root: Element, services: Element, at: Callable[[Element], str]) -> str:
    where = at(root)
    edmx_version = (root.get("Version") or "").strip()
    if _ns(root.tag) == EDMX_V4:
        if edmx_version not in ("4.0", "4.01"):
            raise EdmxError(
                f"edmx:Edmx Version '{edmx_version[:20]}' is not an OData v4 version (4.0 or 4.01)",
                where,
            )
        return edmx_version
    version = (services.get(f"{{{METADATA_V2}}}DataServiceVersion") or "1.0").strip()
    if version not in ("1.0", "2.0"):
        raise EdmxError(
            f"DataServiceVersion '{version[:20]}' is not supported: OData v2 (1.0, 2.0) and v4 "
            "metadata documents can be imported",
            at(services),
        )
    return "2.0"
