"""A policy bench without a server or a socket: a hand-built service and request, a fake backend
behind the gateway's backend seam (portico/gateway/backend.py), and a policy document run section
by section as the gateway runs it (inbound, backend, outbound; deferred steps after the answer)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from portico.gateway.backend import Backend
from portico.gateway.config import PolicyCompiling, ServiceConfig, Subscription
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.jwks import JwksCache
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import CompileContext, run_list
from portico.gateway.policies.limits import Counters
from portico.gateway.policies.pipeline import Pipeline, compile_document, compose
from portico.gateway.proxy import request_headers, response_parts
from portico.gateway.routing import build_api, compile_operation

_ids = itertools.count(1_000_000)  # service ids: the response cache and counters are per service


@dataclass
class Sent:
    """One request as the fake backend received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class FakeBackend:
    """The backend seam, answering every request with the same canned response."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    sent: list[Sent] = field(default_factory=list)

    def _answer(self, ctx: Context) -> None:
        query = ctx.current_query()
        headers = {n.decode(): v.decode() for n, v in request_headers(ctx)}
        url = ctx.backend_base + ctx.backend_suffix + ("?" + query if query else "")
        self.sent.append(Sent(ctx.method, url, headers, ctx.request_body))
        h = HeaderMap()
        for name, value in self.headers.items():
            h.set(name, [value])
        ctx.backend_status = self.status
        ctx.response = Response(self.status, h, self.body)

    async def forward(self, ctx: Context, timeout: float | None) -> None:  # noqa: ASYNC109
        self._answer(ctx)

    def forward_nowait(self, ctx: Context, timeout: float | None, done: Any) -> None:
        self._answer(ctx)
        done(None)

    async def buffer_body(self, ctx: Context) -> None:
        """The request's body is given whole (`request(body=...)`): nothing more to read."""


def service(
    *, backends: dict[str, Any] | None = None, users: dict[str, dict[str, Any]] | None = None
) -> ServiceConfig:
    """A compiled service as the loader builds it, holding only what the tests give it."""
    row = SimpleNamespace(
        id=next(_ids), active_store_id=1, name="contoso", etag="e", location="West Europe", properties={}
    )
    svc = ServiceConfig(PolicyCompiling(Counters(), JwksCache()), row)
    svc.backends = {k.lower(): v for k, v in (backends or {}).items()}
    svc.user_json = {k: orjson.dumps(v) for k, v in (users or {}).items()}
    return svc


def subscription(name: str = "sub1", owner: str | None = "ann") -> Subscription:
    return Subscription(
        name=name,
        display_name=name.title(),
        scope_kind="all",
        scope_id="",
        state="active",
        owner=owner,
        primary="pk-" + name,
        secondary="sk-" + name,
        data={},
    )


API = {"displayName": "Echo", "path": "echo", "serviceUrl": "http://backend.test/svc", "protocols": ["https"]}


def request(
    svc: ServiceConfig,
    backend: Backend,
    *,
    method: str = "GET",
    path: str = "/echo/items/7",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    client_ip: str = "10.0.0.1",
    template: str = "/items/{id}",
    sub: Subscription | None = None,
) -> Context:
    """A request routed to the API `echo` (backend http://backend.test/svc), operation `op`."""
    raw = [(b"host", b"contoso.gateway.test")]
    raw += [(n.lower().encode(), v.encode()) for n, v in (headers or {}).items()]
    ctx = Context(
        svc, method, "https", "contoso.gateway.test", 443, path, query, raw, client_ip, "req-1", None, backend
    )
    api = build_api("echo", API)
    op = compile_operation("op", {"displayName": "Op", "method": method, "urlTemplate": template})
    rest = path[len("/echo") :]
    ctx.api, ctx.operation = api, op
    ctx.params = op.match(rest, None) or {}
    ctx.backend_base, ctx.backend_suffix = api.service_url or "", rest
    ctx.request_body = body
    if sub is not None:
        ctx.subscription, ctx.subscription_key = sub, sub.primary
    return ctx


def pipeline(
    svc: ServiceConfig, inbound: str = "", backend: str = "<base />", outbound: str = "", on_error: str = ""
) -> Pipeline:
    """One API-level document over the platform's default (forward-request), compiled as the
    service compiles it."""
    xml = (
        f"<policies><inbound><base />{inbound}</inbound><backend>{backend}</backend>"
        f"<outbound><base />{outbound}</outbound><on-error><base />{on_error}</on-error></policies>"
    )
    cc = CompileContext(
        scope=f"{svc.id}:apis/echo",
        limits=svc.compiling.counters,
        quotas=svc.compiling.quotas,
        jwks=svc.compiling.jwks,
        backends=svc.backends,
    )
    return compose([compile_document(xml, cc)])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def run(pipe: Pipeline, ctx: Context) -> Answer:
    """The sections in the gateway's order; a Reject propagates to the test (the gateway turns it
    into API Management's error body after on-error)."""
    if await run_list(pipe.inbound, ctx) is STOP:
        if ctx.cache is not None and ctx.cache.hit:  # answered from the cache
            await run_list(pipe.after_cache_store, ctx)
    elif await run_list(pipe.backend, ctx) is not STOP:
        await run_list(pipe.outbound, ctx)
    status, headers, body, _checked = response_parts(ctx)
    for step in ctx.deferred:
        step(ctx)
    assert body is not None
    return Answer(status, {n.decode(): v.decode() for n, v in headers}, body)


async def rejected(pipe: Pipeline, ctx: Context) -> Reject:
    try:
        await run(pipe, ctx)
    except Reject as rej:
        return rej
    raise AssertionError("the request was not refused")
