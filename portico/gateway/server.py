"""`portico serve` and `portico gateway`: the management API (uvicorn) and the gateway, either in
worker processes of their own (portico/gateway/workers.py) or in this process's event loop
(portico/gateway/serving.py), stopped together by one signal handler."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from portico.gateway.app import Gateway
from portico.gateway.serving import Serving, gateway_servers, run, run_servers
from portico.gateway.workers import WorkerPool, worker_count
from portico.settings import Settings


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `run_servers` (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _stop_event() -> asyncio.Event:
    """An event SIGINT/SIGTERM set (installed before any slow start-up, so a signal is never lost)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopped.set)
    return stopped


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.get_running_loop().create_task(e.wait()) for e in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for t in waits:
        t.cancel()


def serve_with_gateway(settings: Settings, management: uvicorn.Config | None, console: Any = None) -> None:
    """`portico serve` (management + gateway) and `portico gateway` (management=None)."""
    workers = worker_count(settings)
    host = settings.gateway_host or settings.host

    def announce() -> None:
        if console is None:
            return
        for scheme, port in (("http", settings.gateway_port), ("https", settings.gateway_https_port)):
            if port:
                console.print(
                    f"[bold]Gateway[/] on {scheme}://{host}:{port}, {workers} worker process"
                    f"{'es' if workers != 1 else ''} (services answer as {{service}}.{settings.gateway_domain}"
                    " or their Proxy hostnames)"
                )

    async def main_workers() -> None:
        pool = WorkerPool(settings, workers)
        announce()
        if management is None:
            stopped = _stop_event()
            try:
                await pool.start()
                await _first(stopped, pool.failed)
            finally:
                await pool.stop()
            if pool.failed.is_set():
                raise SystemExit("gateway: no worker could open a port (see the errors above)")
            return
        await run_servers([(_Server(management), None)], before=pool.start, after=pool.stop)

    if workers > 0:
        run(main_workers)
        return

    async def main() -> None:
        gateway = Gateway(settings)
        listeners = gateway_servers(settings, gateway)
        servers: list[tuple[Serving, list[socket.socket] | None]] = [(s, socks) for s, socks in listeners]
        if management is not None:
            servers.insert(0, (_Server(management), None))
        if not listeners and management is None:
            raise SystemExit("gateway: no listener could be opened (see the errors above)")
        if console is not None:
            host = settings.gateway_host or settings.host
            for s, _socks in listeners:
                scheme = s.scheme
                port = settings.gateway_https_port if scheme == "https" else settings.gateway_port
                console.print(
                    f"[bold]Gateway[/] on {scheme}://{host}:{port} (services answer as {{service}}.{settings.gateway_domain} or their Proxy hostnames)"
                )
        await run_servers(servers, before=gateway.start, after=gateway.stop)

    run(main)
