"""Well-formedness checks of policy documents (the gateway compiles them; here we only guard storage)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from portico.arm.errors import ArmError
from portico.gateway.policies import validate_policy_document

SECTIONS = ("inbound", "backend", "outbound", "on-error")


def check_policy_document(value: str) -> None:
    if "<!DOCTYPE" in value or "<!ENTITY" in value:
        raise ArmError(
            400,
            "ValidationError",
            "Policy document must not contain a DOCTYPE or entity declarations.",
            target="value",
        )
    try:
        root = ET.fromstring(value)
    except ET.ParseError as exc:
        raise ArmError(
            400, "ValidationError", f"Policy document is not well-formed XML: {exc}.", target="value"
        ) from None
    if root.tag != "policies":
        raise ArmError(
            400,
            "ValidationError",
            f"Policy document root element must be <policies>, found <{root.tag}>.",
            target="value",
        )
    for child in root:
        if child.tag not in SECTIONS:
            raise ArmError(
                400,
                "ValidationError",
                f"Unknown policy section <{child.tag}>: allowed sections are {', '.join('<' + s + '>' for s in SECTIONS)}.",
                target="value",
            )
    # Elements, attributes and expressions are checked by the gateway's policy compiler.
    validate_policy_document(value)
