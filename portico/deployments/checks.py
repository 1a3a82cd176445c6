"""Checks of a whole template before anything runs: known functions, and a dependency order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portico.deployments.errors import TemplateError
from portico.deployments.expressions import ExpressionError, is_expression, parse
from portico.deployments.functions import functions_used, is_known_function

if TYPE_CHECKING:
    from portico.deployments.template import PlannedResource


def check_functions(template: dict[str, Any]) -> None:
    """Every expression in the template parses and calls only known functions (before anything runs)."""
    if template.get("functions"):
        raise TemplateError(
            "User-defined template functions are not supported by Portico.",
            "functions",
            code="UnsupportedTemplateFeature",
        )
    stack: list[tuple[Any, str]] = [
        (template.get(k), k) for k in ("parameters", "variables", "resources", "outputs")
    ]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if not is_expression(value):
                continue
            try:
                node = parse(value)
            except ExpressionError as exc:
                raise TemplateError(f"The template expression is malformed: {exc}.", where) from None
            for call in functions_used(node):
                if not is_known_function(call.name):
                    raise TemplateError(
                        f"The template function '{call.display}' is not supported.",
                        where,
                        code="InvalidTemplate",
                    )
        elif isinstance(value, dict):
            stack.extend((v, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))


def ordered(planned: list[PlannedResource]) -> list[PlannedResource]:
    """Topological order (dependencies first, template order otherwise); a cycle is a TemplateError."""
    by_key = {p.key: p for p in planned}
    state: dict[str, int] = {}
    out: list[PlannedResource] = []
    for start in planned:
        if state.get(start.key):
            continue
        stack: list[tuple[PlannedResource, list[str]]] = [(start, sorted(start.depends_on))]
        state[start.key] = 1
        while stack:
            node, pending = stack[-1]
            if pending:
                dep = by_key.get(pending.pop())
                if dep is None:
                    continue
                mark = state.get(dep.key, 0)
                if mark == 1:
                    raise TemplateError(
                        f"Circular dependency between '{node.name}' and '{dep.name}'.",
                        node.path + ".dependsOn",
                    )
                if mark == 0:
                    state[dep.key] = 1
                    stack.append((dep, sorted(dep.depends_on)))
                continue
            state[node.key] = 2
            out.append(node)
            stack.pop()
    return out
