"""The gateway ASGI application: host → service, path → API → operation, key check, policies,
backend, analytics. A plain ASGI callable (no framework): this is the hot path."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from functools import partial
from typing import Any

from portico.gateway import websocket
from portico.gateway.analytics import UsageForwarder, UsageWriter
from portico.gateway.client_body import ClientGone
from portico.gateway.config import ConfigStore
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.diagnostics import Capture, LogSink, log_request
from portico.gateway.expressions import ExpressionError
from portico.gateway.gql import GraphqlEndpoint
from portico.gateway.jwks import JwksCache
from portico.gateway.keys import authenticate
from portico.gateway.outcome import STOP, Reject
from portico.gateway.policies.base import run_list, run_now
from portico.gateway.policies.limits import Counters, CounterStore
from portico.gateway.policies.pipeline import Pipeline
from portico.gateway.proxy import (
    Forwarder,
    error_body,
    response_parts,
    send_response,
    stream_response,
)
from portico.gateway.quotas import QuotaFlusher, QuotaLedger
from portico.gateway.upstream import Upstream
from portico.identity.credentials.runtime import CredentialSource
from portico.identity.keys import SigningKeys
from portico.identity.validation import TokenValidator
from portico.names import fold_name
from portico.secrets_box import load_or_create
from portico.settings import Settings
from portico.store.db import Database

log = logging.getLogger("portico.gateway")

NOT_FOUND = error_body(404, "Resource not found")


def _json_head(body: bytes) -> list[tuple[bytes, bytes]]:
    """Headers of a JSON answer the gateway writes itself (errors)."""
    return [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", b"%d" % len(body))]


class Gateway:
    """Everything one gateway node holds. `await start()` before serving, `await stop()` after."""

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        counters: CounterStore | None = None,
        usage: UsageForwarder | None = None,
        migrate_schema: bool = True,
    ) -> None:
        """`counters` and `usage`: a worker process's shares of its node (portico/gateway/workers.py)."""
        self.settings = settings
        # Every node of a deployment loads the server secret key the same way (it opens the
        # certificates and secrets the store seals): the same PORTICO_SECRET_KEY or secret.key.
        self.db = db or Database(settings.resolved_database_url, load_or_create(settings))
        self._own_db = db is None
        self._migrate_schema = migrate_schema
        self.counters: CounterStore = counters if counters is not None else Counters()
        self.jwks = JwksCache()
        # quota counters: counted here, flushed to the database in the background (gateway/quotas.py)
        self.quotas = QuotaLedger()
        self.quota_flusher = QuotaFlusher(self.db, self.quotas, settings.gateway_quota_flush_seconds)
        self.config = ConfigStore(
            self.db,
            settings.gateway_domain,
            settings.gateway_config_poll_seconds,
            self.counters,
            self.jwks,
            self.quotas,
        )
        self.log_sink: LogSink | None = LogSink(
            settings.gateway_log_dir or settings.data_dir / "gateway-logs"
        )
        self.config.compiling.log_sink = self.log_sink
        self.credentials = self.config.compiling.credentials = CredentialSource(
            self.db,
            functools.cache(lambda: load_or_create(settings)),
            TokenValidator(settings, SigningKeys(self.db)),
        )
        self.upstream = Upstream(connect_timeout=settings.gateway_connect_timeout)
        self.backend = Forwarder(
            self.upstream, settings.gateway_max_body_bytes, settings.gateway_backend_timeout
        )
        self.connector = websocket.Connector(
            self.backend, settings.gateway_backend_timeout, settings.gateway_websocket_max_connections
        )
        self.analytics: UsageWriter | UsageForwarder | None = usage
        if usage is None and settings.gateway_analytics:
            self.analytics = UsageWriter(self.db, max_queue=settings.gateway_analytics_queue)
        self._prefix = os.urandom(4).hex()
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()  # streamed answers of the fast path
        self.started = False

    async def start(self) -> None:
        if self._own_db:
            await self.db.start(migrate_schema=self._migrate_schema)
        self.upstream.start()
        if self.analytics is not None:
            await self.analytics.open()
        token = self.settings.gateway_token
        name = self.settings.gateway_name
        await self.config.start((name, token.get_secret_value()) if name and token else None)
        await self.quota_flusher.preload()  # before serving: a restart forgets no quota
        self.quota_flusher.start()
        self.started = True

    async def stop(self) -> None:
        await self.config.stop()
        await self.quota_flusher.stop()  # what this process counted since its last flush
        if self.analytics is not None:
            await self.analytics.stop()
        await self.upstream.aclose()
        await self.credentials.aclose()
        if self.log_sink is not None:
            self.log_sink.close()
        if self._own_db:
            await self.db.close()

    def _request_id(self) -> str:
        self._seq += 1
        n = f"{self._seq:024x}"
        return f"{self._prefix}-{n[:4]}-{n[4:8]}-{n[8:12]}-{n[12:]}"

    # --- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if not self.started:
                        await self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _plain(
        self, send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = _json_head(body)
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _begin(self, scope: dict[str, Any], receive: Any) -> Context | tuple[int, bytes]:
        """The request's context, or the answer to a request that goes no further (413, 400, an
        unknown host's 404). Header sizes (431) are bounded by the HTTP server (http1.py)."""
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        host = b""
        declared: bytes | None = None
        for name, value in raw_headers:
            if name == b"host":
                host = value
            elif name == b"content-length":
                declared = value
        if declared is not None:
            limit = self.settings.gateway_max_body_bytes
            try:
                if int(declared) > limit:
                    return 413, error_body(413, f"Request body exceeds the limit of {limit} bytes.")
            except ValueError:
                return 400, error_body(400, "Invalid Content-Length header.")
        host_text = host.decode("latin-1").lower()
        if host_text.startswith("["):
            host_name = host_text.split("]", 1)[0] + "]"
        else:
            host_name = host_text.rsplit(":", 1)[0] if ":" in host_text else host_text
        svc = self.config.lookup_host(host_name)
        if svc is None:
            return 404, NOT_FOUND
        client = scope.get("client")
        scheme = scope.get("scheme", "http")
        server = scope.get("server") or ("", 443 if scheme == "https" else 80)
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").split("?", 1)[0] if raw_path else scope["path"]
        return Context(
            svc,
            scope["method"],
            scheme,
            host_name,
            server[1] or 0,
            path,
            scope.get("query_string", b"").decode("latin-1"),
            raw_headers,
            client[0] if client else "",
            self._request_id(),
            receive,
            self.backend,
            scope.get("client_certificate"),
        )

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The request path through ASGI: any request, any policy (see handle_nowait)."""
        ctx = self._begin(scope, receive)
        if isinstance(ctx, tuple):
            await self._plain(send, *ctx)
            return
        upgrade = websocket.upgrade_of(scope)  # a WebSocket handshake: its backend is the connector
        if upgrade is not None:
            ctx.tunnel, ctx.backend = websocket.Tunnel(), self.connector
        recorded = False
        try:
            try:
                if upgrade is not None:
                    websocket.check_handshake(ctx)
                await self._route_and_run(ctx)
            except (Reject, ExpressionError) as exc:
                pipeline = self._failed(ctx, getattr(exc, "pipeline", None) or _EMPTY, exc)
                if pipeline.on_error:
                    try:
                        await run_list(pipeline.on_error, ctx)
                    except (Reject, ExpressionError) as again:
                        log.info("gateway: on-error section failed: %s", again)
            except _Routed404:
                _not_found(ctx)
            if upgrade is not None and ctx.tunnel is not None and ctx.tunnel.accepted and _switched(ctx):
                self._done(ctx)  # the handshake is the request; the relay runs after its record
                recorded = True
                s = self.settings
                await websocket.relay(
                    ctx, upgrade, s.gateway_websocket_max_message_bytes, s.gateway_websocket_idle_seconds
                )
            else:
                await send_response(ctx, send)
        except ClientGone:
            if ctx.response is not None:
                ctx.response.drop_upstream()
            ctx.response = Response(499)  # nginx's "client closed request", for the usage record
        except Exception:
            log.exception("gateway: unexpected error on %s %s", ctx.method, ctx.path[:200])
            if ctx.response is not None:
                ctx.response.drop_upstream()
            ctx.response = Response(500)
            try:
                await self._plain(send, 500, error_body(500, "Internal server error"))
            except Exception:  # the head may be gone already
                pass
        finally:
            if ctx.tunnel is not None:
                ctx.tunnel.close()
            if not recorded:
                self._done(ctx)

    def _route(self, ctx: Context) -> tuple[Pipeline, bool]:
        """API, operation and key check: the pipeline to run, and whether the request is a CORS
        preflight (run only the pipeline's cors policies). Raises _Routed404 or Reject."""
        svc = ctx.service
        hit = svc.router.resolve(ctx.path, ctx.query_text, ctx.raw_headers)
        if hit is None:
            raise _Routed404()
        api, rest = hit
        if websocket.scheme_of(ctx) not in api.protocols:
            raise _Routed404()
        ctx.api = api
        if svc.diagnostics:
            # a revision (`id;rev=n`) has its API's diagnostics
            applied = svc.diagnostics.get(api.base_id, svc.diagnostics[""])
            if applied:
                ctx.diag = Capture(applied, ctx.raw_headers)
        found = api.find_operation(ctx.method, rest, ctx.query_text)
        if found is None and svc.graphql:
            endpoint = svc.graphql.get(fold_name(api.name))
            if endpoint is not None and rest in ("", "/"):
                return self._route_whole_api(ctx, endpoint)
        if found is None and api.data.get("type") == "odata":
            # An OData API has no operations: every path under it (entity sets, keys, `$metadata`,
            # `$batch`) goes to its service with the API's policies, as a GraphQL endpoint does.
            ctx.backend_suffix = rest
            return self._route_whole_api(ctx, None)
        preflight = False
        if found is None and ctx.method == "OPTIONS":
            wanted = ctx.headers.get("access-control-request-method")
            if wanted and ctx.headers.get("origin"):
                found = api.find_operation(wanted.strip().upper(), rest, ctx.query_text)
                preflight = found is not None
        if found is None:
            raise _Routed404()
        op, params = found
        ctx.operation = op
        ctx.params = params
        ctx.backend_base = api.service_url or ""
        ctx.backend_suffix = rest
        if preflight:
            return svc.pipeline(None, api, op.name), True
        authenticate(ctx, svc, api)
        pipeline = svc.pipeline(ctx.product, api, op.name)
        if ctx.tunnel is not None:
            pipeline = websocket.handshake_pipeline(pipeline)
        if pipeline.error is not None:
            raise Reject(
                500, "Internal server error", source="configuration", reason="PolicyConfigurationError"
            )
        return pipeline, False

    def _route_whole_api(self, ctx: Context, endpoint: GraphqlEndpoint | None) -> tuple[Pipeline, bool]:
        """A GraphQL API's endpoint (its path itself): the API's policies around the GraphQL
        backend (executed here when synthetic, else the serviceUrl, as any backend). Without an
        endpoint: an API routed as a whole (OData) to its serviceUrl."""
        svc, api = ctx.service, ctx.api
        assert api is not None
        ctx.backend_base = api.service_url or ""
        if ctx.method == "OPTIONS" and ctx.headers.get("access-control-request-method"):
            if ctx.headers.get("origin"):
                return svc.pipeline(None, api, None), True
        authenticate(ctx, svc, api)
        if endpoint is not None and endpoint.synthetic:
            if ctx.tunnel is not None:  # pass-through APIs relay subscriptions to their serviceUrl
                raise Reject(400, websocket.SYNTHETIC_REFUSED, source="graphql", reason="Unsupported")
            ctx.backend = endpoint.backend(ctx.backend)
        pipeline = svc.pipeline(ctx.product, api, None)
        if ctx.tunnel is not None:
            pipeline = websocket.handshake_pipeline(pipeline)
        if pipeline.error is not None:
            raise Reject(
                500, "Internal server error", source="configuration", reason="PolicyConfigurationError"
            )
        return pipeline, False

    async def _route_and_run(self, ctx: Context) -> None:
        pipeline, preflight = self._route(ctx)
        if preflight:
            cors = pipeline.cors()
            if not cors or await run_list(cors, ctx) is not STOP:
                raise _Routed404()
            return
        try:
            if pipeline.buffers_request:
                await ctx.backend.buffer_body(ctx)
            if await run_list(pipeline.inbound, ctx) is STOP:
                if ctx.cache is not None and ctx.cache.hit:  # answered from the cache
                    await run_list(pipeline.after_cache_store, ctx)
            elif await run_list(pipeline.backend, ctx) is not STOP:
                await run_list(pipeline.outbound, ctx)
        except (Reject, ExpressionError) as exc:
            exc.pipeline = pipeline  # type: ignore[union-attr]
            raise

    def _failed(self, ctx: Context, pipeline: Pipeline, exc: Reject | ExpressionError) -> Pipeline:
        """The error answer for a refused or failed request; returns the pipeline whose on-error
        section runs next (it may change the answer)."""
        if isinstance(exc, Reject):
            status, message, source, reason, headers, detail = (
                exc.status,
                exc.message,
                exc.source,
                exc.reason,
                exc.headers,
                exc.detail,
            )
        else:
            status, message, source, reason, headers, detail = (
                500,
                "Internal server error",
                "expression",
                "ExpressionValueEvaluationFailure",
                {},
                str(exc),
            )
        if ctx.api is not None and ctx.operation is not None and pipeline is _EMPTY:
            try:
                pipeline = ctx.service.pipeline(ctx.product, ctx.api, ctx.operation.name)
            except Exception:
                pipeline = _EMPTY
        if ctx.response is not None:
            ctx.response.drop_upstream()
        h = HeaderMap()
        h.set("Content-Type", ["application/json; charset=utf-8"])
        for k, v in headers.items():
            h.set(k, [v])
        ctx.response = Response(status, h, error_body(status, message))
        ctx.last_error = {
            "source": source,
            "reason": reason,
            "message": detail or message,
            "section": "",
            "scope": "",
            "path": "",
            "policyid": "",
        }
        if detail and not isinstance(exc, Reject):
            log.info("gateway: %s on %s %s: %s", reason, ctx.method, ctx.path[:200], detail[:300])
        return pipeline

    def _done(self, ctx: Context) -> None:
        """After the answer: deferred policy steps (counters of responses) and the usage record."""
        for fn in ctx.deferred:
            try:
                fn(ctx)
            except Exception:  # deferred counters must never fail a finished request
                log.debug("deferred policy step failed", exc_info=True)
        if ctx.diag is not None and self.log_sink is not None:
            try:
                log_request(ctx, self.log_sink)
            except Exception:  # never the request's problem
                log.exception("gateway: the diagnostic log of %s %s failed", ctx.method, ctx.path[:200])
        if self.analytics is not None and ctx.api is not None:
            try:
                self._record(ctx)
            except Exception:  # never the request's problem (and the fast path runs in callbacks)
                log.exception("gateway: the usage record of %s %s failed", ctx.method, ctx.path[:200])

    # --- the fast path ------------------------------------------------------------------------
    # A whole request (body, if any, read already: http1.py) whose policies are all synchronous
    # is served from callbacks: no task, future or ASGI message per request. Same steps and
    # answers as `handle`, for a fraction of its CPU (docs/benchmarks.md, "Gateway").
    def handle_nowait(self, cycle: Any) -> bool:
        """Serve `cycle` (http1._Cycle, request complete) from callbacks and return True, or return
        False, having changed nothing, for `handle` to serve it (a policy needs to await)."""
        ctx = self._begin(cycle.scope, cycle.receive)
        if isinstance(ctx, tuple):
            status, body = ctx
            cycle.respond(status, _json_head(body), body)
            cycle.finish()
            return True
        if cycle.body:
            ctx.request_body = b"".join(cycle.body)
            ctx.bytes_in = len(ctx.request_body)
        try:
            pipeline, preflight = self._route(ctx)
        except _Routed404:
            _not_found(ctx)
            self._answer_nowait(ctx, cycle)
            return True
        except Reject as rej:
            on_error = self._error_pipeline(ctx)
            if not on_error.fast:
                return False
            self._fail_nowait(ctx, on_error, rej, cycle)
            return True
        if not pipeline.fast:
            return False
        if preflight:
            cors = pipeline.cors()
            try:
                if not cors or run_now(cors, ctx) is not STOP:
                    _not_found(ctx)
            except (Reject, ExpressionError) as exc:
                self._fail_nowait(ctx, pipeline, exc, cycle)
                return True
            self._answer_nowait(ctx, cycle)
            return True
        self._run_nowait(ctx, pipeline, cycle)
        return True

    def _error_pipeline(self, ctx: Context) -> Pipeline:
        if ctx.api is None or ctx.operation is None:
            return _EMPTY
        try:
            return ctx.service.pipeline(ctx.product, ctx.api, ctx.operation.name)
        except Exception:
            return _EMPTY

    def _run_nowait(self, ctx: Context, pipeline: Pipeline, cycle: Any) -> None:
        outbound = pipeline.outbound
        try:
            if run_now(pipeline.inbound, ctx) is STOP:
                if ctx.cache is None or not ctx.cache.hit:
                    self._answer_nowait(ctx, cycle)
                    return
                outbound = pipeline.after_cache_store  # answered from the cache
            else:
                for p in pipeline.backend:
                    if p.forwards:  # the last one (Pipeline.fast): the rest runs when the backend answered
                        ctx.backend.forward_nowait(
                            ctx, p.timeout, partial(self._outbound_nowait, ctx, pipeline, cycle, p)
                        )
                        return
                    if p.run(ctx) is STOP:
                        self._answer_nowait(ctx, cycle)
                        return
        except (Reject, ExpressionError) as exc:
            self._fail_nowait(ctx, pipeline, exc, cycle)
            return
        except Exception:
            self._crash_nowait(ctx, cycle)
            return
        self._outbound_nowait(ctx, pipeline, cycle, None, None, outbound)

    def _outbound_nowait(
        self,
        ctx: Context,
        pipeline: Pipeline,
        cycle: Any,
        forwarded: Any,
        rej: Reject | None,
        outbound: list[Any] | None = None,
    ) -> None:
        try:
            if rej is not None:
                raise rej
            if forwarded is not None:
                forwarded.check(ctx)
            run_now(pipeline.outbound if outbound is None else outbound, ctx)
        except (Reject, ExpressionError) as exc:
            self._fail_nowait(ctx, pipeline, exc, cycle)
            return
        except Exception:
            self._crash_nowait(ctx, cycle)
            return
        self._answer_nowait(ctx, cycle)

    def _fail_nowait(
        self, ctx: Context, pipeline: Pipeline, exc: Reject | ExpressionError, cycle: Any
    ) -> None:
        try:
            on_error = self._failed(ctx, pipeline, exc).on_error
            if on_error:
                try:
                    run_now(on_error, ctx)
                except (Reject, ExpressionError) as again:
                    log.info("gateway: on-error section failed: %s", again)
        except Exception:
            self._crash_nowait(ctx, cycle)
            return
        self._answer_nowait(ctx, cycle)

    def _answer_nowait(self, ctx: Context, cycle: Any) -> None:
        try:
            status, headers, body, checked = response_parts(ctx)
            if body is None:  # the backend's body is still arriving: stream it from a task
                task = asyncio.get_running_loop().create_task(self._stream(ctx, cycle, status, headers))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            cycle.respond(status, headers, body, checked)
            ctx.bytes_out += len(body)
        except Exception:
            self._crash_nowait(ctx, cycle)
            return
        self._done(ctx)
        cycle.finish()

    async def _stream(
        self, ctx: Context, cycle: Any, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            await stream_response(ctx, cycle.send, status, headers)
        except ClientGone:
            ctx.response = Response(499)
        except Exception:
            log.exception("gateway: unexpected error on %s %s", ctx.method, ctx.path[:200])
            ctx.response = Response(500)
        finally:
            self._done(ctx)
            cycle.finish()

    def _crash_nowait(self, ctx: Context, cycle: Any) -> None:
        log.exception("gateway: unexpected error on %s %s", ctx.method, ctx.path[:200])
        if ctx.response is not None:
            ctx.response.drop_upstream()
        ctx.response = Response(500)
        if not cycle.started:
            body = error_body(500, "Internal server error")
            cycle.respond(500, _json_head(body), body)
        self._done(ctx)
        cycle.finish()

    def _record(self, ctx: Context) -> None:
        assert self.analytics is not None
        r = ctx.response
        api = ctx.api
        assert api is not None
        sub = ctx.subscription
        q = ctx.query_text
        if q and api.key_query in q:
            q = ctx.query_map().encode()
        url = f"{ctx.scheme}://{ctx.host}{ctx.path}{'?' + q if q else ''}"[:2048]
        self.analytics.record(
            (
                ctx.service.id,
                ctx.timestamp,
                api.name,
                ctx.operation.name if ctx.operation is not None else None,
                ctx.product.name if ctx.product is not None else None,
                sub.name if sub is not None else None,
                sub.owner if sub is not None else None,
                ctx.method,
                r.status if r is not None else 0,
                ctx.backend_ms,
                (time.perf_counter() - ctx.started) * 1000.0,
                ctx.bytes_in,
                ctx.bytes_out,
                ctx.client_ip[:64] or None,
                ctx.request_id,
                url,
                ctx.backend_status,
            )
        )


class _Routed404(Exception):
    pass


def _switched(ctx: Context) -> bool:
    return ctx.response is not None and ctx.response.status == 101


def _not_found(ctx: Context) -> None:
    h = HeaderMap()
    h.set("Content-Type", ["application/json; charset=utf-8"])
    ctx.response = Response(404, h, NOT_FOUND)


_EMPTY = Pipeline([], [], [], [])
