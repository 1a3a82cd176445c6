"""`validate-odata-request`: a request to an OData API checked against the OData protocol before it
goes further — its OData version (the `OData-Version` header, `DataServiceVersion` for v2, else
`default-odata-version`) within `min-odata-version`..`max-odata-version`, its payload size
(`max-size`), its system query options (known for the version, each at most once, `$top`/`$skip`
non-negative integers, `$count`/`$inlinecount` values), and the first segment of its resource
path (the service document, `$metadata`, `$batch`, `$entity`, `$crossjoin`, `$all`, or an entity
set, singleton or function/action import of the API's OData schema).

A request that fails is refused with 400 (its errors in `error-variable-name` when given); the
on-error section runs. The policy applies to OData APIs: on any other API it lets the request
through (so it may stand at global or product scope). Inbound only, once per section, not at
operation scope (OData APIs have none), as in API Management."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from portico.edmx import ODataModel
from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import NAMED_VALUE, Node, PolicyDocumentError
from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context

DEFAULT_VERSION = "4.0"
_VERSION = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\s*$")
V4_OPTIONS = frozenset(
    {
        "$filter", "$select", "$expand", "$orderby", "$top", "$skip", "$count", "$search", "$format",
        "$compute", "$index", "$skiptoken", "$deltatoken", "$apply", "$levels", "$id", "$schemaversion",
    }
)  # fmt: skip
V2_OPTIONS = frozenset(
    {"$filter", "$select", "$expand", "$orderby", "$top", "$skip", "$inlinecount", "$format", "$skiptoken"}
)
# Resources of every OData service, addressed by the first segment of a resource path.
V4_RESOURCES = frozenset({"$metadata", "$batch", "$entity", "$all", "$crossjoin"})
V2_RESOURCES = frozenset({"$metadata", "$batch"})


def _version(text: str) -> tuple[int, int] | None:
    m = _VERSION.match(text.split(";", 1)[0])
    return (int(m.group(1)), int(m.group(2))) if m else None


def _shown(v: tuple[int, int]) -> str:
    """OData writes its versions 2.0, 4.0, 4.01."""
    return f"{v[0]}.{v[1]:02d}" if v[1] else f"{v[0]}.0"


@policy
class ValidateODataRequest(Policy):
    tag = "validate-odata-request"
    sections = frozenset({"inbound"})

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs(
            {
                "error-variable-name",
                "default-odata-version",
                "min-odata-version",
                "max-odata-version",
                "max-size",
            }
        )
        node.check_children(frozenset())
        if "/operations/" in cc.scope.lower():
            raise PolicyDocumentError(
                "policy is not allowed at operation scope (allowed at global, product and API scope).", node
            )
        self.error_variable = node.get("error-variable-name") or None
        self.default = self._version_attr(node, "default-odata-version") or _version(DEFAULT_VERSION)
        self.min = self._version_attr(node, "min-odata-version")
        self.max = self._version_attr(node, "max-odata-version")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PolicyDocumentError("'min-odata-version' is greater than 'max-odata-version'.", node)
        self.max_size = node.integer("max-size", minimum=0)
        # With a size limit the payload is read (bounded) to be measured: a chunked request
        # declares no length.
        self.is_async = self.max_size is not None

    @staticmethod
    def _version_attr(node: Node, name: str) -> tuple[int, int] | None:
        raw = node.get(name)
        if raw is None or raw == "" or NAMED_VALUE.search(raw):
            return None  # a named value is checked once substituted (when the gateway compiles it)
        v = _version(raw)
        if v is None:
            raise PolicyDocumentError(
                f"attribute '{name}' must be an OData version such as 4.0, got '{raw[:30]}'.", node
            )
        return v

    def run(self, ctx: Context) -> Any:
        if self.is_async:
            return self._measured(ctx)
        if _is_odata(ctx):
            self._check(ctx, self._errors(ctx))
        return None

    async def _measured(self, ctx: Context) -> None:
        if not _is_odata(ctx):
            return
        assert self.max_size is not None
        errors = self._errors(ctx)
        if not errors and ctx.request_body is None and _may_have_body(ctx):
            body = await _read(ctx, self.max_size)
            if body is None:
                errors = [f"The request payload exceeds the maximum size of {self.max_size} bytes."]
            else:
                ctx.request_body = body  # forwarded as it came
        self._check(ctx, errors)

    def _check(self, ctx: Context, errors: list[str]) -> None:
        if errors:
            if self.error_variable:
                ctx.variables[self.error_variable] = errors
            raise Reject(400, errors[0], source=self.tag, reason="ODataRequestInvalid")

    def _errors(self, ctx: Context) -> list[str]:
        headers = ctx.headers
        raw = headers.get("odata-version") or headers.get("dataserviceversion")
        if raw is not None:
            version = _version(raw)
            if version is None:
                return [f"The OData-Version header '{raw[:40]}' is not an OData version."]
        else:
            version = self.default
        assert version is not None
        if self.min is not None and version < self.min:
            return [f"OData version {_shown(version)} is below the minimum version {_shown(self.min)}."]
        if self.max is not None and version > self.max:
            return [f"OData version {_shown(version)} is above the maximum version {_shown(self.max)}."]
        errors: list[str] = []
        if self.max_size is not None:
            size = _payload_size(ctx)
            if size is not None and size > self.max_size:
                errors.append(
                    f"The request payload of {size} bytes exceeds the maximum size of {self.max_size} bytes."
                )
        errors.extend(_query_errors(ctx.current_query(), version))
        model = getattr(ctx.service, "odata", None)
        assert ctx.api is not None
        found = model.model(fold_name(ctx.api.name)) if model is not None else None
        if isinstance(found, ODataModel):
            errors.extend(_path_errors(ctx.backend_suffix, found, version))
        return errors


def _is_odata(ctx: Context) -> bool:
    return ctx.api is not None and str(ctx.api.data.get("type") or "").lower() == "odata"


def _payload_size(ctx: Context) -> int | None:
    if ctx.request_body is not None:
        return len(ctx.request_body)
    declared = ctx.headers.get("content-length")
    return int(declared) if declared and declared.strip().isdigit() else None


def _may_have_body(ctx: Context) -> bool:
    headers = ctx.headers
    return bool(headers.get("transfer-encoding")) or (headers.get("content-length") or "0").strip() not in (
        "",
        "0",
    )


async def _read(ctx: Context, limit: int) -> bytes | None:
    """The request's payload, or None when it is longer than `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await ctx.receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if message["type"] != "http.request" or not message.get("more_body", False):
            ctx.bytes_in += size
            return b"".join(parts)


def _query_errors(query: str, version: tuple[int, int]) -> list[str]:
    known = V4_OPTIONS if version >= (4, 0) else V2_OPTIONS
    seen: set[str] = set()
    errors: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if not name.startswith("$"):
            continue  # custom query options (and the subscription key) are the service's
        low = name.lower()
        if low not in known:
            errors.append(f"'{name[:40]}' is not an OData {_shown(version)} system query option.")
            continue
        if low in seen:
            errors.append(f"The system query option '{name[:40]}' is given more than once.")
        seen.add(low)
        if low in ("$top", "$skip") and not value.strip().isdigit():
            errors.append(f"The value of '{name}' must be a non-negative integer, got '{value[:40]}'.")
        elif low == "$count" and value.strip().lower() not in ("true", "false"):
            errors.append(f"The value of '$count' must be true or false, got '{value[:40]}'.")
        elif low == "$inlinecount" and value.strip().lower() not in ("allpages", "none"):
            errors.append(f"The value of '$inlinecount' must be allpages or none, got '{value[:40]}'.")
    return errors


def _path_errors(rest: str, model: ODataModel, version: tuple[int, int]) -> list[str]:
    first = unquote(rest.lstrip("/").split("/", 1)[0])
    if first == "":
        return []  # the service document
    name = first.split("(", 1)[0]
    resources = V4_RESOURCES if version >= (4, 0) else V2_RESOURCES
    if name.lower() in resources or name in model.names():
        return []
    return [f"'{name[:80]}' is not an entity set, singleton or function of the API's OData schema."]


__all__ = ["ValidateODataRequest"]
