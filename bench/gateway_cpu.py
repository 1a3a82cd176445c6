"""The gateway's request path in instructions per request: a measure that does not move with the
machine's load (bench/gateway.py's throughput does, by 2x within an hour on a shared machine).

    python bench/gateway_cpu.py [--requests 1000] [--opcodes] [--baseline REV]

What runs: `portico serve` once, to configure the same service as bench/gateway.py (an API, a
subscription key, a rate-limit policy); then, in this process's child, the real request path -
`HttpProtocol` (http1.py) → `Gateway` (fast path or ASGI, whichever the request takes) →
`Upstream` - over in-memory transports: a canned backend answer, no sockets, so the kernel's share
(the same for every version of the code) is left out. Analytics on: records are batched and
encoded as in a worker, every 1,000 records rather than every 50 ms, and the frames dropped instead
of sent to the node's process; configuration polls and connection sweeps do not run (under
valgrind, timers and a reader thread would make the count depend on speed).

The count is `valgrind --tool=callgrind`'s total for 300 + N requests minus its total for 300,
divided by N: start-up and configuration loading cancel out. `--baseline REV` measures a git
revision of the code the same way, side by side, and prints the ratio. `--opcodes` instead counts
Python opcodes per request by function (sys.settrace: slow, but shows where the Python work goes).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
if os.environ.get("PORTICO_CODE"):  # the code measured (a --baseline checkout), bench/ from here
    sys.path.insert(0, os.environ["PORTICO_CODE"])

BACKEND_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 08:44:26 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n"
    b'{"ok":true}'
)
WARM = 300


def configure(root: Path, code: Path = REPO) -> tuple[str, int]:
    """A data directory holding bench/gateway.py's service, made by the `portico` of `code`;
    (subscription key, backend port)."""
    import bench.gateway
    from bench.gateway import Portico, free_port

    bench.gateway.REPO = code  # where `python -m portico.cli serve` runs
    backend_port = free_port()
    portico = Portico(root, backend_port, 1)
    try:
        portico.start()
        key = portico.configure()
    finally:
        portico.stop()
    return key, backend_port


def inner(data_dir: str, key: str, backend_port: int, requests: int, opcodes: bool) -> None:
    """Serve `requests` requests through the gateway's request path, in memory."""
    import uvloop

    from bench.gateway import DOMAIN, SERVICE

    os.environ["PORTICO_DATA_DIR"] = data_dir
    from portico.gateway import upstream
    from portico.gateway.analytics import UsageForwarder
    from portico.gateway.app import Gateway
    from portico.gateway.http1 import HttpProtocol, HttpServer
    from portico.gateway.shared_counters import SharedCounters
    from portico.settings import Settings

    request = (
        f"GET /bench/item HTTP/1.1\r\nHost: {SERVICE}.{DOMAIN}:8080\r\n"
        f"Ocp-Apim-Subscription-Key: {key}\r\n\r\n"
    ).encode()

    class Backend:
        def __init__(self, conn: Any, loop: asyncio.AbstractEventLoop) -> None:
            self.conn, self.loop = conn, loop

        def write(self, data: bytes) -> None:
            self.loop.call_soon(self.conn.data_received, BACKEND_ANSWER)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...

    class Client:
        def __init__(self, proto: Any, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
            self.proto, self.loop, self.done, self.answered = proto, loop, done, 0

        def write(self, data: bytes) -> None:
            assert data.startswith(b"HTTP/1.1 200 "), data[:200]
            self.answered += 1
            if self.answered < requests:
                self.loop.call_soon(self.proto.data_received, request)
            else:
                self.done.set_result(None)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...

        def get_extra_info(self, name: str) -> Any:
            return ("127.0.0.1", 50000) if name == "peername" else ("127.0.0.1", 8080)

    class Discard:
        """The usage pipe's transport, minus the pipe: frames are built, then dropped."""

        def write(self, data: bytes) -> None: ...
        def close(self) -> None: ...

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return 0

    class Usage(UsageForwarder):
        async def open(self) -> None:  # no pipe, no reader thread, no 50 ms timer
            self._transport = Discard()  # type: ignore[assignment]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        counters = SharedCounters.create()
        usage = Usage(None, interval=3600.0)  # type: ignore[arg-type]
        gateway = Gateway(Settings(), counters=counters, usage=usage, migrate_schema=False)
        await gateway.start()
        # no timers while counting (under valgrind they would fire more often per request):
        # the configuration is loaded, so stop its poller, and the idle-connection sweeper
        await gateway.config.stop()
        if gateway.upstream._sweeper is not None:
            gateway.upstream._sweeper.cancel()
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)  # as a worker does (portico/gateway/serving.py)
        key_ = ("http", "127.0.0.1", backend_port)
        connection = getattr(upstream, "Connection", None) or upstream._Conn  # a baseline: _Conn
        conn = connection(key_)
        conn.transport = Backend(conn, loop)  # type: ignore[assignment]
        conn.idle_since = time.monotonic()
        gateway.upstream._idle[key_] = [conn]
        try:
            server = HttpServer(gateway, fast=getattr(gateway, "handle_nowait", None))
        except TypeError:  # a baseline from before the fast path
            server = HttpServer(gateway)
        proto = HttpProtocol(gateway, server, "http")
        done: asyncio.Future[None] = loop.create_future()
        proto.connection_made(Client(proto, loop, done))  # type: ignore[arg-type]
        counts: dict[tuple[str, str], int] = {}
        if opcodes:
            sys.settrace(_opcode_tracer(counts))
        proto.data_received(request)
        await done
        sys.settrace(None)
        await gateway.stop()
        counters.unlink()
        if opcodes:
            total = sum(counts.values())
            print(f"Python opcodes per request: {total / requests:,.0f}")
            for (file, fn), n in sorted(counts.items(), key=lambda kv: -kv[1])[:30]:
                print(f"{n / requests:8.1f}  {file}  {fn}")

    uvloop.run(main())


def _opcode_tracer(counts: dict[tuple[str, str], int]) -> Any:
    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            k = (frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_qualname)
            counts[k] = counts.get(k, 0) + 1
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return local

    return tracer


def callgrind(runs: list[tuple[Path, list[str]]], root: Path) -> list[int]:
    """Instructions of each run of this script's inner mode under callgrind (run side by side:
    counts do not depend on what else runs)."""
    procs = [
        subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={root / f'run{i}.out'}",
                sys.executable,
                __file__,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # the same dict layouts (so the same probes) every time; `code`: whose portico runs
            env={**os.environ, "PYTHONHASHSEED": "0", "PORTICO_CODE": str(code)},
        )
        for i, (code, args) in enumerate(runs)
    ]
    totals = []
    for p in procs:
        out, err = p.communicate()
        found = re.findall(r"Collected : (\d+)", err)
        if p.returncode != 0 or not found:
            raise SystemExit(f"valgrind run failed:\n{out[-2000:]}\n{err[-2000:]}")
        totals.append(int(found[-1]))
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000, help="requests counted (after 300 of warm-up)")
    ap.add_argument("--opcodes", action="store_true", help="Python opcodes per request, by function")
    ap.add_argument("--baseline", metavar="REV", help="also measure this git revision, side by side")
    ap.add_argument(
        "--inner", nargs=4, metavar=("DATA_DIR", "KEY", "BACKEND_PORT", "N"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.inner:
        data_dir, key, port, n = args.inner
        inner(data_dir, key, int(port), int(n), args.opcodes)
        return
    root = Path(tempfile.mkdtemp(prefix="portico-cpu-"))
    try:
        key, port = configure(root)
        data = str(root / "data")
        if args.opcodes:
            inner(data, key, port, args.requests, True)
            return
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is needed (Debian: apt-get install valgrind), or use --opcodes")
        trees: list[tuple[str, Path, str, int, str]] = [("this tree", REPO, key, port, data)]
        if args.baseline:
            checkout = root / "baseline"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(checkout), args.baseline],
                check=True,
                capture_output=True,
            )
            (root / "b").mkdir()
            bkey, bport = configure(root / "b", checkout)
            trees.append((f"baseline {args.baseline}", checkout, bkey, bport, str(root / "b" / "data")))
        try:
            runs = [
                (code, ["--inner", d, k, str(p), str(n)])
                for _label, code, k, p, d in trees
                for n in (WARM, WARM + args.requests)
            ]
            totals = callgrind(runs, root)
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(root / "baseline")],
                    check=False,
                    capture_output=True,
                )
        per = {}
        for i, (label, *_rest) in enumerate(trees):
            base, more = totals[2 * i], totals[2 * i + 1]
            per[label] = (more - base) / args.requests
            print(
                f"{label}: {per[label]:,.0f} instructions per request "
                f"(callgrind: {base:,} for {WARM} requests, {more:,} for {WARM + args.requests})"
            )
        if args.baseline:
            print(f"this tree / baseline: {per['this tree'] / per[f'baseline {args.baseline}']:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
