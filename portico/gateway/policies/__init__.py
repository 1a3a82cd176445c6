"""API Management policies: parsing, validation (for the control plane) and execution.

`validate_policy_document` is what the control plane calls on every policy PUT: an unknown
element, a bad attribute or an invalid expression is refused with a 400 whose message names the
element, its line and column, and the problem.
"""

from __future__ import annotations

from collections.abc import Callable

from portico.arm.errors import ArmError
from portico.gateway.policies.base import CompileContext
from portico.gateway.policies.pipeline import compile_document
from portico.gateway.policies.xmltree import PolicyDocumentError


def validate_policy_document(xml: str, scope: str = "") -> None:
    """`scope`: where the document is stored ("" global, "apis/a", "apis/a/operations/o"...)."""
    refuse_invalid(
        lambda doc: compile_document(doc, CompileContext(validate_only=True, scope=f"validate:{scope}")), xml
    )


def refuse_invalid(check: Callable[[str], object], xml: str) -> None:
    """Runs a compile `check` of a document, turning what it finds wrong into the control plane's 400."""
    try:
        check(xml)
    except PolicyDocumentError as exc:
        raise ArmError(400, "ValidationError", str(exc), target="value") from None
    except RecursionError:
        raise ArmError(
            400, "ValidationError", "Policy document is too deeply nested.", target="value"
        ) from None


__all__ = ["refuse_invalid", "validate_policy_document"]
