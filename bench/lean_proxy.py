"""The floor proxy plus the work Portico's gateway cannot skip on the benchmark's request.

    python bench/lean_proxy.py LISTEN_PORT BACKEND_PORT --key KEY [--workers N]

Used by bench/gateway.py beside the floor (bench/floor_proxy.py): how fast a Python gateway could
be that does, per request, what Portico must do for bench/gateway.py's traffic and nothing more:
- Host → service and first path segment → API (dict lookups), the operation's URL template
  matched by a compiled regular expression;
- the subscription key taken from its header, looked up, its state and scope checked, and the
  header not forwarded; hop-by-hop headers dropped, `X-Forwarded-For` added;
- the rate-limit policy's counter, counted in Portico's own cross-worker `SharedCounters`;
- a request id, and a usage record with the 17 fields Portico records, batched per 1,000 and
  encoded with orjson as a worker's `UsageForwarder` does (the frames are dropped: the node's
  ingest of them is measured on Portico itself).
What it leaves out: a policy interpreter, other routes and keys, error answers, streaming, timeouts.
Its CPU per request against the floor's is the cost of the gateway's essential work in Python;
against Portico's, the cost of Portico's generality. Not part of Portico.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.floor_proxy import _Backend, _Client, run_workers, serve
from portico.gateway.shared_counters import SharedCounters

KEY_HEADER = b"ocp-apim-subscription-key"
HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade")
)
SERVICE_HOST = b"bench.gateway.localhost"


class _World:
    """What a worker knows: bench/gateway.py's service, as Portico's compiled tables hold it."""

    def __init__(self, counters: SharedCounters, key: str) -> None:
        self.counters = counters
        self.services: dict[bytes, dict[str, Any]] = {
            SERVICE_HOST: {
                "id": 1,
                "apis": {
                    b"bench": {"name": "bench", "ops": [(b"GET", re.compile(rb"/(?P<rest>.*)"), "get")]}
                },
                "keys": {key: {"name": "bench", "state": "active", "scope": "/apis", "owner": "1"}},
            }
        }
        self.prefix = os.urandom(4).hex()
        self.seq = 0
        self.rows: list[tuple[Any, ...]] = []
        self.frames = 0

    def request_id(self) -> str:
        self.seq += 1
        n = f"{self.seq:024x}"
        return f"{self.prefix}-{n[:4]}-{n[4:8]}-{n[8:12]}-{n[12:]}"

    def record(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= 1000:
            orjson.dumps(self.rows)  # what a worker sends to its node; dropped here
            self.rows = []
            self.frames += 1


WORLD: _World | None = None


class _LeanBackend(_Backend):
    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        head = b"HTTP/1.1 %d OK\r\n%bcontent-length: %d\r\n\r\n" % (status, b"".join(self.headers), len(body))
        self.client.respond_recorded(head + body, status, len(body))  # type: ignore[attr-defined]


class _LeanClient(_Client):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.host = b""
        self.key = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"host":
            self.host = value
        elif low == KEY_HEADER:
            self.key = value
        elif low not in HOP:
            self.headers.append(name + b": " + value + b"\r\n")

    def on_message_complete(self) -> None:
        world = WORLD
        assert world is not None and self.transport is not None
        self.started = time.perf_counter()
        method = self.parser.get_method()
        svc = world.services[self.host.partition(b":")[0].lower()]
        path = self.url.partition(b"?")[0]
        segment, _, rest = path[1:].partition(b"/")
        api = svc["apis"][segment.lower()]
        op = next(name for m, rx, name in api["ops"] if m == method and rx.match(b"/" + rest))
        sub = svc["keys"][self.key.decode("latin-1")]
        if sub["state"] != "active" or sub["scope"] not in ("/apis", f"/apis/{api['name']}"):
            raise SystemExit("the benchmark's key must be valid")
        taken, _count, _renew = world.counters.take(
            (svc["id"], "api:bench/rate-limit#1", sub["name"], 60.0), 60.0, time.monotonic(), 1e8
        )
        if not taken:
            raise SystemExit("the benchmark's rate limit must never refuse")
        self.pending_record = (svc, api, op, sub, method.decode(), world.request_id())
        client_ip = self.transport.get_extra_info("peername")[0]
        request = b"%b %b HTTP/1.1\r\nhost: 127.0.0.1\r\nx-forwarded-for: %b\r\n%b\r\n" % (
            method,
            self.url,
            client_ip.encode(),
            b"".join(self.headers),
        )
        if self.backend is None or self.backend.transport is None:
            self.pending.append(request)
        else:
            self.backend.transport.write(request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(
            loop.create_connection(lambda: _LeanBackend(self), "127.0.0.1", self.backend_port)
        )

    def respond_recorded(self, data: bytes, status: int, size: int) -> None:
        self.respond(data)
        assert WORLD is not None
        svc, api, op, sub, method, request_id = self.pending_record
        ms = (time.perf_counter() - self.started) * 1000.0
        url = f"http://{self.host.decode('latin-1')}{self.url.decode('latin-1')}"[:2048]
        when = time.time()
        ip = "127.0.0.1"
        WORLD.record(  # the 17 fields of Portico's usage record
            (
                svc["id"],
                when,
                api["name"],
                op,
                None,
                sub["name"],
                sub["owner"],
                method,
                status,
                ms,
                ms,
                0,
                size,
                ip,
                request_id,
                url,
                status,
            )
        )


def _worker(listen_port: int, backend_port: int, counters: SharedCounters, key: str) -> None:
    global WORLD
    WORLD = _World(counters, key)
    serve(listen_port, lambda: _LeanClient(backend_port))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen_port", type=int)
    ap.add_argument("backend_port", type=int)
    ap.add_argument("--key", required=True, help="the subscription key the load sends")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    counters = SharedCounters.create()
    try:
        run_workers(_worker, (args.listen_port, args.backend_port, counters, args.key), args.workers)
    finally:
        counters.unlink()


if __name__ == "__main__":
    main()
