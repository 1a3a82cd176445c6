"""The gateway ASGI application: host → service, path → API → operation, key check, policies,
backend, analytics. A plain ASGI callable (no framework): this is the hot path."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from portico.gateway.analytics import UsageForwarder, UsageWriter
from portico.gateway.config import ConfigStore
from portico.gateway.context import Context, HeaderMap, Response
from portico.gateway.expressions import ExpressionError
from portico.gateway.jwks import JwksCache
from portico.gateway.keys import authenticate
from portico.gateway.policies.base import STOP, Reject
from portico.gateway.policies.limits import Counters, CounterStore
from portico.gateway.policies.pipeline import Pipeline, run_list
from portico.gateway.proxy import ClientGone, error_body, send_response
from portico.gateway.upstream import Upstream
from portico.settings import Settings
from portico.store.db import Database

log = logging.getLogger("portico.gateway")

NOT_FOUND = error_body(404, "Resource not found")
_JSON = [(b"content-type", b"application/json; charset=utf-8")]


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
        self.db = db or Database(settings.resolved_database_url)
        self._own_db = db is None
        self._migrate_schema = migrate_schema
        self.counters: CounterStore = counters if counters is not None else Counters()
        self.jwks = JwksCache()
        self.config = ConfigStore(
            self.db, settings.gateway_domain, settings.gateway_config_poll_seconds, self.counters, self.jwks
        )
        self.config.gateway = self  # type: ignore[attr-defined]
        self.upstream = Upstream(connect_timeout=settings.gateway_connect_timeout)
        self.analytics: UsageWriter | UsageForwarder | None = usage
        if usage is None and settings.gateway_analytics:
            self.analytics = UsageWriter(self.db, max_queue=settings.gateway_analytics_queue)
        self._prefix = os.urandom(4).hex()
        self._seq = 0
        self.started = False

    async def start(self) -> None:
        if self._own_db:
            await self.db.start(migrate_schema=self._migrate_schema)
        self.upstream.start()
        if self.analytics is not None:
            await self.analytics.open()
        await self.config.start()
        self.started = True

    async def stop(self) -> None:
        await self.config.stop()
        if self.analytics is not None:
            await self.analytics.stop()
        await self.upstream.aclose()
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
        headers = [*_JSON, (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        settings = self.settings
        host = b""
        declared: bytes | None = None
        # Header size (431) is bounded by the HTTP server while the head arrives (http1.py).
        for name, value in raw_headers:
            if name == b"host":
                host = value
            elif name == b"content-length":
                declared = value
        if declared is not None:
            try:
                if int(declared) > settings.gateway_max_body_bytes:
                    await self._plain(
                        send,
                        413,
                        error_body(
                            413, f"Request body exceeds the limit of {settings.gateway_max_body_bytes} bytes."
                        ),
                    )
                    return
            except ValueError:
                await self._plain(send, 400, error_body(400, "Invalid Content-Length header."))
                return
        host_text = host.decode("latin-1").lower()
        if host_text.startswith("["):
            host_name = host_text.split("]", 1)[0] + "]"
        else:
            host_name = host_text.rsplit(":", 1)[0] if ":" in host_text else host_text
        svc = self.config.lookup_host(host_name)
        if svc is None:
            await self._plain(send, 404, NOT_FOUND)
            return
        client = scope.get("client")
        scheme = scope.get("scheme", "http")
        server = scope.get("server") or ("", 443 if scheme == "https" else 80)
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").split("?", 1)[0] if raw_path else scope["path"]
        ctx = Context(
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
        )
        try:
            try:
                await self._route_and_run(ctx, svc)
            except Reject as rej:
                await self._on_error(
                    ctx,
                    getattr(rej, "pipeline", None) or _EMPTY,
                    rej.status,
                    rej.message,
                    rej.source,
                    rej.reason,
                    rej.headers,
                )
            except ExpressionError as exc:
                await self._on_error(
                    ctx,
                    getattr(exc, "pipeline", None) or _EMPTY,
                    500,
                    "Internal server error",
                    "expression",
                    "ExpressionValueEvaluationFailure",
                    {},
                    detail=str(exc),
                )
            except _Routed404:
                h = HeaderMap()
                h.set("Content-Type", ["application/json; charset=utf-8"])
                ctx.response = Response(404, h, NOT_FOUND)
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
            for fn in ctx.deferred:
                try:
                    fn(ctx)
                except Exception:  # deferred counters must never fail a finished request
                    log.debug("deferred policy step failed", exc_info=True)
            if self.analytics is not None and ctx.api is not None:
                self._record(ctx)

    async def _route_and_run(self, ctx: Context, svc: Any) -> Pipeline:
        hit = svc.router.resolve(ctx.path, ctx.query_text, ctx.raw_headers)
        if hit is None:
            raise _Routed404()
        api, rest = hit
        if ctx.scheme not in api.protocols:
            raise _Routed404()
        ctx.api = api
        found = api.find_operation(ctx.method, rest, ctx.query_text)
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
            pipeline = svc.pipeline(None, api, op.name)
            cors = pipeline.cors()
            if not cors or await run_list(cors, ctx) is not STOP:
                raise _Routed404()
            return pipeline
        authenticate(ctx, svc, api)
        pipeline = svc.pipeline(ctx.product, api, op.name)
        if pipeline.error is not None:
            raise Reject(
                500, "Internal server error", source="configuration", reason="PolicyConfigurationError"
            )
        try:
            if (
                await run_list(pipeline.inbound, ctx) is not STOP
                and await run_list(pipeline.backend, ctx) is not STOP
            ):
                await run_list(pipeline.outbound, ctx)
        except (Reject, ExpressionError) as exc:
            exc.pipeline = pipeline  # type: ignore[union-attr]
            raise
        return pipeline

    async def _on_error(
        self,
        ctx: Context,
        pipeline: Pipeline,
        status: int,
        message: str,
        source: str,
        reason: str,
        headers: dict[str, str],
        detail: str = "",
    ) -> None:
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
        if detail:
            log.info("gateway: %s on %s %s: %s", reason, ctx.method, ctx.path[:200], detail[:300])
        if pipeline.on_error:
            try:
                await run_list(pipeline.on_error, ctx)
            except (Reject, ExpressionError) as exc:
                log.info("gateway: on-error section failed: %s", exc)

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


_EMPTY = Pipeline([], [], [], [])
