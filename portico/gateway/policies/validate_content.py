"""`validate-content`: the size and the content of a request body (inbound) or response body
(outbound, on-error) checked against the API's definition — the representations of the operation
(request, or the response of the answer's status code) and the API's schemas — or against a
global schema (`schema-id`, `schema-ref`). JSON content is validated with `jsonschema`
(portico/gateway/schemas.py), XML and SOAP content with `xmlschema` (portico/gateway/xsd.py)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import orjson

from portico.gateway.expressions import ExpressionError, truthy
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.cache import pending_store
from portico.gateway.policies.validation import (
    INTERNAL,
    Finding,
    action_value,
    conclude,
    errors_variable,
    resolve_action,
    response_definition,
)
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.gateway.schemas import Compiled, Options, SchemaMissing
from portico.gateway.upstream import UpstreamError
from portico.gateway.xsd import xml_errors

if TYPE_CHECKING:
    from portico.gateway.context import Context, HeaderMap
    from portico.gateway.expressions import Value

MAX_SIZE = 4 * 1024 * 1024  # max-size's upper bound (4 MB, as API Management documents)
RESPONSE_LIMIT = 64 * 1024 * 1024  # a response body without Content-Length is buffered up to this
DECODED_LIMIT = 16 * 1024 * 1024  # a compressed body is validated decompressed up to this


class _Content:
    """One `<content>` element."""

    def __init__(self, node: Node) -> None:
        node.check_attrs(
            {
                "type",
                "validate-as",
                "schema-id",
                "schema-ref",
                "action",
                "allow-additional-properties",
                "case-insensitive-property-names",
            }
        )
        node.check_children(frozenset())
        self.type = (node.get("type") or "").strip().lower()
        validate_as = node.require("validate-as").strip().lower()
        if validate_as not in ("json", "xml", "soap"):
            raise PolicyDocumentError(
                f"attribute 'validate-as' must be one of json, xml, soap, got '{validate_as[:30]}'.", node
            )
        self.validate_as = validate_as
        self.schema_id = node.get("schema-id") or None
        self.schema_ref = node.get("schema-ref") or None
        if self.schema_ref is not None:
            if self.schema_id is None:
                raise PolicyDocumentError(
                    "attribute 'schema-ref' applies to a schema named by 'schema-id'.", node
                )
            if validate_as != "json":
                raise PolicyDocumentError("attribute 'schema-ref' isn't supported for an XML schema.", node)
            if not self.schema_ref.startswith("#"):
                raise PolicyDocumentError(
                    "attribute 'schema-ref' must be a local reference such as '#/components/schemas/address'.",
                    node,
                )
        action = action_value(node, "action", required=True)
        assert action is not None
        self.action = action
        additional: bool | None = None
        if "allow-additional-properties" in node.attrs:
            additional = node.boolean("allow-additional-properties", True)
        self.options = Options(additional, node.boolean("case-insensitive-property-names", False))


@policy
class ValidateContent(Policy):
    tag = "validate-content"
    sections = frozenset({"inbound", "outbound", "on-error"})
    is_async = True  # reads the body

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {"unspecified-content-type-action", "max-size", "size-exceeded-action", "errors-variable-name"}
        )
        node.check_children({"content-type-map", "content"})
        unspecified = action_value(node, "unspecified-content-type-action", required=True)
        size_action = action_value(node, "size-exceeded-action", required=True)
        max_size = node.value("max-size", required=True)
        assert unspecified is not None and size_action is not None and max_size is not None
        self.unspecified, self.size_action, self.max_size = unspecified, size_action, max_size
        if max_size.constant and "{{" not in max_size.literal:
            _size(max_size.literal, node)
        self.variable = errors_variable(node)
        self.request_side = section == "inbound"
        self.kind = "RequestBody" if self.request_side else "ResponseBody"
        self.any_type: str | None = None
        self.missing_type: str | None = None
        self.types: list[tuple[str | None, Value | None, str]] = []  # (from, when, to)
        self.contents: list[_Content] = []
        maps = [c for c in node.children if c.tag == "content-type-map"]
        if len(maps) > 1:
            raise PolicyDocumentError("<content-type-map> may appear only once.", maps[1])
        for m in maps:
            self._content_type_map(m)
        for child in node.children:
            if child.tag == "content":
                self.contents.append(_Content(child))

    def _content_type_map(self, node: Node) -> None:
        node.check_attrs({"any-content-type-value", "missing-content-type-value"})
        node.check_children({"type"})
        self.any_type = (node.get("any-content-type-value") or "").strip().lower() or None
        self.missing_type = (node.get("missing-content-type-value") or "").strip().lower() or None
        for t in node.children:
            t.check_attrs({"from", "when", "to"})
            t.check_children(frozenset())
            to = t.require("to").strip().lower()
            if ("from" in t.attrs) == ("when" in t.attrs):
                raise PolicyDocumentError("<type> needs exactly one of 'from' and 'when'.", t)
            when = t.value("when")
            if when is not None and when.constant:
                raise PolicyDocumentError("attribute 'when' must be an expression @( ... ).", t)
            frm = t.get("from")
            self.types.append((frm.strip().lower() if frm is not None else None, when, to))

    async def run(self, ctx: Context) -> Any:
        findings: list[Finding] = []
        max_size = _size(self.max_size.text(ctx), None)
        response = None if self.request_side else ctx.response
        if not self.request_side and response is None:
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        headers = ctx.headers if response is None else response.header_map()
        media = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        size_action = resolve_action(self.size_action, ctx, "size-exceeded-action")
        declared = _length(headers)
        encoded = bool(headers.get("content-encoding"))
        if declared is not None and declared > max_size and not encoded:
            # too large to validate: not read (it streams on unless refused)
            if size_action != "ignore":
                findings.append(self._too_large(declared, max_size, size_action))
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        body = await self._body(ctx)
        try:  # max-size and the schema apply to the body as sent before compression
            decoded: bytes | str = _decoded(body, headers.get("content-encoding"))
        except _Undecodable as exc:
            decoded = str(exc)
        size = len(decoded) if isinstance(decoded, bytes) else len(body)
        if size > max_size:  # too large to validate
            if size_action != "ignore":
                findings.append(self._too_large(size, max_size, size_action))
            return conclude(self.tag, self.section, ctx, self.variable, findings)
        if not body and not media:
            return conclude(self.tag, self.section, ctx, self.variable, findings)  # no content
        ctype = self._mapped(ctx, media)
        reps = _representations(ctx, None if response is None else response.status)
        specified = {str(r.get("contentType") or "").lower(): r for r in reps}
        if ctype not in specified:
            action = resolve_action(self.unspecified, ctx, "unspecified-content-type-action")
            if action != "ignore":
                details = f"Unspecified content type {ctype} is not allowed."
                public = details if self.request_side else INTERNAL
                findings.append(Finding(ctype, self.kind, "Unspecified", details, public, action))
                if action == "prevent":
                    return conclude(self.tag, self.section, ctx, self.variable, findings)
        content = next((c for c in self.contents if c.type and c.type == ctype), None)
        if content is None and ctype in specified:
            content = next((c for c in self.contents if not c.type), None)
        if content is not None:
            action = resolve_action(content.action, ctx, "action")
            if action != "ignore":
                finding = self._validate(ctx, content, specified.get(ctype), ctype, decoded)
                if finding is not None:
                    finding.action = action
                    findings.append(finding)
        return conclude(self.tag, self.section, ctx, self.variable, findings)

    def _too_large(self, size: int, limit: int, action: str) -> Finding:
        if self.request_side:
            details = (
                f"Request's body is {size} bytes long and it exceeds the configured limit of {limit} bytes."
            )
            public = f"Request's body is {size} bytes long and it exceeds the limit of {limit} bytes."
        else:
            details = (
                f"Response's body is {size} bytes long and it exceeds the configured limit of {limit} bytes."
            )
            public = INTERNAL
        return Finding("", self.kind, "SizeLimit", details, public, action)

    def _mapped(self, ctx: Context, media: str) -> str:
        for frm, when, to in self.types:
            if frm is not None and frm == media:
                return to
            if when is not None and truthy(when.get(ctx)):
                return to
        if not media and self.missing_type:
            return self.missing_type
        return self.any_type or media

    async def _body(self, ctx: Context) -> bytes:
        """The whole body, read once and kept where the rest of the pipeline finds it."""
        if self.request_side:
            await ctx.backend.buffer_body(ctx)  # the client's body whole, within the gateway's limit
            return ctx.request_body or b""
        r = ctx.response
        assert r is not None
        upstream = r.upstream
        if upstream is not None:
            if ctx.method == "HEAD" or r.status in (204, 304):
                return b""  # no body follows the head
            # a cache-store before this policy asked for the backend body: it is kept as read here
            keep = pending_store(ctx, upstream) if ctx.cache is not None else None
            whole = upstream.ready_body()
            if whole is None:
                try:
                    whole = await upstream.read(RESPONSE_LIMIT)
                except UpstreamError:
                    raise Reject(502, INTERNAL, source=self.tag, reason="Response not allowed") from None
            r.upstream = None
            r.body = whole
            if keep is not None:
                keep(whole)
            h = r.header_map()  # answered whole now: framed by Content-Length (proxy.response_parts)
            h.delete("transfer-encoding")
            h.delete("content-length")
        return r.body

    def _validate(
        self, ctx: Context, content: _Content, rep: dict[str, Any] | None, ctype: str, body: bytes | str
    ) -> Finding | None:
        """What is wrong with `body` (the decoded body, or why it could not be decoded)."""
        side = "request" if self.request_side else "response"
        if isinstance(body, str):
            details = f"Body of the {side} cannot be validated for the content type {ctype}.\n\n{body}"
            return Finding("", self.kind, "ValidationException", details, INTERNAL)
        schemas = ctx.service.schemas
        type_name = (rep or {}).get("typeName")
        definition = content.schema_ref or content.schema_id or str(type_name or "")
        try:
            if content.validate_as != "json":
                xml_schema = schemas.xml_schema(ctx.api.name if ctx.api else None, content.schema_id)
                definition = definition or "(the API's XML schema)"
                errors = xml_errors(xml_schema, body, soap=content.validate_as == "soap")
            else:
                if content.schema_id is not None:
                    compiled = schemas.global_schema(content.schema_id, content.schema_ref, content.options)
                elif not type_name or ctx.api is None:
                    return None  # the definition gives this content type no schema: nothing to check
                else:
                    compiled = schemas.definition(
                        ctx.api.name, (rep or {}).get("schemaId"), definition, content.options
                    )
                errors = _json_errors(compiled, body)
        except SchemaMissing as exc:
            if exc.definition:
                details = (
                    f"API's schema does not contain definition {definition}, which is associated with the "
                    f"content type {ctype}."
                )
                return Finding(ctype, self.kind, "MissingDefinition", details, INTERNAL)
            return Finding("", "ApiSchema", "", str(exc), INTERNAL)
        except (RecursionError, ValueError, TypeError) as exc:
            details = f"Body of the {side} cannot be validated for the content type {ctype}.\n\n{exc}"
            return Finding("", self.kind, "ValidationException", details[:2000], INTERNAL)
        if not errors:
            return None
        details = (
            f"Body of the {side} does not conform to the definition {definition}, which is associated with "
            f"the content type {ctype}.\n\n" + "\n".join(errors)
        )
        return Finding(
            ctype, self.kind, "IncorrectMessage", details, details if self.request_side else INTERNAL
        )


def _json_errors(compiled: Compiled, body: bytes) -> list[str]:
    try:
        instance = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [f"The body is not valid JSON: {exc}"]
    return compiled.errors(instance)


class _Undecodable(Exception):
    pass


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """`body` without its Content-Encoding (gzip, deflate), at most DECODED_LIMIT bytes."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise _Undecodable(f"The content encoding '{enc[:40]}' is not supported.")
    # gzip: a gzip header (16 + 15); deflate: the zlib format, or raw deflate as some servers send it
    attempts = (31,) if enc != "deflate" else (15, -15)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, DECODED_LIMIT + 1)
        except zlib.error:
            continue
        if len(out) > DECODED_LIMIT:
            raise _Undecodable(f"The decoded body exceeds {DECODED_LIMIT} bytes.")
        return out
    raise _Undecodable(f"The body is not valid {enc} content.")


def _size(text: str, node: Node | None) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        n = -1
    if n < 0 or n > MAX_SIZE:
        message = f"attribute 'max-size' must be an integer between 0 and {MAX_SIZE}, got '{text[:30]}'."
        if node is not None:
            raise PolicyDocumentError(message, node)
        raise ExpressionError(message)
    return n


def _length(headers: HeaderMap) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw.split(",", 1)[0].strip())
    except ValueError:
        return None


def _representations(ctx: Context, status: int | None) -> list[dict[str, Any]]:
    """The representations of the request (status None) or of the answer's response definition."""
    if ctx.operation is None:
        return []
    if status is None:
        reps = (ctx.operation.data.get("request") or {}).get("representations") or []
    else:
        chosen = response_definition(ctx)
        reps = (chosen or {}).get("representations") or []
    return [r for r in reps if isinstance(r, dict)]


__all__ = ["ValidateContent"]
