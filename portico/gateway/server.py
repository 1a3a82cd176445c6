"""Run uvicorn servers (the management API and/or the gateway's HTTP and HTTPS listeners) in one
process under one event loop, with one signal handler that stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from portico.settings import Settings

log = logging.getLogger("portico.gateway")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `run_servers` (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def bind(host: str, port: int) -> socket.socket | None:
    """Bind a listening socket ourselves, so a taken port is a logged error, not an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    from portico.server.tls import ensure_tls

    _ca, cert, key = ensure_tls(settings.data_dir, [settings.host, socket.gethostname()])
    return cert, key


def gateway_servers(settings: Settings, app: Any) -> list[tuple[uvicorn.Server, list[socket.socket]]]:
    host = settings.gateway_host or settings.host
    common: dict[str, Any] = {
        "lifespan": "off",
        "http": _http_impl(),
        "access_log": False,
        "server_header": False,
        "date_header": False,
        "log_level": settings.log_level.lower(),
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": 2,
        "h11_max_incomplete_event_size": settings.gateway_max_header_bytes,
        "backlog": 2048,
        "proxy_headers": False,  # the client IP is the socket peer (ip-filter, X-Forwarded-For, analytics)
    }
    out: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    if settings.gateway_port:
        sock = bind(host, settings.gateway_port)
        if sock is not None:
            out.append((_Server(uvicorn.Config(app, **common)), [sock]))
    if settings.gateway_https_port:
        sock = bind(host, settings.gateway_https_port)
        if sock is not None:
            cert, key = tls_files(settings)
            cfg = uvicorn.Config(app, ssl_certfile=str(cert), ssl_keyfile=str(key), **common)
            out.append((_Server(cfg), [sock]))
    return out


async def run_servers(
    servers: list[tuple[uvicorn.Server, list[socket.socket] | None]],
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
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

    for sig in (signal.SIGINT, signal.SIGTERM):
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


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main` on uvloop when it is installed (the gateway's throughput depends on it)."""
    factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def serve_with_gateway(settings: Settings, management: uvicorn.Config | None, console: Any = None) -> None:
    """`portico serve` (management + gateway) and `portico gateway` (management=None)."""
    from portico.gateway.app import Gateway

    async def main() -> None:
        gateway = Gateway(settings)
        listeners = gateway_servers(settings, gateway)
        servers: list[tuple[uvicorn.Server, list[socket.socket] | None]] = [
            (s, socks) for s, socks in listeners
        ]
        if management is not None:
            servers.insert(0, (_Server(management), None))
        if not listeners and management is None:
            raise SystemExit("gateway: no listener could be opened (see the errors above)")
        if console is not None:
            host = settings.gateway_host or settings.host
            for s, _socks in listeners:
                scheme = "https" if s.config.ssl_certfile else "http"
                port = settings.gateway_https_port if scheme == "https" else settings.gateway_port
                console.print(
                    f"[bold]Gateway[/] on {scheme}://{host}:{port} (services answer as {{service}}.{settings.gateway_domain} or their Proxy hostnames)"
                )
        await run_servers(servers, before=gateway.start, after=gateway.stop)

    run(main)
