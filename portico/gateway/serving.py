"""Serving the gateway's listeners: the event loop (uvloop), the listening sockets
and HTTP/HTTPS servers (portico/gateway/http1.py), running several servers under one signal
handler, and the body of one gateway worker process (portico/gateway/workers.py starts them)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

import uvloop

from portico.gateway.analytics import UsageForwarder
from portico.gateway.app import Gateway
from portico.gateway.http1 import HttpServer
from portico.gateway.tls import HostCertificates
from portico.server.tls import ensure_gateway_tls
from portico.settings import Settings

log = logging.getLogger("portico.gateway")

EXIT_NO_LISTENER = 3  # a worker that could open no port: restarting it would not help


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    return uvloop.new_event_loop


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket | None:
    """Bind a listening socket ourselves, so a taken port is a logged error, not an exit.
    `reuse_port`: the gateway's worker processes each bind the same port; the kernel spreads
    incoming connections over them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error(
            "gateway: cannot listen on %s:%s (%s); this listener is off", host, port, exc.strerror or exc
        )
        return None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def tls_files(settings: Settings) -> tuple[Path, Path]:
    if settings.tls_cert and settings.tls_key:
        return settings.tls_cert, settings.tls_key
    # the gateway's own certificate: it covers every {service}.{gateway domain} (gatewayUrl)
    _ca, cert, key = ensure_gateway_tls(
        settings.data_dir, settings.gateway_domain, [settings.host, socket.gethostname()]
    )
    return cert, key


def gateway_servers(
    settings: Settings, app: Any, reuse_port: bool = False
) -> list[tuple[HttpServer, list[socket.socket]]]:
    host = settings.gateway_host or settings.host
    common: dict[str, Any] = {
        "max_header_bytes": settings.gateway_max_header_bytes,
        "keep_alive": 30.0,
        "fast": getattr(app, "handle_nowait", None) if settings.gateway_fast_path else None,
    }
    out: list[tuple[HttpServer, list[socket.socket]]] = []
    if settings.gateway_port:
        sock = bind(host, settings.gateway_port, reuse_port)
        if sock is not None:
            out.append((HttpServer(app, **common), [sock]))
    if settings.gateway_https_port:
        sock = bind(host, settings.gateway_https_port, reuse_port)
        if sock is not None:
            cert, key = tls_files(settings)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert), str(key))
            config = getattr(app, "config", None)
            if config is not None:  # custom Proxy hostnames present their own certificates
                HostCertificates(config).install(context)
            out.append((HttpServer(app, ssl_context=context, **common), [sock]))
    return out


class Serving(Protocol):
    should_exit: bool
    force_exit: bool

    async def serve(self, sockets: list[socket.socket] | None = None) -> None: ...


async def run_servers(
    servers: Sequence[tuple[Serving, list[socket.socket] | None]],
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> None:
    loop = asyncio.get_running_loop()

    signals = 0

    def stop() -> None:
        for s, _socks in servers:
            s.should_exit = True

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop()
        if signals > 1:  # a second Ctrl+C: do not wait for open connections
            for s, _socks in servers:
                s.force_exit = True

    for sig in stop_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    if before is not None:
        await before()
    # Everything loaded so far (modules, configuration) lives as long as the process: keep the
    # cyclic garbage collector from rescanning it on every collection (measured: a large share of
    # the gateway's per-request CPU time), and collect young objects less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        tasks = [loop.create_task(s.serve(sockets=socks)) for s, socks in servers]
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()  # one server ended (startup failure or shutdown): stop the others too
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
    finally:
        if after is not None:
            await after()


async def serve_gateway_worker(
    settings: Settings, index: int, counters: Any, usage: Any, ready: Callable[[], None]
) -> None:
    """One gateway worker process (portico/gateway/workers.py): its listeners, its configuration."""
    gateway = Gateway(
        settings,
        counters=counters,
        usage=UsageForwarder(usage) if usage is not None else None,
        migrate_schema=False,  # the parent did, before starting its workers
    )
    listeners = gateway_servers(settings, gateway, reuse_port=True)
    if not listeners:
        raise SystemExit(EXIT_NO_LISTENER)

    async def start() -> None:
        await gateway.start()
        ready()

    # Ctrl+C reaches the whole process group: the node's process decides when workers stop (SIGTERM)
    await run_servers(listeners, before=start, after=gateway.stop, stop_signals=(signal.SIGTERM,))


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main` on uvloop when it is installed (the gateway's throughput depends on it)."""
    factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
