"""Well-formedness checks of policy documents (the gateway compiles them; here we only guard storage)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from portico.arm.errors import ArmError
from portico.gateway.gql import is_resolver_policy, validate_data_source
from portico.gateway.policies import refuse_invalid, validate_policy_document

SECTIONS = ("inbound", "backend", "outbound", "on-error")


def logger_ids(xml: str) -> list[str]:
    """The literal `logger-id`s of the `<log-to-eventhub>` policies of a policy document or fragment.
    An expression or named value (`@(...)`, `{{name}}`) is known only per request, so not listed; a
    document that does not parse lists nothing (its own check reports why)."""
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        return []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    out = []
    for node in root.iter("log-to-eventhub"):
        logger = node.get("logger-id", "")
        if logger and not logger.startswith("@") and "{{" not in logger:
            out.append(logger)
    return out


def check_policy_document(value: str, *, resolver: bool = False, scope: str = "") -> None:
    """`resolver`: the policy of a GraphQL resolver, whose root is its data source; `scope`: the
    policy's owner ("" global, "apis/a/operations/o"...), for policies allowed only at some scopes."""
    if "<!DOCTYPE" in value or "<!ENTITY" in value:
        raise ArmError(
            400,
            "ValidationError",
            "Policy document must not contain a DOCTYPE or entity declarations.",
            target="value",
        )
    if resolver:
        refuse_invalid(validate_data_source, value)
        return
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
    validate_policy_document(value, scope)


__all__ = ["SECTIONS", "check_policy_document", "is_resolver_policy"]
