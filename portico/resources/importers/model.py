"""What an importer produces: the API's properties, its operations and its schemas, as stored entities."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from portico.arm.errors import ArmError

# An operation name is an ARM resource name of at most 80 characters; 4 are kept for "-999".
_NAME_MAX = 76
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


class ImportFailed(ArmError):
    """The definition cannot be imported: 400 naming the cause (and where, when the parser says)."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        text = f"{message} (at {where})" if where else message
        super().__init__(
            400,
            "ValidationError",
            f"API definition cannot be imported: {text}",
            target="properties.value",
            details=[
                {"code": "InvalidDefinition", "target": where or "properties.value", "message": message}
            ],
        )


@dataclass(frozen=True)
class Options:
    """Import settings from the request body."""

    translate_required_query: Literal["template", "query"] = "template"
    api_type: str | None = None  # the body's apiType (soap, graphql, http...)
    wsdl_service: str | None = None
    wsdl_endpoint: str | None = None
    source_url: str | None = None  # where a link format was fetched from (relative server URLs)


@dataclass
class Imported:
    """An API definition, as the configuration it becomes."""

    api: dict[str, Any] = field(default_factory=dict)  # displayName, description, serviceUrl, type...
    operations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    schemas: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    policies: list[tuple[str, str]] = field(default_factory=list)  # (operation name, policy XML)
    _names: set[str] = field(default_factory=set, repr=False)

    def add_operation(self, wanted: str, props: dict[str, Any]) -> str:
        """Adds an operation under Azure's normalised name of `wanted`, de-duplicated with -1..-999."""
        base = normalise_name(wanted) or "operation"
        name = base
        n = 0
        while name in self._names:
            n += 1
            if n > 999:
                raise ImportFailed(f"too many operations named like '{base}'")
            name = f"{base}-{n}"
        self._names.add(name)
        self.operations.append((name, props))
        return name


def normalise_name(value: str) -> str:
    """Azure's operation name rules: lower case, each run of non-alphanumerics one dash, dashes
    trimmed, at most 76 characters (`GET-/foo/{bar}` → `get-foo-bar`)."""
    return _NON_ALNUM.sub("-", value.lower()).strip("-")[:_NAME_MAX].rstrip("-")


def clip(text: Any, limit: int) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return text if len(text) <= limit else text[:limit]
