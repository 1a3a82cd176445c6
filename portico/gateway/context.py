"""Per-request state of the gateway, and what policy expressions see of it as `context`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote

from portico.gateway.client_certificate import PeerCertificate
from portico.gateway.expressions import ExpressionError, LiveBody, to_text
from portico.gateway.upstream import split_url

if TYPE_CHECKING:
    from portico.gateway.backend import Backend
    from portico.gateway.config import Product, ServiceConfig, Subscription
    from portico.gateway.diagnostics import Capture
    from portico.gateway.policies.cache import CacheState
    from portico.gateway.routing import Api, Operation
    from portico.gateway.upstream import BackendTls, UpstreamResponse
    from portico.gateway.websocket import Tunnel


class HeaderMap:
    """Case-insensitive multi-valued headers: lowercased name → (display name, [values])."""

    __slots__ = ("d",)

    def __init__(self) -> None:
        self.d: dict[str, tuple[str, list[str]]] = {}

    @classmethod
    def from_raw(cls, raw: list[tuple[bytes, bytes]]) -> HeaderMap:
        h = cls()
        d = h.d
        for name, value in raw:
            n = name.decode("latin-1")
            low = n.lower()
            v = value.decode("latin-1")
            if low in d:
                d[low][1].append(v)
            else:
                d[low] = (n, [v])
        return h

    def get(self, name: str) -> str | None:
        e = self.d.get(name.lower())
        return ",".join(e[1]) if e else None

    def get_all(self, name: str) -> list[str]:
        e = self.d.get(name.lower())
        return list(e[1]) if e else []

    def set(self, name: str, values: list[str]) -> None:
        self.d[name.lower()] = (name, values)

    def add(self, name: str, value: str) -> None:
        e = self.d.get(name.lower())
        if e:
            e[1].append(value)
        else:
            self.d[name.lower()] = (name, [value])

    def delete(self, name: str) -> None:
        self.d.pop(name.lower(), None)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.d

    def to_raw(self) -> list[tuple[bytes, bytes]]:
        """One line per header, values joined with ", " (RFC 9110 §5.3); Set-Cookie stays apart."""
        out = []
        for name, values in self.d.values():
            n = name.encode("latin-1")
            if len(values) > 1 and name.lower() != "set-cookie":
                out.append((n, ", ".join(values).encode("latin-1", "replace")))
                continue
            for v in values:
                out.append((n, v.encode("latin-1", "replace")))
        return out

    # expressions: IReadOnlyDictionary<string, string[]>
    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self.d)
        if name == "Keys":
            return [n for n, _ in self.d.values()]
        raise ExpressionError(f"'Headers' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "GetValueOrDefault":
            v = self.get(to_text(args[0]))
            return v if v is not None else (args[1] if len(args) > 1 else None)
        if name == "ContainsKey":
            return to_text(args[0]).lower() in self.d
        if name == "ToString":
            return "System.Collections.Generic.Dictionary`2[System.String,System.String[]]"
        raise ExpressionError(f"'Headers' does not contain a method '{name}'.")

    def expr_index(self, key: Any) -> Any:
        e = self.d.get(to_text(key).lower())
        if e is None:
            raise ExpressionError(f"The given key '{to_text(key)[:60]}' was not present in the dictionary.")
        return list(e[1])


class QueryMap(HeaderMap):
    """Query parameters (case-sensitive names, as in URLs) with the same expression surface."""

    @classmethod
    def parse(cls, query: str) -> QueryMap:
        q = cls()
        for k, v in parse_qsl(query, keep_blank_values=True):
            q.add(k, v)
        return q

    def add(self, name: str, value: str) -> None:
        e = self.d.get(name)
        if e:
            e[1].append(value)
        else:
            self.d[name] = (name, [value])

    def get(self, name: str) -> str | None:
        e = self.d.get(name)
        return ",".join(e[1]) if e else None

    def get_all(self, name: str) -> list[str]:
        e = self.d.get(name)
        return list(e[1]) if e else []

    def set(self, name: str, values: list[str]) -> None:
        self.d[name] = (name, values)

    def delete(self, name: str) -> None:
        self.d.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self.d

    def encode(self) -> str:
        return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, vs in self.d.values() for v in vs)

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "GetValueOrDefault":
            v = self.get(to_text(args[0]))
            return v if v is not None else (args[1] if len(args) > 1 else None)
        if name == "ContainsKey":
            return to_text(args[0]) in self.d
        return super().expr_call(name, args, generic)

    def expr_index(self, key: Any) -> Any:
        e = self.d.get(to_text(key))
        if e is None:
            raise ExpressionError(f"The given key '{to_text(key)[:60]}' was not present in the dictionary.")
        return list(e[1])


class Variables(dict[str, Any]):
    def expr_member(self, name: str) -> Any:
        if name == "Count":
            return len(self)
        if name == "Keys":
            return list(self.keys())
        raise ExpressionError(f"'Variables' does not contain a definition for '{name}'.")

    def expr_call(self, name: str, args: list[Any], generic: str | None) -> Any:
        if name == "GetValueOrDefault":
            key = to_text(args[0])
            if key in self:
                return self[key]
            if len(args) > 1:
                return args[1]
            return 0 if generic in ("int", "long", "double") else False if generic == "bool" else None
        if name == "ContainsKey":
            return to_text(args[0]) in self
        raise ExpressionError(f"'Variables' does not contain a method '{name}'.")

    def expr_index(self, key: Any) -> Any:
        k = to_text(key)
        if k not in self:
            raise ExpressionError(f"The given key '{k[:60]}' was not present in the dictionary.")
        return self[k]


class _View:
    """Expression access to a fixed set of members, computed by small getters."""

    __slots__ = ("getters", "label")

    def __init__(self, label: str, getters: dict[str, Any]) -> None:
        self.label = label
        self.getters = getters

    def expr_member(self, name: str) -> Any:
        g = self.getters.get(name)
        if g is None:
            raise ExpressionError(f"'{self.label}' does not contain a definition for '{name}'.")
        return g() if callable(g) else g

    def expr_text(self) -> str:
        g = self.getters.get("__str__")
        return str(g()) if callable(g) else self.label


def _url_view(scheme: str, host: str, port: int, path: str, query: QueryMap | None, query_text: str) -> _View:
    def qs() -> str:
        text = query.encode() if query is not None else query_text
        return "?" + text if text else ""

    default = 443 if scheme == "https" else 80
    return _View(
        "Url",
        {
            "Scheme": scheme,
            "Host": host,
            "Port": port,
            "Path": unquote(path),
            "QueryString": qs,
            "Query": lambda: query if query is not None else QueryMap.parse(query_text),
            "__str__": lambda: f"{scheme}://{host}{'' if port == default else f':{port}'}{path}{qs()}",
        },
    )


def _dt(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Response:
    """What the gateway answers: from the backend (streamed) or made by a policy (bytes)."""

    __slots__ = ("body", "headers", "raw_headers", "reason", "status", "upstream")

    def __init__(
        self, status: int, headers: HeaderMap | None = None, body: bytes = b"", reason: str = ""
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw_headers: list[tuple[bytes, bytes]] | None = None
        self.body = body
        self.upstream: UpstreamResponse | None = None

    def header_map(self) -> HeaderMap:
        if self.headers is None:
            self.headers = HeaderMap.from_raw(self.raw_headers or [])
            self.raw_headers = None
        return self.headers

    def buffered_body(self) -> bytes:
        if self.upstream is not None:  # policies reading the body read it whole first (ReadsResponseBody)
            raise ExpressionError("The response body was not buffered before the policy read it.")
        return self.body

    def consume_body(self) -> None:
        self.body = b""
        h = self.header_map()
        h.delete("content-length")
        h.delete("transfer-encoding")

    def drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


class Context:
    """One request through the gateway. Policies read and change it; expressions see `context`."""

    __slots__ = (
        "_headers",
        "_peer",
        "_user",
        "api",
        "backend",
        "backend_base",
        "backend_ms",
        "backend_status",
        "backend_suffix",
        "backend_tls",
        "bytes_in",
        "bytes_out",
        "cache",
        "client_certificate",
        "client_ip",
        "counted",  # quota-by-key's counters this request incremented; left unset until then
        "deferred",
        "diag",
        "extra_headers",
        "forward_timeout",
        "host",
        "last_error",
        "method",
        "operation",
        "params",
        "path",
        "port",
        "product",
        "query",
        "query_text",
        "raw_headers",
        "receive",
        "request_body",
        "request_id",
        "response",
        "scheme",
        "service",
        "started",
        "stopped_by",
        "subscription",
        "subscription_key",
        "timestamp",
        "tunnel",
        "variables",
    )
    counted: set[Any]  # not set by __init__: most requests meet no quota-by-key

    def __init__(
        self,
        service: ServiceConfig,
        method: str,
        scheme: str,
        host: str,
        port: int,
        path: str,
        query_text: str,
        raw_headers: list[tuple[bytes, bytes]],
        client_ip: str,
        request_id: str,
        receive: Any,
        backend: Backend,
        client_certificate: bytes | None = None,
    ) -> None:
        self.service = service
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.query_text = query_text
        self.query: QueryMap | None = None
        self.raw_headers = raw_headers
        self._headers: HeaderMap | None = None
        self.client_ip = client_ip
        self.client_certificate = client_certificate  # DER, as the TLS client presented it
        self._peer: PeerCertificate | None = None
        self.request_id = request_id
        self.receive = receive
        self.backend = backend  # where forward-request sends the request (portico/gateway/backend.py)
        self.started = time.perf_counter()
        self.timestamp = time.time()
        self.api: Api | None = None
        self.operation: Operation | None = None
        self.product: Product | None = None
        self.subscription: Subscription | None = None
        self.subscription_key: str | None = None
        self._user: Any = None
        self.params: dict[str, str] = {}
        self.variables = Variables()
        self.backend_base = ""
        self.backend_suffix = ""
        self.backend_tls: BackendTls | None = None  # None: check chain and name, no client certificate
        self.forward_timeout: float | None = None
        self.response: Response | None = None
        self.backend_status: int | None = None
        self.backend_ms: float | None = None
        self.last_error: dict[str, str] | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.deferred: list[Any] = []
        self.diag: Capture | None = None  # set when diagnostics apply to the request's API
        self.stopped_by: str | None = None
        self.cache: CacheState | None = None  # set by cache-lookup (portico/gateway/policies/cache.py)
        self.request_body: bytes | None = None  # set-body on the request side replaces the stream
        self.extra_headers: list[tuple[str, str]] = []  # added to whatever response goes out
        self.tunnel: Tunnel | None = None  # a WebSocket handshake's (portico/gateway/websocket.py)

    # --- request pieces, materialised only when a policy needs them ----------------------------
    @property
    def headers(self) -> HeaderMap:
        if self._headers is None:
            self._headers = HeaderMap.from_raw(self.raw_headers)
        return self._headers

    @property
    def headers_touched(self) -> bool:
        return self._headers is not None

    def query_map(self) -> QueryMap:
        if self.query is None:
            self.query = QueryMap.parse(self.query_text)
        return self.query

    def current_query(self) -> str:
        return self.query.encode() if self.query is not None else self.query_text

    def peer_certificate(self) -> PeerCertificate | None:
        """The client's TLS certificate (None: it sent none, or the hostname did not ask)."""
        der = self.client_certificate
        if der is None:
            return None
        if self._peer is None:  # parsed (and its chain built) once per request
            self._peer = PeerCertificate(der, self.service.client_trust)
        return self._peer

    def user(self) -> Any:
        if self._user is None and self.subscription is not None and self.subscription.owner:
            self._user = self.service.user(self.subscription.owner)
        return self._user

    # --- expressions -----------------------------------------------------------------------
    def _request_body(self) -> bytes:
        if self.request_body is not None:
            return self.request_body
        h = self.headers
        if "transfer-encoding" in h or (h.get("content-length") or "0").strip() not in ("", "0"):
            # the pipeline buffers the body of a request whose policies read it (Pipeline.buffers_request)
            raise ExpressionError("The request body was not buffered before the policy read it.")
        return b""

    def _consume_request_body(self) -> None:
        self.request_body = b""
        self.headers.delete("content-length")
        self.headers.delete("transfer-encoding")

    def expr_member(self, name: str) -> Any:
        if name == "Request":
            return _View(
                "Request",
                {
                    "Method": self.method,
                    "Url": lambda: _url_view(
                        self.scheme, self.host, self.port, self.path, self.query, self.query_text
                    ),
                    "OriginalUrl": lambda: _url_view(
                        self.scheme, self.host, self.port, self.path, None, self.query_text
                    ),
                    "Headers": lambda: self.headers,
                    "IpAddress": self.client_ip,
                    "MatchedParameters": lambda: Variables(self.params),
                    "Certificate": self.peer_certificate,
                    "Body": LiveBody(self._request_body, self._consume_request_body),
                },
            )
        if name == "Response":
            r = self.response
            if r is None:
                return _View(
                    "Response",
                    {
                        "StatusCode": 0,
                        "StatusReason": "",
                        "Headers": HeaderMap(),
                        "Body": LiveBody(bytes, lambda: None),
                    },
                )
            return _View(
                "Response",
                {
                    "StatusCode": r.status,
                    "StatusReason": r.reason,
                    "Headers": r.header_map,
                    "Body": LiveBody(r.buffered_body, r.consume_body),
                },
            )
        if name == "Subscription":
            s = self.subscription
            if s is None:
                return None
            return _View(
                "Subscription",
                {
                    "Id": s.name,
                    "Name": s.display_name,
                    "Key": self.subscription_key,
                    "PrimaryKey": s.primary,
                    "SecondaryKey": s.secondary,
                    "CreatedDate": lambda: _dt(s.data.get("createdDate")),
                    "StartDate": lambda: _dt(s.data.get("startDate")),
                    "EndDate": lambda: _dt(s.data.get("endDate")),
                },
            )
        if name == "User":
            u = self.user()
            if u is None:
                return None
            return _View(
                "User",
                {
                    "Id": u.get("_id"),
                    "Email": u.get("email"),
                    "FirstName": u.get("firstName"),
                    "LastName": u.get("lastName"),
                    "Note": u.get("note"),
                    "RegistrationDate": lambda: _dt(u.get("registrationDate")),
                },
            )
        if name == "Product":
            p = self.product
            if p is None:
                return None
            return _View(
                "Product",
                {
                    "Id": p.name,
                    "Name": p.display_name,
                    "SubscriptionRequired": p.subscription_required,
                    "ApprovalRequired": bool(p.data.get("approvalRequired")),
                },
            )
        if name == "Api":
            a = self.api
            if a is None:
                return None
            return _View(
                "Api",
                {
                    "Id": a.name,
                    "Name": a.display_name,
                    "Path": "/" + a.path,
                    "Version": a.version or "",
                    "Revision": a.revision,
                    "IsCurrentRevision": a.current,
                    "Protocols": list(a.protocols),
                    "ServiceUrl": lambda: _url_of(a.service_url),
                    "SubscriptionKeyParameterNames": _View(
                        "KeyNames", {"Header": a.key_header_display, "Query": a.key_query}
                    ),
                },
            )
        if name == "Operation":
            o = self.operation
            if o is None:
                return None
            return _View(
                "Operation",
                {"Id": o.name, "Name": o.display_name, "Method": o.method, "UrlTemplate": o.template},
            )
        if name == "Variables":
            return self.variables
        if name == "LastError":
            e = self.last_error
            if e is None:
                return None
            return _View(
                "LastError",
                {
                    k: e.get(k.lower(), "")
                    for k in ("Source", "Reason", "Message", "Scope", "Section", "Path", "PolicyId")
                },
            )
        if name == "Deployment":
            svc = self.service
            return _View(
                "Deployment", {"Region": svc.location, "ServiceName": svc.name, "GatewayId": "managed"}
            )
        if name == "RequestId":
            return self.request_id
        if name == "Timestamp":
            return datetime.fromtimestamp(self.timestamp, UTC)
        if name == "Elapsed":
            return time.perf_counter() - self.started
        if name == "Tracing":
            return False
        raise ExpressionError(f"'context' does not contain a definition for '{name}'.")


def _url_of(url: str | None) -> Any:
    if not url:
        return None
    try:
        scheme, host, port, target = split_url(url)
    except ValueError:
        return None
    path, _, q = target.partition("?")
    return _url_view(scheme, host, port, path or "/", None, q)
