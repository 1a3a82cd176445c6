"""Diagnostics and loggers applied by the gateway, written to Portico's one log sink.

A service's `diagnostics` (and an API's, which replace the service's diagnostic of the same id for
that API) name a `logger`; for each request of an API they apply to, the gateway writes one JSON
line to that logger when the request is sampled (`sampling.percentage`) or, with
`alwaysLog: allErrors`, when it failed (status >= 400 or an error ran on-error). The line holds
the request's facts and, as the diagnostic asks, the `frontend`/`backend` request/response headers
named and the first `body.bytes` of bodies the gateway held in memory; `trace` policy messages
whose severity the diagnostic's `verbosity` admits ride along. `log-to-eventhub` writes its message
to its logger, `emit-metric` its metric to the `applicationinsights` diagnostic's (with `metrics`). `httpCorrelationProtocol` (W3C `traceparent`, Legacy `Request-Id`) puts the gateway's
span into the backend request and the line; `operationNameFormat` names the line's operation (Name,
Url). Portico cannot reach Application Insights, Event Hubs or Azure Monitor: every
logger, whatever its `loggerType`, writes to `{PORTICO_GATEWAY_LOG_DIR}/{service}/{logger}.jsonl`
(one `write` per line on an O_APPEND file, so worker processes share it). Secrets are masked:
Authorization, subscription keys (header and query), cookies, and the diagnostic's dataMasking.
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context

log = logging.getLogger("portico.gateway")

DENY = frozenset(
    {"authorization", "proxy-authorization", "ocp-apim-subscription-key", "cookie", "set-cookie"}
)
MASK = "***"
_SEVERITY = {"verbose": 0, "information": 1, "error": 2}
_NAME = re.compile(r"[^A-Za-z0-9._-]")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ROOT = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Message:
    """What a diagnostic logs of one HTTP message: the headers named, the first `body` bytes."""

    headers: tuple[str, ...] = ()
    body: int = 0
    hide: frozenset[str] = frozenset()  # dataMasking mode Hide: left out
    mask: frozenset[str] = frozenset()  # dataMasking mode Mask: value replaced
    hide_query: frozenset[str] = frozenset()  # the same for query parameters (of the URL logged)
    mask_query: frozenset[str] = frozenset()

    @staticmethod
    def of(spec: Any) -> Message:
        if not isinstance(spec, dict):
            return Message()
        masking = (spec.get("dataMasking") or {}).get("headers") or []
        query = (spec.get("dataMasking") or {}).get("queryParams") or []
        return Message(
            tuple(str(h).lower() for h in spec.get("headers") or []),
            int((spec.get("body") or {}).get("bytes") or 0),
            frozenset(str(m.get("value", "")).lower() for m in masking if m.get("mode") == "Hide"),
            frozenset(str(m.get("value", "")).lower() for m in masking if m.get("mode") != "Hide"),
            frozenset(str(m.get("value", "")).lower() for m in query if m.get("mode") == "Hide"),
            frozenset(str(m.get("value", "")).lower() for m in query if m.get("mode") != "Hide"),
        )

    def render(self, headers: list[tuple[bytes, bytes]] | None, body: Any, secret: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.headers and headers is not None:
            wanted: dict[str, str] = {}
            for raw_name, raw_value in headers:
                name = raw_name.decode("latin-1").lower()
                if name not in self.headers or name in self.hide:
                    continue
                masked = name in DENY or name == secret or name in self.mask
                value = MASK if masked else raw_value.decode("latin-1")
                wanted[name] = f"{wanted[name]}, {value}" if name in wanted else value
            out["headers"] = wanted
        if self.body:
            if isinstance(body, bytes | bytearray):
                out["body"] = bytes(body[: self.body]).decode("utf-8", "replace")
            elif body is not None:
                out["body"] = None  # streamed through: the gateway did not hold it
                out["bodyNotCaptured"] = "streamed"
        return out


@dataclass(frozen=True, slots=True)
class Diagnostic:
    name: str
    logger: str  # logger id, lower case
    sampling: float  # percentage
    all_errors: bool
    verbosity: int
    client_ip: bool
    frontend_request: Message
    frontend_response: Message
    backend_request: Message
    backend_response: Message
    correlation: str = "None"  # httpCorrelationProtocol: None, Legacy or W3C
    name_by_url: bool = False  # operationNameFormat Url (else Name)
    metrics: bool = False  # Application Insights only: custom metrics (emit-metric) go to its logger

    @staticmethod
    def of(name: str, data: dict[str, Any]) -> Diagnostic:
        sampling = data.get("sampling") or {}
        pct = (
            float(sampling.get("percentage", 100))
            if sampling.get("samplingType", "fixed") == "fixed"
            else 100
        )
        fe, be = data.get("frontend") or {}, data.get("backend") or {}
        return Diagnostic(
            fold_name(name),
            fold_name(str(data.get("loggerId", "")).rsplit("/", 1)[-1]),
            pct,
            data.get("alwaysLog") == "allErrors",
            _SEVERITY.get(str(data.get("verbosity") or "information"), 1),
            bool(data.get("logClientIp")),
            Message.of(fe.get("request")),
            Message.of(fe.get("response")),
            Message.of(be.get("request")),
            Message.of(be.get("response")),
            # Azure's setting is for Application Insights, the diagnostic of this id only
            str(data.get("httpCorrelationProtocol") or "None")
            if fold_name(name) == "applicationinsights"
            else "None",
            data.get("operationNameFormat") == "Url",
            fold_name(name) == "applicationinsights" and data.get("metrics") is True,
        )


def diagnostics_by_api(
    raw: dict[tuple[str, str], Any], loggers: dict[str, Any]
) -> dict[str, tuple[Diagnostic, ...]]:
    """'' → the service's diagnostics; API id (lower) → the service's with the API's replacing
    those of the same id. Only APIs with diagnostics of their own are keys besides ''."""
    service: dict[str, Diagnostic] = {}
    per_api: dict[str, dict[str, Diagnostic]] = {}
    for (parent, name), data in raw.items():
        d = Diagnostic.of(name, data)
        if d.logger not in loggers:
            continue  # the control plane checks references; a logger deleted since logs nothing
        if not parent:
            service[d.name] = d
        elif parent.lower().startswith("apis/"):
            per_api.setdefault(fold_name(parent.split("/", 1)[1]), {})[d.name] = d
    out = {"": tuple(service.values())}
    for api, own in per_api.items():
        out[api] = tuple({**service, **own}.values())
    return out if any(out.values()) else {}


class Capture:
    """What a request's diagnostics need that is gone by its end: the backend request's headers and
    the backend response's (before outbound policies change them), and `trace` messages; and the
    correlation headers their `httpCorrelationProtocol` sends to the backend."""

    __slots__ = ("backend_request", "backend_response", "correlation", "diagnostics", "inject", "traces")

    def __init__(self, diagnostics: tuple[Diagnostic, ...], inbound: list[tuple[bytes, bytes]]) -> None:
        self.diagnostics = diagnostics
        self.backend_request: list[tuple[bytes, bytes]] | None = None
        self.backend_response: list[tuple[bytes, bytes]] | None = None
        self.traces: list[tuple[int, dict[str, Any]]] = []
        self.correlation: dict[str, dict[str, str]] = {}  # protocol → what the log record shows
        self.inject: list[tuple[bytes, bytes]] = []  # set on the backend request, replacing any sent
        protocols = {d.correlation for d in diagnostics if d.correlation in ("W3C", "Legacy")}
        if protocols:
            self._correlate(protocols, inbound)

    def _correlate(self, protocols: set[str], inbound: list[tuple[bytes, bytes]]) -> None:
        """The gateway's own span in the caller's trace: the trace id (App Insights' operation id)
        of the inbound `traceparent` (W3C) or `Request-Id` root (Legacy), else a new one."""
        parent = legacy = b""
        for name, value in inbound:
            if name == b"traceparent":
                parent = value
            elif name == b"request-id":
                legacy = value
        span = os.urandom(8).hex()
        m = _TRACEPARENT.fullmatch(parent.decode("latin-1").strip().lower())
        valid = m is not None and m[1] != "ff" and m[2] != "0" * 32 and m[3] != "0" * 16
        trace_id = m[2] if m is not None and valid else ""
        flags = m[4] if m is not None and valid else "01"
        root = ""
        if legacy.startswith(b"|"):
            root = legacy[1:].split(b".", 1)[0].decode("latin-1")[:64]
        if not _ROOT.fullmatch(root):
            root = ""
        trace_id = trace_id or (root.lower() if _TRACE_ID.fullmatch(root.lower()) else os.urandom(16).hex())
        if "W3C" in protocols:
            traceparent = f"00-{trace_id}-{span}-{flags}"
            self.inject.append((b"traceparent", traceparent.encode()))
            self.correlation["W3C"] = {"operationId": trace_id, "traceparent": traceparent}
        if "Legacy" in protocols:
            request_id = f"|{root or trace_id}.{span}."
            self.inject.append((b"request-id", request_id.encode()))
            self.correlation["Legacy"] = {"operationId": root or trace_id, "requestId": request_id}


class LogSink:
    """JSON lines per (service, logger) under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[tuple[str, str], int] = {}
        self.failed = 0

    def write(self, service: str, logger: str, record: dict[str, Any]) -> None:
        key = (service, logger)
        try:
            fd = self._fds.get(key)
            if fd is None:
                folder = self.directory / _NAME.sub("_", service)
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(
                    folder / f"{_NAME.sub('_', logger)}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
                )
                self._fds[key] = fd
            os.write(fd, orjson.dumps(record) + b"\n")
        except OSError as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                log.warning(
                    "gateway: log sink %s failed (%d records lost): %s", self.directory, self.failed, exc
                )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def request_record(ctx: Context, d: Diagnostic, secret_header: str, secret_query: str) -> dict[str, Any]:
    r = ctx.response
    api, op, sub = ctx.api, ctx.operation, ctx.subscription
    q = _masked_query(ctx.query_text, secret_query, d.frontend_request)
    rec: dict[str, Any] = {
        "type": "request",
        "timestamp": datetime.fromtimestamp(ctx.timestamp, UTC).isoformat().replace("+00:00", "Z"),
        "requestId": ctx.request_id,
        "diagnostic": d.name,
        "api": api.name if api is not None else None,
        "operation": op.name if op is not None else None,
        "product": ctx.product.name if ctx.product is not None else None,
        "subscription": sub.name if sub is not None else None,
        "method": ctx.method,
        "url": f"{ctx.scheme}://{ctx.host}{ctx.path}{'?' + q if q else ''}"[:2048],
        "status": r.status if r is not None else 0,
        "backendStatus": ctx.backend_status,
        "backendMs": ctx.backend_ms,
    }
    if api is not None:
        if d.name_by_url:
            rec["operationName"] = f"{ctx.method} {ctx.path}"[:2048]
        else:  # API Management's Name format: `api;rev=n - operation`
            named = f"{api.name.split(';rev=', 1)[0]};rev={api.revision}"
            rec["operationName"] = f"{named} - {op.name}" if op is not None else named
    if d.client_ip:
        rec["clientIp"] = ctx.client_ip
    if ctx.diag is not None and d.correlation in ctx.diag.correlation:
        rec["correlation"] = {"protocol": d.correlation, **ctx.diag.correlation[d.correlation]}
    if ctx.last_error:
        rec["lastError"] = {k: ctx.last_error.get(k) for k in ("Source", "Reason", "Message")}
    cap = ctx.diag
    fe: dict[str, Any] = {}
    be: dict[str, Any] = {}
    if part := d.frontend_request.render(ctx.raw_headers, ctx.request_body, secret_header):
        fe["request"] = part
    response_headers = (r.raw_headers if r.headers is None else r.headers.to_raw()) if r is not None else None
    if r is not None and (part := d.frontend_response.render(response_headers, r.body, secret_header)):
        fe["response"] = part
    if cap is not None and cap.backend_request is not None:
        if part := d.backend_request.render(cap.backend_request, ctx.request_body, secret_header):
            be["request"] = part
    if cap is not None and cap.backend_response is not None:
        body = r.body if r is not None and ctx.backend_status is not None else None
        if part := d.backend_response.render(cap.backend_response, body, secret_header):
            be["response"] = part
    if fe:
        rec["frontend"] = fe
    if be:
        rec["backend"] = be
    if cap is not None:
        traces = [t for level, t in cap.traces if level >= d.verbosity]
        if traces:
            rec["traces"] = traces
    return rec


def _masked_query(q: str, secret: str, m: Message) -> str:
    """The query string logged: the subscription key and dataMasking's Mask parameters as ***,
    its Hide parameters left out (names compared as sent, case-insensitively)."""
    if not q:
        return q
    low = q.lower()
    if not (secret and secret in low) and not m.hide_query and not m.mask_query:
        return q
    parts = []
    for p in q.split("&"):
        k = p.partition("=")[0]
        name = unquote_plus(k).lower()
        if name in m.hide_query:
            continue
        parts.append(f"{k}={MASK}" if name == secret or name in m.mask_query else p)
    return "&".join(parts)


def log_request(ctx: Context, sink: LogSink) -> None:
    """After the answer: one line per diagnostic that samples the request in (or an error in)."""
    cap = ctx.diag
    if cap is None:
        return
    r = ctx.response
    failed = ctx.last_error is not None or (r is not None and r.status >= 400)
    api = ctx.api
    secret_header = api.key_header.decode("latin-1") if api is not None else ""
    secret_query = api.key_query.lower() if api is not None else ""
    for d in cap.diagnostics:
        if (d.all_errors and failed) or (d.sampling >= 100 or random.random() * 100 < d.sampling):
            sink.write(ctx.service.name, d.logger, request_record(ctx, d, secret_header, secret_query))
