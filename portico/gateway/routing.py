"""Request routing inside a service: API by path (longest match, version sets, revisions), then
operation by method and URL template (template parameters, `{*rest}` and `/*` wildcards, query
parameters).

Revisions are addressed as Azure addresses them: `;rev={n}` is appended to the API's URL, before
the rest of the path. An unversioned API's revision answers on `/{path};rev={n}/...`; for a
version set with the Segment scheme the version segment is the API's URL, so the revision is
`/{path}/{version};rev={n}/...`; with the Header or Query scheme the version is not in the path,
so it is `/{path};rev={n}/...` plus the version header or query parameter."""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from portico.names import fold_name

DEFAULT_KEY_HEADER = "Ocp-Apim-Subscription-Key"
DEFAULT_KEY_QUERY = "subscription-key"
REV = ";rev="


@dataclass(eq=False)
class Operation:
    name: str
    display_name: str
    method: str  # upper case, or "*"
    template: str
    regex: re.Pattern[str]
    param_names: list[str]
    query_params: tuple[str, ...]
    specificity: tuple[int, ...]
    data: dict[str, Any]

    def match(self, path: str, query: dict[str, str] | None) -> dict[str, str] | None:
        m = self.regex.match(path)
        if m is None:
            return None
        params = {n: v for n, v in zip(self.param_names, m.groups(), strict=False) if v is not None}
        if self.query_params:
            if query is None:
                return None
            for q in self.query_params:
                if q not in query:
                    return None
                params[q] = query[q]
        return params


_PARAM = re.compile(r"\{(\*?)([^{}]+)\}")
_FLAGS = re.IGNORECASE | re.DOTALL


class _DeferredPattern:
    """An operation's URL regex until its first match, which compiles it and puts the compiled
    pattern on the operation in its place (`re` takes ~85 µs per distinct template: compiling a
    large service's 20,000 operations up front would take longer than the rest of its load)."""

    __slots__ = ("op", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.op: weakref.ref[Operation] | None = None

    def match(self, string: str) -> re.Match[str] | None:
        compiled = re.compile(self.pattern, _FLAGS)
        op = self.op() if self.op is not None else None
        if op is not None and op.regex is cast("re.Pattern[str]", self):
            op.regex = compiled
        return compiled.match(string)


def compile_operation(name: str, data: dict[str, Any]) -> Operation:
    template = str(data.get("urlTemplate") or "/")
    method = str(data.get("method") or "GET").upper()
    path, _, query = template.partition("?")
    if not path.startswith("/"):
        path = "/" + path
    names: list[str] = []
    literal = 0
    params = 0
    wild = 0
    pattern = ""
    pos = 0
    trailing_wild = path.endswith("/*")
    body = path[:-2] if trailing_wild else path
    for m in _PARAM.finditer(body):
        text = body[pos : m.start()]
        pattern += re.escape(text).replace(r"\*", "[^/]*")
        literal += len(text.replace("/", "").replace("*", ""))
        if m.group(1):
            pattern += "(.*)"
            wild += 1
        else:
            pattern += "([^/]+)"
            params += 1
        names.append(m.group(2))
        pos = m.end()
    tail = body[pos:]
    pattern += re.escape(tail).replace(r"\*", "[^/]*")
    literal += len(tail.replace("/", "").replace("*", ""))
    if trailing_wild:
        pattern += "(?:/.*)?"
        wild += 1
    elif pattern.endswith("/") and len(pattern) > 1:
        pattern += "?"
    else:
        pattern += "/?"
    if pattern in ("/?", "/"):
        pattern = "/?"
    query_names = tuple(
        m.group(2) for part in query.split("&") if part for m in [_PARAM.search(part)] if m is not None
    )
    segments = body.strip("/").count("/") + 1 if body.strip("/") else 0
    spec = (0 if method == "*" else 1, -wild, literal, segments, -params)
    deferred = _DeferredPattern("^" + pattern + "$")
    op = Operation(
        name=name,
        display_name=str(data.get("displayName") or name),
        method=method,
        template=template,
        regex=cast("re.Pattern[str]", deferred),  # compiled at the first match
        param_names=names,
        query_params=query_names,
        specificity=spec,
        data=data,
    )
    deferred.op = weakref.ref(op)
    return op


@dataclass(eq=False)
class Api:
    name: str
    display_name: str
    path: str  # lower case, no leading/trailing slash ("" for the root)
    service_url: str | None
    protocols: frozenset[str]
    subscription_required: bool
    key_header: bytes  # lower case, as ASGI delivers header names
    key_header_display: str
    key_query: str
    version: str | None
    version_set: str | None
    revision: str
    current: bool  # the current revision (answers on the API's URL; the others only on `;rev=`)
    base_id: str  # folded API id without `;rev=n`: products and subscriptions name the API by it
    data: dict[str, Any]
    operations: list[Operation] = field(default_factory=list)
    by_method: dict[str, list[Operation]] = field(default_factory=dict)

    def index_operations(self) -> None:
        self.operations.sort(key=lambda o: o.specificity, reverse=True)
        by: dict[str, list[Operation]] = {}
        wildcard = [o for o in self.operations if o.method == "*"]
        for o in self.operations:
            if o.method != "*":
                by.setdefault(o.method, []).append(o)
        for m, ops in by.items():
            by[m] = sorted(ops + wildcard, key=lambda o: o.specificity, reverse=True)
        by["*"] = wildcard
        self.by_method = by

    def find_operation(self, method: str, rest: str, query: str) -> tuple[Operation, dict[str, str]] | None:
        ops = self.by_method.get(method)
        if ops is None:
            ops = self.by_method.get("*", [])
        qmap: dict[str, str] | None = None
        for op in ops:
            if op.query_params and qmap is None:
                qmap = dict(parse_qsl(query, keep_blank_values=True))
            params = op.match(rest, qmap)
            if params is not None:
                return op, params
        return None


def build_api(name: str, data: dict[str, Any]) -> Api:
    names = data.get("subscriptionKeyParameterNames") or {}
    header = names.get("header") or DEFAULT_KEY_HEADER
    vs = data.get("apiVersionSetId")
    return Api(
        name=name,
        display_name=str(data.get("displayName") or name),
        path=str(data.get("path") or "").strip("/").lower(),
        service_url=data.get("serviceUrl"),
        protocols=frozenset(p.lower() for p in (data.get("protocols") or ["https"])),
        subscription_required=bool(data.get("subscriptionRequired", True)),
        key_header=header.lower().encode("latin-1"),
        key_header_display=header,
        key_query=names.get("query") or DEFAULT_KEY_QUERY,
        version=data.get("apiVersion") or None,
        version_set=fold_name(vs.rsplit("/", 1)[-1]) if vs else None,
        revision=str(data.get("apiRevision") or "1"),
        current=REV not in name,
        base_id=fold_name(name.split(REV, 1)[0]),
        data=data,
    )


def addresses(api: Api, scheme: str | None) -> list[tuple[str, str | None]]:
    """(table path, version key or None) where the API answers; `scheme` is its version set's
    versioning scheme, None when it is in no version set. The current revision answers on the
    API's URL and on its own revision URL, any other revision on its revision URL only."""
    rev = f"{REV}{api.revision.lower()}"
    version = api.version.lower() if api.version else None
    own: tuple[str, str | None] = (
        (api.path, version + rev) if scheme == "Segment" and version else (api.path + rev, version)
    )
    return [(api.path, version), own] if api.current else [own]


@dataclass
class VersionGroup:
    scheme: str  # Segment | Query | Header
    query_name: str
    header_name: str
    versions: dict[str, Api] = field(default_factory=dict)  # lower-case version → API
    unversioned: Api | None = None


@dataclass
class PathEntry:
    plain: Api | None = None
    groups: list[VersionGroup] = field(default_factory=list)


class Router:
    """API path table: lower-case path → entry; longest prefix at segment boundaries wins."""

    def __init__(self, apis: list[Api], version_sets: dict[str, dict[str, Any]]) -> None:
        self.table: dict[str, PathEntry] = {}
        self.max_depth = 0
        groups: dict[tuple[str, str], VersionGroup] = {}
        for api in apis:
            vs = version_sets.get(api.version_set) if api.version_set else None
            scheme = str(vs.get("versioningScheme") or "Segment") if vs is not None else None
            for path, version in addresses(api, scheme):
                entry = self.table.setdefault(path, PathEntry())
                self.max_depth = max(self.max_depth, path.count("/") + 1 if path else 0)
                if vs is None:
                    if entry.plain is None or api.name < entry.plain.name:
                        entry.plain = api
                    continue
                key = (path, api.version_set or "")
                group = groups.get(key)
                if group is None:
                    group = VersionGroup(
                        scheme=str(scheme),
                        query_name=str(vs.get("versionQueryName") or "api-version"),
                        header_name=str(vs.get("versionHeaderName") or "Api-Version"),
                    )
                    groups[key] = group
                    entry.groups.append(group)
                if version:
                    group.versions[version] = api
                else:
                    group.unversioned = api

    def resolve(self, path: str, query: str, headers: list[tuple[bytes, bytes]]) -> tuple[Api, str] | None:
        """(API, the rest of the path after the API path and version) or None."""
        raw = path.lstrip("/")
        segs = raw.split("/") if raw else []
        lower = [unquote(s).lower() for s in segs[: self.max_depth + 1]]
        for k in range(min(len(segs), self.max_depth), -1, -1):
            entry = self.table.get("/".join(lower[:k]))
            if entry is None:
                continue
            for group in entry.groups:
                hit = self._version(group, segs, k, query, headers)
                if hit is not None:
                    return hit
            if entry.plain is not None:
                return entry.plain, "/" + "/".join(segs[k:])
            for group in entry.groups:
                if group.unversioned is not None:
                    return group.unversioned, "/" + "/".join(segs[k:])
        return None

    @staticmethod
    def _version(
        group: VersionGroup, segs: list[str], k: int, query: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Api, str] | None:
        if group.scheme == "Segment":
            if k < len(segs):
                api = group.versions.get(unquote(segs[k]).lower())
                if api is not None:
                    return api, "/" + "/".join(segs[k + 1 :])
            return None
        version: str | None = None
        if group.scheme == "Query":
            if query:
                for name, value in parse_qsl(query, keep_blank_values=True):
                    if name == group.query_name:
                        version = value
                        break
        else:
            want = group.header_name.lower().encode("latin-1")
            for hname, hvalue in headers:
                if hname == want:
                    version = hvalue.decode("latin-1").strip()
                    break
        if version is None:
            return None
        api = group.versions.get(version.lower())
        return (api, "/" + "/".join(segs[k:])) if api is not None else None
