"""The floor for a reverse proxy written in Python on this machine: the least a proxy can do.

    python bench/floor_proxy.py LISTEN_PORT BACKEND_PORT [--workers N]

Used by bench/gateway.py to measure, in the same run as nginx and Portico, how fast *any* Python
proxy on the gateway's stack (uvloop + httptools, SO_REUSEPORT worker processes) can be. It does
only what every HTTP/1.1 reverse proxy must: parse the request head, write a rebuilt head to a
keep-alive backend connection, parse the response head and body, write them back. No routing,
keys, policies, analytics, timeouts, streaming or error handling; callbacks only (no task or
future per request); one backend connection per client connection. Not part of Portico.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import httptools
import uvloop


class _Backend(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.backend_ready(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers = []
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"connection", b"keep-alive", b"transfer-encoding", b"content-length"):
            self.headers.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n%bcontent-length: %d\r\n\r\n" % (status, b"".join(self.headers), len(body))
        self.client.respond(head + body)


class _Client(asyncio.Protocol):
    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.backend: _Backend | None = None
        self.pending: list[bytes] = []
        self.url = b""
        self.headers: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(
            loop.create_connection(lambda: _Backend(self), "127.0.0.1", self.backend_port)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.close()

    def backend_ready(self, backend: _Backend) -> None:
        self.backend = backend
        for request in self.pending:
            assert backend.transport is not None
            backend.transport.write(request)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"connection", b"keep-alive", b"host"):
            self.headers.append(name + b": " + value + b"\r\n")

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        request = b"%b %b HTTP/1.1\r\nhost: backend\r\n%b\r\n" % (method, self.url, b"".join(self.headers))
        if self.backend is None or self.backend.transport is None:
            self.pending.append(request)
        else:
            self.backend.transport.write(request)

    def respond(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def serve(listen_port: int, protocol: Callable[[], asyncio.Protocol]) -> None:
    """A worker: accept on the shared port (SO_REUSEPORT) with uvloop until terminated."""

    async def main() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", listen_port))
        sock.listen(2048)
        server = await asyncio.get_running_loop().create_server(protocol, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


def run_workers(target: Callable[..., None], args: tuple[Any, ...], workers: int) -> None:
    """Start `workers` spawned processes running `target(*args)`; stop them on SIGTERM/SIGINT."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for _ in range(workers)]
    for p in procs:
        p.start()

    def stop(signum: int, frame: object) -> None:
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.join()


def _worker(listen_port: int, backend_port: int) -> None:
    serve(listen_port, lambda: _Client(backend_port))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen_port", type=int)
    ap.add_argument("backend_port", type=int)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    run_workers(_worker, (args.listen_port, args.backend_port), args.workers)


if __name__ == "__main__":
    main()
