"""Reading untrusted definition text safely: YAML (safe tags only, bounded alias expansion), JSON,
and XML without DTDs (no external entities, no entity expansion bombs)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError

import orjson
import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as xml_fromstring

from portico.resources.importers.model import ImportFailed

# A document whose aliases would expand to more nodes than this is refused (a "billion laughs"
# written with YAML anchors is a few hundred bytes).
MAX_EXPANDED_NODES = 2_000_000


def load_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        col = exc.pos - (text.rfind("\n", 0, exc.pos) + 1) + 1
        raise ImportFailed(
            f"the document is not valid JSON: {exc.msg}", where=f"line {line}, column {col}"
        ) from None


def load_yaml(text: str) -> Any:
    """YAML (JSON is YAML too) with the safe loader; aliases are allowed only while the expanded
    document stays under MAX_EXPANDED_NODES."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ImportFailed(
            f"the document is not valid YAML: {exc.problem or exc.context}", where=where
        ) from None
    except yaml.YAMLError as exc:
        raise ImportFailed(f"the document is not valid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise ImportFailed("the document is nested too deeply") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Counts the nodes of the document as if every alias were copied out, without copying."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            raise ImportFailed("the YAML document refers to itself (recursive alias)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_EXPANDED_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_EXPANDED_NODES:
                    break
        active.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise ImportFailed(
                f"the YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?)"
            )
        sizes[key] = total
        return total

    size(root)


def load_structured(text: str) -> Any:
    """JSON when it looks like JSON (faster and gives exact positions), YAML otherwise."""
    return load_json(text) if text.lstrip().startswith(("{", "[")) else load_yaml(text)


def load_xml(text: str) -> Element:
    try:
        root: Element = xml_fromstring(
            text.encode(), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        return root
    except DefusedXmlException as exc:
        raise ImportFailed(
            f"the XML document is refused: {type(exc).__name__} (DTDs and entities are not accepted)"
        ) from None
    except ParseError as exc:
        line, col = exc.position
        raise ImportFailed(
            "the document is not well-formed XML", where=f"line {line}, column {col + 1}"
        ) from None
