"""The schemas a service's validation policies check messages against (validate-content,
validate-parameters, validate-headers): its APIs' schema entities (`apis/{id}/schemas`: OpenAPI
components, Swagger definitions, JSON Schemas, XSDs) and its global schemas (`schemas`), kept as
the configuration holds them and compiled at first use — JSON with `jsonschema`, XML with
`xmlschema` (xsd.py) — once per configuration and set of options (`SchemaSet` lives as long as
the routing tables that made it)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from jsonschema import Draft4Validator, Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from portico.gateway.xsd import XSD_CONTENT_TYPE, XsdUnusable, compile_xsd
from portico.names import fold_name

MAX_ERRORS = 5  # validation messages reported per message checked
MAX_MESSAGE = 300  # characters of one validation message


class SchemaMissing(Exception):
    """The schema (or the definition in it) that a validation names does not exist, or cannot be used."""

    def __init__(self, message: str, *, definition: bool = False) -> None:
        super().__init__(message)
        self.definition = definition  # the schema exists, the definition in it does not


@dataclass(frozen=True, slots=True)
class Options:
    """Run-time overrides of validate-content's `<content>` (None: as the schema says)."""

    additional_properties: bool | None = None
    case_insensitive: bool = False


PLAIN = Options()


class Compiled:
    """One compiled schema (a definition of a document, or a whole JSON Schema)."""

    __slots__ = ("case_insensitive", "validator")

    def __init__(self, validator: Any, case_insensitive: bool) -> None:
        self.validator = validator
        self.case_insensitive = case_insensitive

    def errors(self, instance: Any) -> list[str]:
        """What is wrong with `instance` (at most MAX_ERRORS messages; empty: it conforms)."""
        if self.case_insensitive:
            instance = _folded_keys(instance)
        out: list[str] = []
        for error in self.validator.iter_errors(instance):
            out.append(_describe(error))
            if len(out) >= MAX_ERRORS:
                break
        return out


class SchemaSet:
    """Schema entities by API (folded parent `apis/{id}` and folded schema id → JSON text) and global
    schemas (folded id → properties); parsed and compiled on demand, cached here."""

    def __init__(self, api_schemas: dict[tuple[str, str], Any], global_schemas: dict[str, Any]) -> None:
        self._api = {(fold_name(p), fold_name(n)): text for (p, n), text in api_schemas.items()}
        self._global = {fold_name(n): data for n, data in global_schemas.items()}
        self._documents: dict[tuple[str, str], dict[str, Any] | str] = {}
        self._compiled: dict[tuple[Any, ...], Any] = {}  # Compiled, an XML schema, or SchemaMissing

    def has_api_schemas(self, api: str) -> bool:
        parent = fold_name(f"apis/{api}")
        return any(p == parent for p, _n in self._api)

    def definition(
        self, api: str, schema_id: str | None, type_name: str, options: Options = PLAIN
    ) -> Compiled:
        """The validator of definition `type_name` of the API's schema `schema_id` (None: the API's
        only schema). Raises SchemaMissing."""
        parent = fold_name(f"apis/{api}")
        if schema_id:
            key = (parent, fold_name(schema_id))
        else:
            own = [k for k in self._api if k[0] == parent]
            if len(own) != 1:
                raise SchemaMissing("API's schema does not exist or it could not be resolved.")
            key = own[0]
        cache_key = ("api", *key, type_name, options)
        found = self._compiled.get(cache_key)
        if found is None:
            found = self._compiled[cache_key] = self._compile_definition(key, type_name, options)
        if isinstance(found, SchemaMissing):
            raise found
        return found

    def global_schema(self, schema_id: str, ref: str | None, options: Options = PLAIN) -> Compiled:
        """The validator of global schema `schema_id` (at JSON pointer `ref`, e.g.
        `#/components/schemas/address`, when given). Raises SchemaMissing."""
        cache_key = ("global", fold_name(schema_id), ref or "", options)
        found = self._compiled.get(cache_key)
        if found is None:
            found = self._compiled[cache_key] = self._compile_global(schema_id, ref, options)
        if isinstance(found, SchemaMissing):
            raise found
        return found

    def xml_schema(self, api: str | None, schema_id: str | None) -> Any:
        """The XML schema named `schema_id` (a global one), else the API's XML schemas together
        (the `xsd` schema entities of a WSDL import). Raises SchemaMissing."""
        cache_key: tuple[Any, ...] = ("xml", fold_name(schema_id) if schema_id else "", fold_name(api or ""))
        found = self._compiled.get(cache_key)
        if found is None:
            found = self._compiled[cache_key] = self._compile_xml(api, schema_id)
        if isinstance(found, SchemaMissing):
            raise found
        return found

    def _compile_xml(self, api: str | None, schema_id: str | None) -> Any:
        if schema_id:
            data = self._global.get(fold_name(schema_id))
            if data is None:
                return SchemaMissing(f"Schema '{schema_id}' does not exist or it could not be resolved.")
            if str(data.get("schemaType") or "").lower() != "xml" or not isinstance(data.get("value"), str):
                return SchemaMissing(f"Schema '{schema_id}' is not an XML schema.")
            sources, what = [data["value"]], f"Schema '{schema_id}'"
        else:
            parent = fold_name(f"apis/{api}")
            sources, what = [], "API's schema"
            for (p, _n), text in sorted(self._api.items()):
                if p != parent:
                    continue
                try:
                    data = orjson.loads(text)
                except orjson.JSONDecodeError:
                    continue
                value = (data.get("document") or {}).get("value") if isinstance(data, dict) else None
                if str(data.get("contentType") or "").lower() == XSD_CONTENT_TYPE and isinstance(value, str):
                    sources.append(value)
            if not sources:
                return SchemaMissing("API's schema does not exist or it could not be resolved.")
        try:
            return compile_xsd(sources)
        except XsdUnusable as exc:
            return SchemaMissing(f"{what} could not be resolved: {exc}")

    # --- compiling -----------------------------------------------------------------------------
    def _api_document(self, key: tuple[str, str]) -> dict[str, Any]:
        doc = self._documents.get(key)
        if doc is None:
            text = self._api.get(key)
            if text is None:
                doc = "API's schema does not exist or it could not be resolved."
            else:
                try:
                    data = orjson.loads(text)
                except orjson.JSONDecodeError:
                    data = None
                document = data.get("document") if isinstance(data, dict) else None
                if isinstance(document, dict) and isinstance(document.get("value"), str):
                    try:  # a document given as JSON text (the schema entity's `value` form)
                        document = orjson.loads(document["value"])
                    except orjson.JSONDecodeError:
                        document = None
                doc = document if isinstance(document, dict) else "API's schema does not specify definitions."
            self._documents[key] = doc
        if isinstance(doc, str):
            raise SchemaMissing(doc)
        return doc

    def _compile_definition(
        self, key: tuple[str, str], type_name: str, options: Options
    ) -> Compiled | SchemaMissing:
        try:
            doc = self._api_document(key)
        except SchemaMissing as exc:
            return exc
        for holder, prefix in (
            ((doc.get("components") or {}).get("schemas"), "#/components/schemas/"),
            (doc.get("definitions"), "#/definitions/"),
            (doc.get("$defs"), "#/$defs/"),
        ):
            if isinstance(holder, dict) and type_name in holder:
                ref = prefix + type_name.replace("~", "~0").replace("/", "~1")
                return _compile(doc, ref, options, Draft4Validator)
        if isinstance(doc.get("type"), str) or "properties" in doc:  # the schema entity is one JSON Schema
            return _compile(doc, None, options, Draft4Validator)
        return SchemaMissing(f"API's schema does not contain definition {type_name}", definition=True)

    def _compile_global(self, schema_id: str, ref: str | None, options: Options) -> Compiled | SchemaMissing:
        data = self._global.get(fold_name(schema_id))
        if data is None:
            return SchemaMissing(f"Schema '{schema_id}' does not exist or it could not be resolved.")
        if str(data.get("schemaType") or "").lower() != "json":
            return SchemaMissing(f"Schema '{schema_id}' is not a JSON schema.")
        document = data.get("document")
        if document is None and isinstance(data.get("value"), str):
            try:
                document = orjson.loads(data["value"])
            except orjson.JSONDecodeError:
                return SchemaMissing(f"Schema '{schema_id}' is not valid JSON.")
        if not isinstance(document, (dict, bool)):
            return SchemaMissing(f"Schema '{schema_id}' does not hold a JSON schema document.")
        if isinstance(document, bool):
            document = {} if document else {"not": {}}
        if ref is not None and not ref.startswith("#"):
            return SchemaMissing(f"schema-ref '{ref[:100]}' is not a local reference (#/...).")
        return _compile(document, ref, options, Draft202012Validator)


def _compile(
    document: dict[str, Any], ref: str | None, options: Options, default: Any
) -> Compiled | SchemaMissing:
    """A validator of `document` (at `ref` inside it), the draft from its `$schema` or `default`;
    an OpenAPI 3.1 document (JSON Schema 2020-12) is recognised by failing Draft 4's own check."""
    root = _overridden(document, options)
    if ref:
        root = {**root, "$ref": ref}
        root.pop("$id", None)
    if ref and _pointer(root, ref) is None:
        return SchemaMissing(f"the reference {ref[:200]} cannot be resolved", definition=True)
    cls = validators.validator_for(root, default=default)
    candidates = [cls] if cls is not default else [default, Draft202012Validator]
    last = ""
    for candidate in dict.fromkeys(candidates):
        try:
            for part in _parts(root):  # a draft's meta-schema does not look inside `components`
                candidate.check_schema(part)
        except SchemaError as exc:
            last = exc.message[:MAX_MESSAGE]
            continue
        return Compiled(candidate(root, format_checker=candidate.FORMAT_CHECKER), options.case_insensitive)
    return SchemaMissing(f"the schema is not a valid JSON schema: {last}")


def _pointer(document: Any, ref: str) -> Any:
    """What the local reference `ref` (`#/a/b`) points at in `document`, or None."""
    node = document
    for token in ref.lstrip("#").split("/")[1:] if ref.strip("#") else []:
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _parts(root: dict[str, Any]) -> Iterator[Any]:
    """The schemas a document holds: itself, and its definitions (OpenAPI, Swagger, JSON Schema)."""
    yield root
    components = root.get("components")
    for holder in (
        components.get("schemas") if isinstance(components, dict) else None,
        root.get("definitions"),
        root.get("$defs"),
    ):
        if isinstance(holder, dict):
            yield from holder.values()


def _overridden(document: dict[str, Any], options: Options) -> dict[str, Any]:
    """A copy of `document` with validate-content's overrides applied, and
    OpenAPI 3.0's `nullable: true` as JSON Schema says it (null among the types)."""
    doc = copy.deepcopy(document)
    for schema in _subschemas(doc):
        if schema.get("nullable") is True and isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
        if options.additional_properties is not None and (
            "properties" in schema or schema.get("type") == "object" or "additionalProperties" in schema
        ):
            schema["additionalProperties"] = options.additional_properties
        if options.case_insensitive:
            props = schema.get("properties")
            if isinstance(props, dict):
                schema["properties"] = {str(k).lower(): v for k, v in props.items()}
            req = schema.get("required")
            if isinstance(req, list):
                schema["required"] = [r.lower() if isinstance(r, str) else r for r in req]
    return doc


def _subschemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in a schema document that may be a schema (iteratively: documents may be deep)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            for key, value in item.items():
                if key in ("enum", "const", "example", "examples", "default"):
                    continue  # values, not schemas
                if key == "properties" and isinstance(value, dict):
                    stack.extend(value.values())
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _folded_keys(instance: Any) -> Any:
    if isinstance(instance, dict):
        return {str(k).lower(): _folded_keys(v) for k, v in instance.items()}
    if isinstance(instance, list):
        return [_folded_keys(v) for v in instance]
    return instance


def _describe(error: ValidationError) -> str:
    path = "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in error.absolute_path)
    message = error.message if len(error.message) <= MAX_MESSAGE else error.message[:MAX_MESSAGE] + "..."
    return f"{message} Path: #{path or '/'}"


__all__ = ["PLAIN", "Compiled", "Options", "SchemaMissing", "SchemaSet"]
