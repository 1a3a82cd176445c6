"""A deployment template, checked and expanded: parameters, variables, resources, outputs.

`Deployment` is the evaluation scope of one template run. `plan()` expands the resources (copy
loops, nested child resources, conditions) into `PlannedResource`s with their ids and dependencies;
properties are evaluated later, when the resource is about to be deployed, because `reference()`
and `list*()` read resources deployed earlier in the same run. An expression that needs such a
value raises `Pending`; the runner fetches it and evaluates again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from portico.deployments.checks import check_functions, ordered
from portico.deployments.errors import Pending, TemplateError
from portico.deployments.expressions import ExpressionError, parse
from portico.deployments.functions import (
    evaluate,
    evaluate_string,
)
from portico.deployments.values import provider_path

SECURE_TYPES = frozenset({"securestring", "secureobject"})
PARAMETER_TYPES = frozenset({"string", "int", "bool", "object", "array", *SECURE_TYPES})
MAX_RESOURCES = 10_000
MAX_COPY = 800  # ARM's limit on one copy loop


@dataclass
class PlannedResource:
    path: str  # where it is in the template, for messages
    symbol: str  # symbolic name (languageVersion 2.0) or the resource's full name
    type: str
    api_version: str
    name: str  # full name: "svc/apis/echo"
    id: str
    source: dict[str, Any]  # the template's resource object (properties unevaluated)
    copy_name: str | None
    copy_index: int | None
    depends_raw: list[str]
    existing: bool
    depends_on: set[str] = field(default_factory=set)  # ids (lower-cased)

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass
class ResourceGroupInfo:
    subscription_id: str
    name: str
    location: str
    tags: dict[str, str]
    tenant_id: str


class Deployment:
    """One run of a template: its parameters, variables and what expressions can see."""

    def __init__(
        self,
        template: Any,
        parameters: Any,
        *,
        name: str,
        group: ResourceGroupInfo,
        environment: dict[str, Any],
        mode: str = "Incremental",
    ) -> None:
        if not isinstance(template, dict):
            raise TemplateError("The template must be a JSON object.", "template")
        self.template = template
        self.name = name
        self.group = group
        self._environment = environment
        self.mode = mode
        self.values: dict[tuple[str, ...], Any] = {}  # fetched by the runner: references, list*()
        self.deployed: dict[str, Any] = {}  # resource key -> its state after deployment
        self.symbols: dict[str, str] = {}  # symbolic or full name (lower) -> resource key
        self._planned_keys: set[str] = set()
        self._copy: dict[str, int] = {}
        self._current_loop: str | None = None
        self._variables: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self._now_allowed = False
        self.parameter_types: dict[str, str] = {}
        self.parameters = self._bind_parameters(parameters)

    # --- parameters and variables ----------------------------------------------------------------------
    def _bind_parameters(self, supplied: Any) -> dict[str, Any]:
        declared = self.template.get("parameters") or {}
        if not isinstance(declared, dict):
            raise TemplateError("'parameters' must be an object.", "parameters")
        if supplied is None:
            supplied = {}
        if not isinstance(supplied, dict):
            raise TemplateError("The deployment parameters must be an object.", "properties.parameters")
        by_lower = {k.lower(): k for k in declared}
        unknown = [k for k in supplied if k.lower() not in by_lower]
        if unknown:
            raise TemplateError(
                f"The template parameters '{', '.join(sorted(unknown))}' are not valid; they are not present in the template.",
                "properties.parameters",
                code="InvalidTemplate",
            )
        given = {k.lower(): v for k, v in supplied.items()}
        out: dict[str, Any] = {}
        for pname, spec in declared.items():
            where = f"parameters.{pname}"
            if not isinstance(spec, dict):
                raise TemplateError("A parameter must be an object with a 'type'.", where)
            ptype = str(spec.get("type", "")).lower()
            if ptype not in PARAMETER_TYPES:
                raise TemplateError(f"The parameter type '{spec.get('type')}' is not valid.", where + ".type")
            self.parameter_types[pname] = ptype
            entry = given.get(pname.lower())
            if entry is not None:
                if not isinstance(entry, dict) or ("value" not in entry and "reference" not in entry):
                    raise TemplateError(
                        'A parameter value must be given as {"value": ...}.', f"properties.parameters.{pname}"
                    )
                if "reference" in entry:
                    raise TemplateError(
                        "Key Vault parameter references are not supported by Portico; pass the value.",
                        f"properties.parameters.{pname}.reference",
                        code="UnsupportedParameterReference",
                    )
                value = entry["value"]
            elif "defaultValue" in spec:
                self._now_allowed = True
                try:
                    value = self._evaluate_at(spec["defaultValue"], where + ".defaultValue")
                finally:
                    self._now_allowed = False
            else:
                raise TemplateError(f"The value for the template parameter '{pname}' is not provided.", where)
            out[pname] = value
            out[pname] = self._check_parameter(pname, ptype, spec, value, where)
        return out

    def _check_parameter(self, pname: str, ptype: str, spec: dict[str, Any], value: Any, where: str) -> Any:
        base = {"securestring": "string", "secureobject": "object"}.get(ptype, ptype)
        if base == "int" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)  # parameter files written as strings, as ARM converts them
        if base == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        ok = {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "object": isinstance(value, dict),
            "array": isinstance(value, list),
        }[base]
        if not ok:
            raise TemplateError(
                f"The value of the template parameter '{pname}' is not of type '{spec.get('type')}'.", where
            )
        allowed = spec.get("allowedValues")
        if isinstance(allowed, list) and allowed:
            vals = value if base == "array" else [value]
            bad = [v for v in vals if v not in allowed]
            if bad:
                shown = "the value" if ptype in SECURE_TYPES else f"'{json.dumps(bad[0])[:80]}'"
                raise TemplateError(
                    f"The provided value {shown} for the template parameter '{pname}' is not valid; the allowed values are {json.dumps(allowed)[:300]}.",
                    where,
                )
        if base == "int":
            if "minValue" in spec and value < spec["minValue"]:
                raise TemplateError(f"The value of '{pname}' must be at least {spec['minValue']}.", where)
            if "maxValue" in spec and value > spec["maxValue"]:
                raise TemplateError(f"The value of '{pname}' must be at most {spec['maxValue']}.", where)
        if base in ("string", "array"):
            if "minLength" in spec and len(value) < spec["minLength"]:
                raise TemplateError(f"The length of '{pname}' must be at least {spec['minLength']}.", where)
            if "maxLength" in spec and len(value) > spec["maxLength"]:
                raise TemplateError(f"The length of '{pname}' must be at most {spec['maxLength']}.", where)
        return value

    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        for k, v in self.parameters.items():
            if k.lower() == name.lower():
                return v
        raise ExpressionError(f"the template parameter '{name}' is not defined")

    def variable(self, name: str) -> Any:
        low = name.lower()
        if low in self._variables:
            return self._variables[low]
        declared = self.template.get("variables") or {}
        key = next((k for k in declared if k.lower() == low), None)
        if key is None:
            copies = declared.get("copy") if isinstance(declared, dict) else None
            for c in copies if isinstance(copies, list) else []:
                if isinstance(c, dict) and str(c.get("name", "")).lower() == low:
                    value = self._copy_variable(c, f"variables.copy[{name}]")
                    self._variables[low] = value
                    return value
            raise ExpressionError(f"the template variable '{name}' is not defined")
        if low in self._resolving:
            raise ExpressionError(f"the template variable '{name}' refers to itself")
        self._resolving.add(low)
        try:
            value = self.evaluate_value(declared[key], f"variables.{key}")
        finally:
            self._resolving.discard(low)
        self._variables[low] = value
        return value

    def _copy_variable(self, spec: dict[str, Any], where: str) -> list[Any]:
        count = self._count(spec.get("count"), where + ".count")
        name = str(spec.get("name"))
        out = []
        for i in range(count):
            with self.loop(name, i):
                out.append(self.evaluate_value(spec.get("input"), where + ".input"))
        return out

    # --- what expressions see --------------------------------------------------------------------------
    def copy_index(self, loop: str | None) -> int:
        name = loop if loop is not None else self._current_loop
        if name is None or name.lower() not in self._copy:
            raise ExpressionError(
                f"copyIndex('{loop}') is used outside its copy loop"
                if loop
                else "copyIndex() is used outside a copy loop"
            )
        return self._copy[name.lower()]

    def loop(self, name: str, index: int) -> _Loop:
        return _Loop(self, name, index)

    def subscription_id(self) -> str:
        return self.group.subscription_id

    def resource_group(self) -> dict[str, Any]:
        g = self.group
        return {
            "id": f"/subscriptions/{g.subscription_id}/resourceGroups/{g.name}",
            "name": g.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": g.location,
            "tags": g.tags,
            "properties": {"provisioningState": "Succeeded"},
        }

    def subscription(self) -> dict[str, Any]:
        g = self.group
        return {
            "id": f"/subscriptions/{g.subscription_id}",
            "subscriptionId": g.subscription_id,
            "tenantId": g.tenant_id,
            "displayName": g.subscription_id,
        }

    def deployment(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "properties": {
                "template": {"contentVersion": self.template.get("contentVersion", "1.0.0.0")},
                "mode": self.mode,
                "provisioningState": "Running",
            },
        }

    def environment(self) -> dict[str, Any]:
        return self._environment

    def allow_now(self) -> bool:
        return self._now_allowed

    def reference(self, target: str, api_version: str | None, full: bool) -> Any:
        key = self._resolve_target(target)
        if key in self.deployed:
            state = self.deployed[key]
        else:
            fetched = ("reference", key, api_version or "")
            if fetched not in self.values:
                raise Pending(fetched)
            state = self.values[fetched]
        if full:
            return state
        return state.get("properties", {}) if isinstance(state, dict) else state

    def list_action(self, resource_id: str, action: str, api_version: str, body: Any) -> Any:
        fetched = (
            "list",
            self._resolve_target(resource_id),
            action,
            api_version,
            json.dumps(body, sort_keys=True),
        )
        if fetched not in self.values:
            raise Pending(fetched)
        return self.values[fetched]

    def _resolve_target(self, target: str) -> str:
        low = target.lower()
        if low in self.symbols:
            return self.symbols[low]
        if low.startswith("/subscriptions/"):
            return low
        raise ExpressionError(f"reference(): '{target}' is not a resource of this template nor a resource id")

    # --- evaluation helpers ----------------------------------------------------------------------------
    def evaluate_value(self, value: Any, where: str) -> Any:
        """Evaluate every expression in `value`; errors name `where` (the template path)."""
        if isinstance(value, str):
            return self._evaluate_at(value, where)
        if isinstance(value, dict):
            if "copy" in value and isinstance(value["copy"], list) and where.endswith("properties"):
                return self._property_copies(value, where)
            return {k: self.evaluate_value(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.evaluate_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    def _property_copies(self, value: dict[str, Any], where: str) -> dict[str, Any]:
        out = {k: self.evaluate_value(v, f"{where}.{k}") for k, v in value.items() if k != "copy"}
        for i, spec in enumerate(value["copy"]):
            at = f"{where}.copy[{i}]"
            if not isinstance(spec, dict) or "name" not in spec:
                raise TemplateError("A property copy needs 'name', 'count' and 'input'.", at)
            count = self._count(self.evaluate_value(spec.get("count"), at + ".count"), at + ".count")
            items = []
            for n in range(count):
                with self.loop(str(spec["name"]), n):
                    items.append(self.evaluate_value(spec.get("input"), at + ".input"))
            out[str(spec["name"])] = items
        return out

    def _evaluate_at(self, value: Any, where: str) -> Any:
        if not isinstance(value, str):
            return self.evaluate_value(value, where)
        try:
            return evaluate_string(value, self)
        except ExpressionError as exc:
            raise TemplateError(f"The template expression failed: {exc}.", where) from None

    def _count(self, value: Any, where: str) -> int:
        value = self._evaluate_at(value, where) if isinstance(value, str) else value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COPY:
            raise TemplateError(f"The copy count must be an integer from 0 to {MAX_COPY}.", where)
        return value

    # --- resources ---------------------------------------------------------------------------------------
    def plan(self) -> list[PlannedResource]:
        """The template's resources, expanded and ordered so that dependencies come first."""
        check_functions(self.template)
        raw = self.template.get("resources", [])
        entries: list[tuple[str, str, dict[str, Any]]]
        if isinstance(raw, dict):  # languageVersion 2.0: symbolic names
            entries = [(f"resources['{k}']", k, v) for k, v in raw.items()]
        elif isinstance(raw, list):
            entries = [(f"resources[{i}]", "", v) for i, v in enumerate(raw)]
        else:
            raise TemplateError("'resources' must be an array.", "resources")
        planned: list[PlannedResource] = []
        for where, symbol, res in entries:
            self._expand(res, where, symbol, None, planned)
        if len(planned) > MAX_RESOURCES:
            raise TemplateError(f"The template has more than {MAX_RESOURCES} resources.", "resources")
        self._link(planned)
        return ordered(planned)

    def _expand(
        self,
        res: Any,
        where: str,
        symbol: str,
        parent: PlannedResource | None,
        out: list[PlannedResource],
    ) -> None:
        if not isinstance(res, dict):
            raise TemplateError("A resource must be an object.", where)
        for required in ("type", "name"):
            if required not in res:
                raise TemplateError(f"The resource has no '{required}'.", where)
        existing = bool(res.get("existing", False))
        if "apiVersion" not in res:
            raise TemplateError("The resource has no 'apiVersion'.", where)
        copy = res.get("copy")
        if copy is not None:
            if not isinstance(copy, dict) or "name" not in copy or "count" not in copy:
                raise TemplateError("A resource copy needs 'name' and 'count'.", where + ".copy")
            loop = str(copy["name"])
            count = self._count(copy["count"], where + ".copy.count")
            mode = str(copy.get("mode", "Parallel")).lower()
            if mode not in ("parallel", "serial"):
                raise TemplateError("copy.mode must be 'Parallel' or 'Serial'.", where + ".copy.mode")
            previous: PlannedResource | None = None
            batch = copy.get("batchSize")
            for i in range(count):
                with self.loop(loop, i):
                    item = self._one(res, where, symbol, parent, loop, i, existing, out)
                if item is not None and mode == "serial":
                    if previous is not None and (not isinstance(batch, int) or batch <= 1 or i % batch == 0):
                        item.depends_on.add(previous.key)
                    previous = item
            self.symbols.setdefault(loop.lower(), f"copy:{loop.lower()}")
            return
        self._one(res, where, symbol, parent, None, None, existing, out)

    def _one(
        self,
        res: dict[str, Any],
        where: str,
        symbol: str,
        parent: PlannedResource | None,
        loop: str | None,
        index: int | None,
        existing: bool,
        out: list[PlannedResource],
    ) -> PlannedResource | None:
        if "condition" in res:
            cond = self._evaluate_at(res["condition"], where + ".condition")
            if not isinstance(cond, bool):
                raise TemplateError("The condition must evaluate to a bool.", where + ".condition")
            if not cond:
                self._skipped(res, where, symbol, parent)
                return None
        rtype = self._evaluate_at(res["type"], where + ".type")
        name = self._evaluate_at(res["name"], where + ".name")
        api_version = self._evaluate_at(res["apiVersion"], where + ".apiVersion")
        for value, what in ((rtype, "type"), (name, "name"), (api_version, "apiVersion")):
            if not isinstance(value, str) or not value:
                raise TemplateError(f"The resource {what} must be a non-empty string.", f"{where}.{what}")
        if (
            parent is not None
            and "/" not in rtype.split(".")[0]
            and not rtype.lower().startswith(parent.type.split("/")[0].lower() + "/")
        ):
            rtype = f"{parent.type}/{rtype}"
            name = f"{parent.name}/{name}"
        rtype = rtype.split("@")[0]
        types = rtype.split("/")[1:]
        names = name.split("/")
        if not types or len(names) != len(types):
            raise TemplateError(
                f"The resource name '{name}' does not match the type '{rtype}': it needs {len(types)} segment(s).",
                where + ".name",
            )
        try:
            rid = (
                f"/subscriptions/{self.group.subscription_id}/resourceGroups/{self.group.name}/"
                + provider_path(rtype, names)
            )
        except ExpressionError as exc:
            raise TemplateError(str(exc), where + ".type") from None
        if rtype.lower() == "microsoft.resources/deployments":
            for key in ("resourceGroup", "subscriptionId", "scope"):
                if key in res and self._evaluate_at(res[key], f"{where}.{key}") not in (
                    None,
                    self.group.name,
                    self.group.subscription_id,
                ):
                    raise TemplateError(
                        f"Nested deployments to another {key} are not supported by Portico.",
                        f"{where}.{key}",
                        code="UnsupportedTemplateFeature",
                    )
        depends = res.get("dependsOn") or []
        if not isinstance(depends, list):
            raise TemplateError("'dependsOn' must be an array.", where + ".dependsOn")
        raw_depends = []
        for i, d in enumerate(depends):
            value = self._evaluate_at(d, f"{where}.dependsOn[{i}]")
            if not isinstance(value, str):
                raise TemplateError("A dependsOn entry must be a string.", f"{where}.dependsOn[{i}]")
            raw_depends.append(value)
        item = PlannedResource(
            path=where if index is None else f"{where}[copy {index}]",
            symbol=symbol or name,
            type=rtype,
            api_version=api_version,
            name=name,
            id=rid,
            source=res,
            copy_name=loop,
            copy_index=index,
            depends_raw=raw_depends,
            existing=existing,
        )
        if parent is not None:
            item.depends_on.add(parent.key)
        if item.key in self._planned_keys:
            raise TemplateError(f"The resource '{rid}' is defined more than once in the template.", where)
        self._planned_keys.add(item.key)
        out.append(item)
        if symbol:
            self.symbols[symbol.lower()] = item.key
        self.symbols.setdefault(name.lower(), item.key)
        self.symbols.setdefault(f"{rtype}/{name}".lower(), item.key)
        # "Namespace/type/name/child/name", as templates write dependsOn with concat()
        self.symbols.setdefault(rid.split("/providers/", 1)[1].lower(), item.key)
        children = res.get("resources") or []
        if not isinstance(children, list):
            raise TemplateError("Child 'resources' must be an array.", where + ".resources")
        for i, child in enumerate(children):
            self._expand(child, f"{where}.resources[{i}]", "", item, out)
        return item

    def _skipped(self, res: dict[str, Any], where: str, symbol: str, parent: PlannedResource | None) -> None:
        """A resource whose condition is false: others may still name it in dependsOn (ARM drops
        such a dependency), so its names are known, as skipped."""
        try:
            rtype = self._evaluate_at(res["type"], where + ".type")
            name = self._evaluate_at(res["name"], where + ".name")
        except TemplateError:
            return
        if not isinstance(rtype, str) or not isinstance(name, str):
            return
        if parent is not None and "/" not in rtype:
            rtype, name = f"{parent.type}/{rtype}", f"{parent.name}/{name}"
        for alias in (symbol, name, f"{rtype}/{name}"):
            if alias:
                self.symbols.setdefault(alias.lower(), "skipped:")

    def _link(self, planned: list[PlannedResource]) -> None:
        keys = {p.key for p in planned}
        loops: dict[str, set[str]] = {}
        for p in planned:
            if p.copy_name:
                loops.setdefault(p.copy_name.lower(), set()).add(p.key)
        for p in planned:
            for i, dep in enumerate(p.depends_raw):
                low = dep.lower()
                if low in loops:
                    p.depends_on |= loops[low]
                    continue
                target = self.symbols.get(low)
                if target is None and low.startswith("/subscriptions/"):
                    target = low
                if target is not None and target.startswith(("copy:", "skipped:")):
                    continue  # an empty copy loop or a resource whose condition is false: nothing to wait for
                if target is None:
                    raise TemplateError(
                        f"The resource '{dep}' in dependsOn is not defined in the template.",
                        f"{p.path}.dependsOn[{i}]",
                    )
                if target in keys:
                    p.depends_on.add(target)
                # a dependency on a resource outside the template is already satisfied
            # a child depends on its ancestors in the template (they must exist first)
            parts = p.key.split("/")
            for cut in range(len(parts) - 2, 7, -2):
                ancestor = "/".join(parts[:cut])
                if ancestor in keys:
                    p.depends_on.add(ancestor)
                    break
            p.depends_on.discard(p.key)

    def outputs(self) -> dict[str, Any]:
        declared = self.template.get("outputs") or {}
        if not isinstance(declared, dict):
            raise TemplateError("'outputs' must be an object.", "outputs")
        out: dict[str, Any] = {}
        for oname, spec in declared.items():
            where = f"outputs.{oname}"
            if not isinstance(spec, dict) or "type" not in spec:
                raise TemplateError("An output needs a 'type'.", where)
            if "condition" in spec and not self._evaluate_at(spec["condition"], where + ".condition"):
                continue
            if "copy" in spec:
                c = spec["copy"]
                count = self._count(
                    self.evaluate_value(c.get("count"), where + ".copy.count"), where + ".copy.count"
                )
                values = []
                for i in range(count):
                    with self.loop("__output__", i):
                        values.append(self.evaluate_value(c.get("input"), where + ".copy.input"))
                value: Any = values
            else:
                value = self.evaluate_value(spec.get("value"), where + ".value")
            out[oname] = {"type": _output_type(str(spec["type"])), "value": value}
        return out


class _Loop:
    def __init__(self, deployment: Deployment, name: str, index: int) -> None:
        self.d, self.name, self.index = deployment, name.lower(), index
        self.saved: tuple[int | None, str | None] = (None, None)

    def __enter__(self) -> None:
        self.saved = (self.d._copy.get(self.name), self.d._current_loop)
        self.d._copy[self.name] = self.index
        self.d._current_loop = self.name

    def __exit__(self, *exc: object) -> None:
        old, current = self.saved
        if old is None:
            self.d._copy.pop(self.name, None)
        else:
            self.d._copy[self.name] = old
        self.d._current_loop = current


def _output_type(t: str) -> str:
    return {
        "string": "String",
        "securestring": "SecureString",
        "int": "Int",
        "bool": "Bool",
        "object": "Object",
        "secureobject": "SecureObject",
        "array": "Array",
    }.get(t.lower(), t)


def evaluate_expression(text: str, scope: Deployment) -> Any:
    """One expression string evaluated in `scope` (for tests and tools)."""
    return evaluate(parse(text), scope)
