"""OpenAPI 3.0/3.1 and Swagger 2.0 import, following Azure API Management's rules: title →
displayName, first server (or scheme+host+basePath) → serviceUrl, one operation per path and
method named after its normalised operationId, required query parameters in the URL template
(unless `translateRequiredQueryParameters: query`), schemas kept as the API's schema entity.

Local `$ref`s only (Azure refuses references to other files); custom extensions are ignored
except `x-ms-paths`, as Azure does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urljoin

import orjson

from portico.resources.importers.model import Imported, ImportFailed, Options, clip

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NO_BODY_METHODS = frozenset({"get", "head", "options"})
OAS3_SCHEMAS = "application/vnd.oai.openapi.components+json"
SWAGGER_SCHEMAS = "application/vnd.ms-azure-apim.swagger.definitions+json"
_TEMPLATE_PARAM = re.compile(r"\{([^{}]+)\}")
_TYPE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_STATUS_RANGE = re.compile(r"^[1-5]XX$", re.IGNORECASE)
_MAX_REF_DEPTH = 32


def _ptr(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class _Doc:
    """The document with local `$ref` resolution."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, value: Any, where: str) -> Any:
        depth = 0
        while isinstance(value, dict) and "$ref" in value:
            ref = value["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise ImportFailed(
                    f"$ref '{str(ref)[:200]}' points outside the document; references to other files "
                    "are not supported",
                    where=where,
                )
            depth += 1
            if depth > _MAX_REF_DEPTH:
                raise ImportFailed(f"$ref '{ref[:200]}' is circular", where=where)
            value = self._lookup(ref, where)
        return value

    def _lookup(self, ref: str, where: str) -> Any:
        node: Any = self.root
        for raw in ref[1:].split("/")[1:] if ref != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ImportFailed(f"$ref '{ref[:200]}' does not resolve", where=where)
        return node


def import_openapi(doc: Any, opts: Options) -> Imported:
    if not isinstance(doc, dict):
        raise ImportFailed("the document must be an object with 'openapi' or 'swagger' and 'paths'")
    if "swagger" in doc:
        if str(doc["swagger"]) != "2.0":
            raise ImportFailed(f"Swagger version '{str(doc['swagger'])[:20]}' is not supported (2.0 is)")
        v2 = True
    elif "openapi" in doc:
        if not str(doc["openapi"]).startswith(("3.0", "3.1")):
            raise ImportFailed(
                f"OpenAPI version '{str(doc['openapi'])[:20]}' is not supported (3.0, 3.1 are)"
            )
        v2 = False
    else:
        raise ImportFailed("the document has neither 'openapi' nor 'swagger' (is it an OpenAPI definition?)")
    paths: dict[str, Any] = {}
    for key in ("paths", "x-ms-paths"):
        block = doc.get(key)
        if block is not None and not isinstance(block, dict):
            raise ImportFailed(f"'{key}' must be an object", where=_ptr(key))
        paths.update(block or {})
    if not paths:
        raise ImportFailed("the document defines no paths (an API without operations)", where="#/paths")
    return _Importer(_Doc(doc), v2, opts).run(paths)


class _Importer:
    def __init__(self, doc: _Doc, v2: bool, opts: Options) -> None:
        self.doc = doc
        self.v2 = v2
        self.opts = opts
        self.out = Imported()
        root = doc.root
        components = root.get("components")
        found = (
            root.get("definitions")
            if v2
            else components.get("schemas")
            if isinstance(components, dict)
            else None
        )
        if found is not None and not isinstance(found, dict):
            where = "#/definitions" if v2 else "#/components/schemas"
            raise ImportFailed("the schema definitions must be an object", where=where)
        self.definitions: dict[str, Any] = dict(found or {})
        self.schema_id = ""
        self.global_consumes = _str_list(root.get("consumes")) or ["application/json"]
        self.global_produces = _str_list(root.get("produces")) or ["application/json"]

    def run(self, paths: dict[str, Any]) -> Imported:
        root = self.doc.root
        info: dict[str, Any] = root["info"] if isinstance(root.get("info"), dict) else {}
        api = self.out.api
        if title := clip(info.get("title"), 300):
            api["displayName"] = title
        if desc := clip(info.get("description"), 100_000):
            api["description"] = desc
        for src, dst in (
            ("termsOfService", "termsOfServiceUrl"),
            ("contact", "contact"),
            ("license", "license"),
        ):
            if info.get(src):
                api[dst] = info[src]
        if url := self._service_url():
            api["serviceUrl"] = url
        # The schema entity's id depends on nothing but the definitions, so a re-import of the
        # same document keeps it.
        self.schema_id = hashlib.sha256(
            orjson.dumps(self.definitions, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()[:24]
        for path, item in paths.items():
            where = _ptr("paths", path)
            if not isinstance(path, str) or not path.startswith("/"):
                raise ImportFailed(f"path '{str(path)[:200]}' must start with '/'", where=where)
            item = self.doc.resolve(item, where)
            if not isinstance(item, dict):
                raise ImportFailed("a path item must be an object", where=where)
            shared = item.get("parameters") or []
            for method in METHODS:
                op = item.get(method)
                if op is None:
                    continue
                if not isinstance(op, dict):
                    raise ImportFailed("an operation must be an object", where=_ptr("paths", path, method))
                self._operation(path, method, op, shared, _ptr("paths", path, method))
        if self.definitions:
            document: dict[str, Any] = (
                {"definitions": self.definitions}
                if self.v2
                else {"components": {"schemas": self.definitions}}
            )
            self.out.schemas.append(
                (
                    self.schema_id,
                    {"contentType": SWAGGER_SCHEMAS if self.v2 else OAS3_SCHEMAS, "document": document},
                )
            )
        return self.out

    def _service_url(self) -> str | None:
        root = self.doc.root
        if self.v2:
            host = root.get("host")
            if not isinstance(host, str) or not host:
                return None
            schemes = _str_list(root.get("schemes")) or ["https"]
            scheme = "https" if "https" in schemes else schemes[0]
            base = root.get("basePath") if isinstance(root.get("basePath"), str) else ""
            return f"{scheme}://{host}{base}".rstrip("/")
        servers = root.get("servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
            return None
        server = servers[0]
        url = server.get("url")
        if not isinstance(url, str) or not url:
            return None
        variables: dict[str, Any] = server["variables"] if isinstance(server.get("variables"), dict) else {}
        for name, var in variables.items():
            if isinstance(var, dict) and "default" in var:
                url = url.replace("{" + str(name) + "}", str(var["default"]))
        if not url.lower().startswith(("http://", "https://")):
            # A relative server URL is relative to where the document came from.
            if self.opts.source_url is None:
                return None
            url = urljoin(self.opts.source_url, url)
        return url.rstrip("/")

    # --- one operation ---------------------------------------------------------------------------
    def _operation(self, path: str, method: str, op: dict[str, Any], shared: Any, where: str) -> None:
        params = self._parameters(shared, op.get("parameters"), where)
        template_names = _TEMPLATE_PARAM.findall(path.split("?", 1)[0])
        template: list[dict[str, Any]] = []
        query: list[dict[str, Any]] = []
        headers: list[dict[str, Any]] = []
        query_in_template: list[str] = []
        body_params: list[dict[str, Any]] = []
        form_params: list[dict[str, Any]] = []
        declared_path: set[str] = set()
        for p, pwhere in params:
            loc = p.get("in")
            contract = self._parameter(p, pwhere)
            if loc == "path":
                if contract["name"] not in template_names:
                    raise ImportFailed(
                        f"path parameter '{contract['name']}' is not part of the URL template '{path[:200]}'",
                        where=pwhere,
                    )
                contract["required"] = True
                declared_path.add(contract["name"])
                template.append(contract)
            elif loc == "query":
                if contract.get("required") and self.opts.translate_required_query == "template":
                    template.append(contract)
                    query_in_template.append(contract["name"])
                else:
                    query.append(contract)
            elif loc == "header":
                headers.append(contract)
            elif loc == "body" and self.v2:
                body_params.append(p)
            elif loc == "formData" and self.v2:
                form_params.append(contract)
            # `in: cookie` is left out, as Azure's import leaves it out: "Parameters defined in
            # cookies are not supported" (Microsoft Learn, API import restrictions and known
            # issues, OpenAPI definition restrictions); the operation contract has no place for
            # them, and a policy can still read and validate the Cookie header.
        for name in template_names:
            if name not in declared_path:
                template.append({"name": name, "type": "string", "required": True, "values": []})
        seen: set[str] = set()
        for t in template:
            key = t["name"].lower()
            if key in seen:
                raise ImportFailed(
                    f"parameter '{t['name']}' appears twice in the URL template (path and required query "
                    "parameter names must be unique, ignoring case)",
                    where=where,
                )
            seen.add(key)
        url = path
        if query_in_template:
            joiner = "&" if "?" in url else "?"
            url += joiner + "&".join(f"{n}={{{n}}}" for n in query_in_template)
        op_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
        wanted = op_id or f"{method}-{path}"
        display = clip(op.get("summary"), 300) or (
            op_id[:300] if op_id else f"{method.upper()} - {path}"[:300]
        )
        props: dict[str, Any] = {"displayName": display, "method": method.upper(), "urlTemplate": url}
        if desc := clip(op.get("description"), 1000):
            props["description"] = desc
        props["templateParameters"] = template
        request: dict[str, Any] = {"queryParameters": query, "headers": headers, "representations": []}
        if method not in NO_BODY_METHODS:
            request["representations"] = self._request_body(op, body_params, form_params, wanted, where)
        props["request"] = request
        props["responses"], other = self._responses(op, wanted, where)
        if other:
            props["otherResponses"] = other
        self.out.add_operation(wanted, props)

    def _parameters(self, shared: Any, own: Any, where: str) -> list[tuple[dict[str, Any], str]]:
        merged: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for block, label in ((shared, "parameters"), (own, "parameters")):
            if block is None:
                continue
            if not isinstance(block, list):
                raise ImportFailed("'parameters' must be a list", where=f"{where}/{label}")
            for i, raw in enumerate(block):
                pwhere = f"{where}/parameters/{i}"
                p = self.doc.resolve(raw, pwhere)
                if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p.get("name"):
                    raise ImportFailed("a parameter needs a 'name' and 'in'", where=pwhere)
                merged[(str(p.get("in")), p["name"])] = (p, pwhere)
        return list(merged.values())

    def _parameter(self, p: dict[str, Any], where: str) -> dict[str, Any]:
        schema = p if self.v2 else self.doc.resolve(p.get("schema") or {}, where + "/schema")
        raw_schema = p.get("schema") if not self.v2 else None
        out: dict[str, Any] = {
            "name": p["name"],
            "type": _type_of(schema),
            "required": bool(p.get("required")),
        }
        if desc := clip(p.get("description"), 1000):
            out["description"] = desc
        if isinstance(schema, dict):
            if "default" in schema and schema["default"] is not None:
                out["defaultValue"] = _text(schema["default"])
            enum = schema.get("enum")
            out["values"] = [_text(v) for v in enum] if isinstance(enum, list) else []
        if isinstance(raw_schema, dict) and isinstance(raw_schema.get("$ref"), str):
            out["schemaId"], out["typeName"] = self.schema_id, raw_schema["$ref"].rsplit("/", 1)[-1]
        examples = self._examples(p)
        if examples:
            out["examples"] = examples
        return out

    def _examples(self, holder: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "example" in holder:
            out["default"] = {"value": holder["example"]}
        examples = holder.get("examples")
        if isinstance(examples, dict) and not self.v2:
            for name, ex in examples.items():
                ex = self.doc.resolve(ex, "examples")
                if isinstance(ex, dict):
                    out[str(name)] = {
                        k: ex[k] for k in ("summary", "description", "value", "externalValue") if k in ex
                    }
        return out

    def _representation(
        self, ctype: str, media: dict[str, Any], type_hint: str, where: str
    ) -> dict[str, Any]:
        rep: dict[str, Any] = {"contentType": ctype}
        schema = media.get("schema")
        if isinstance(schema, dict) and schema:
            rep["schemaId"], rep["typeName"] = self.schema_id, self._type_name(schema, type_hint)
        examples = self._examples(media)
        if examples:
            rep["examples"] = examples
        return rep

    def _type_name(self, schema: dict[str, Any], hint: str) -> str:
        """The definition a representation refers to; an inline schema becomes a named definition
        of the API's schema, so nothing of the document is lost."""
        ref = schema.get("$ref")
        if (
            isinstance(ref, str)
            and ref.startswith(("#/definitions/", "#/components/schemas/"))
            and ref.count("/") == (2 if self.v2 else 3)
        ):
            return ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
        name = base = _TYPE_NAME.sub("-", hint).strip("-") or "Schema"
        n = 0
        while name in self.definitions:
            n += 1
            name = f"{base}-{n}"
        self.definitions[name] = schema
        return name

    def _request_body(
        self,
        op: dict[str, Any],
        body_params: list[dict[str, Any]],
        form_params: list[dict[str, Any]],
        op_name: str,
        where: str,
    ) -> list[dict[str, Any]]:
        reps: list[dict[str, Any]] = []
        if self.v2:
            consumes = _str_list(op.get("consumes")) or self.global_consumes
            for p in body_params:
                for ctype in consumes:
                    reps.append(self._representation(ctype, p, f"{op_name}-request", where))
            if form_params:
                forms = [c for c in consumes if "form" in c] or ["application/x-www-form-urlencoded"]
                reps.extend({"contentType": c, "formParameters": form_params} for c in forms)
            return reps
        raw = op.get("requestBody")
        if raw is None:
            return reps
        body = self.doc.resolve(raw, where + "/requestBody")
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, dict):
            return reps
        for ctype, media in content.items():
            if isinstance(media, dict):
                reps.append(self._representation(str(ctype), media, f"{op_name}-request", where))
        return reps

    def _responses(
        self, op: dict[str, Any], op_name: str, where: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(responses by numeric status, `default` and range responses such as 2XX). Azure's
        operation contract keys a response by an integer status, which the others do not have:
        they are kept beside it (`otherResponses`, a Portico extension) with their descriptions,
        representations and headers, and exported back under their own keys."""
        raw = op.get("responses") or {}
        if not isinstance(raw, dict):
            raise ImportFailed("'responses' must be an object", where=where + "/responses")
        numeric: list[dict[str, Any]] = []
        other: list[dict[str, Any]] = []
        produces = _str_list(op.get("produces")) or self.global_produces
        for key, resp in raw.items():
            code = str(key)
            rwhere = f"{where}/responses/{code.replace('~', '~0').replace('/', '~1')}"
            if code.startswith("x-"):
                continue  # a specification extension, ignored as Azure ignores custom extensions
            if code.isdigit() and 100 <= int(code) <= 599:
                item: dict[str, Any] = {"statusCode": int(code)}
                out = numeric
            elif code.lower() == "default" or _STATUS_RANGE.match(code):
                item = {"status": code.lower() if code.lower() == "default" else code.upper()}
                out = other
            else:
                raise ImportFailed(
                    f"response '{code[:20]}' is neither an HTTP status code (100-599), a range such as "
                    "2XX, nor 'default'",
                    where=rwhere,
                )
            resp = self.doc.resolve(resp, rwhere)
            if not isinstance(resp, dict):
                raise ImportFailed("a response must be an object", where=rwhere)
            self._response(item, resp, produces, f"{op_name}-{code}-response", rwhere)
            out.append(item)
        return numeric, other

    def _response(
        self, item: dict[str, Any], resp: dict[str, Any], produces: list[str], hint: str, where: str
    ) -> None:
        if desc := clip(resp.get("description"), 1000):
            item["description"] = desc
        reps: list[dict[str, Any]] = []
        if self.v2:
            if isinstance(resp.get("schema"), dict):
                examples: dict[str, Any] = resp["examples"] if isinstance(resp.get("examples"), dict) else {}
                for ctype in produces:
                    rep = self._representation(ctype, resp, hint, where)
                    if ctype in examples:
                        rep["examples"] = {"default": {"value": examples[ctype]}}
                    reps.append(rep)
        else:
            content = resp.get("content")
            if isinstance(content, dict):
                for ctype, media in content.items():
                    if isinstance(media, dict):
                        reps.append(self._representation(str(ctype), media, hint, where))
        item["representations"] = reps
        hdrs = resp.get("headers")
        if isinstance(hdrs, dict):
            item["headers"] = [
                self._header(str(name), self.doc.resolve(h, where), where) for name, h in hdrs.items()
            ]

    def _header(self, name: str, h: Any, where: str) -> dict[str, Any]:
        h = h if isinstance(h, dict) else {}
        schema = h if self.v2 else self.doc.resolve(h.get("schema") or {}, where)
        out: dict[str, Any] = {
            "name": name,
            "type": _type_of(schema),
            "required": bool(h.get("required")),
            "values": [],
        }
        if desc := clip(h.get("description"), 1000):
            out["description"] = desc
        return out


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "string"
    t = schema.get("type")
    if isinstance(t, list):  # OpenAPI 3.1: ["string", "null"]
        t = next((x for x in t if x != "null"), None)
    if isinstance(t, str) and t:
        return t
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else "string"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
