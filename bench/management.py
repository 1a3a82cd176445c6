"""Management API throughput: entity PUTs and GETs over HTTPS with concurrent keep-alive clients.

    .venv/bin/python bench/management.py [--db sqlite|postgres|both] [--seconds N] [--concurrency C]

Starts its own Portico server(s) (uvicorn defaults, one process; PostgreSQL in a throwaway cluster),
creates a resource group and a service, then for N seconds per phase runs C concurrent clients that
PUT named values (or users), then GET them back, each with the admin's bearer token. Prints writes/s
and reads/s with p50/p99 latencies per backend. The clients run on the same machine (and cores) as
the server, so the numbers are a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import create_database, postgres_cluster  # noqa: E402
from tests.support.server import PorticoServer, free_port  # noqa: E402

SUB = "00000000-0000-0000-0000-00000000beef"
API = "2024-05-01"
TARGET_WRITES, TARGET_READS = 500, 2000  # SQLite goals on the 2-core development machine


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0  # seconds of CPU the server process used during the phase

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / len(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000


def body_for(entity: str, key: str) -> dict[str, Any]:
    if entity == "users":
        return {
            "properties": {
                "email": f"{key}@bench.example",
                "firstName": "Bench",
                "lastName": key,
                "note": "x" * 64,
            }
        }
    return {"properties": {"displayName": key, "value": "v" * 64, "tags": ["bench"]}}


async def _worker_loop(
    client: httpx.AsyncClient,
    base: str,
    entity: str,
    phase: str,
    deadline: float,
    worker: int,
    keys: list[str],
    out: Phase,
) -> None:
    i = 0
    rnd = random.Random(worker)
    while time.perf_counter() < deadline:
        if phase == "write":
            key = f"w{worker}-{i}"
            t0 = time.perf_counter()
            r = await client.put(f"{base}/{entity}/{key}?api-version={API}", json=body_for(entity, key))
            ok = r.status_code in (200, 201)
        else:
            key = keys[rnd.randrange(len(keys))]
            t0 = time.perf_counter()
            r = await client.get(f"{base}/{entity}/{key}?api-version={API}")
            ok = r.status_code == 200
        dt = time.perf_counter() - t0
        if ok:
            out.latencies.append(dt)
        else:
            out.errors += 1
            if out.errors <= 3:
                print(f"  {phase} error {r.status_code}: {r.text[:200]}", file=sys.stderr)
        i += 1


async def _run_clients(
    url: str,
    ca: str,
    token: str,
    base: str,
    entity: str,
    phase: str,
    seconds: float,
    concurrency: int,
    keys: list[str],
    worker_offset: int,
    start_at: float,
) -> tuple[list[float], int, float]:
    ctx = ssl.create_default_context(cafile=ca)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, verify=ctx, limits=limits, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        # Open the connections (TLS handshakes) before the clock starts.
        await asyncio.gather(*(client.get(f"{base}?api-version={API}") for _ in range(concurrency)))
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        out = Phase(phase)
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(
            *(
                _worker_loop(client, base, entity, phase, deadline, worker_offset + w, keys, out)
                for w in range(concurrency)
            )
        )
        return out.latencies, out.errors, time.perf_counter() - t0


def _client_process(args: tuple[Any, ...]) -> tuple[list[float], int, float]:
    return asyncio.run(_run_clients(*args))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    server: PorticoServer,
    token: str,
    base: str,
    entity: str,
    phase: str,
    seconds: float,
    concurrency: int,
    procs: int,
    keys: list[str],
) -> Phase:
    """`procs` client processes share `concurrency` connections (one Python client process saturates
    a core before the server does)."""
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start_at = time.time() + 1.0 + 0.2 * procs
    jobs = [
        (server.url, server.ca, token, base, entity, phase, seconds, n, keys, sum(per[:i]) * 1000, start_at)
        for i, n in enumerate(per)
        if n
    ]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        pending = pool.map_async(_client_process, jobs)
        time.sleep(max(0.0, start_at - time.time()))
        assert server.proc is not None
        cpu0 = process_cpu(server.proc.pid)
        results = pending.get()
        cpu1 = process_cpu(server.proc.pid)
    out = Phase(phase, server_cpu=cpu1 - cpu0)
    for lat, errors, elapsed in results:
        out.latencies += lat
        out.errors += errors
        out.elapsed = max(out.elapsed, elapsed)
    return out


@contextlib.contextmanager
def start_server(db: str, root: Path) -> Iterator[PorticoServer]:
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {"PORTICO_LOG_LEVEL": "warning", "PORTICO_SUBSCRIPTIONS": SUB}
        if db == "postgres":
            pg = stack.enter_context(postgres_cluster())
            env["PORTICO_DATABASE_URL"] = create_database(pg, "portico_bench")
        server = PorticoServer(root / db, free_port(), env).start(timeout=60)
        try:
            yield server
        finally:
            server.stop()


def bench_backend(db: str, root: Path, args: argparse.Namespace) -> list[Phase]:
    with start_server(db, root) as server:
        token = server.token()
        headers = {"Authorization": f"Bearer {token}"}
        base = (
            f"/subscriptions/{SUB}/resourceGroups/bench/providers/Microsoft.ApiManagement/service/bench{db}"
        )
        with httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=server.ca),
            headers=headers,
            timeout=60,
        ) as c:
            c.put(
                f"/subscriptions/{SUB}/resourceGroups/bench?api-version=2022-09-01",
                json={"location": "westeurope"},
            ).raise_for_status()
            c.put(
                f"{base}?api-version={API}",
                json={
                    "location": "westeurope",
                    "sku": {"name": "Developer", "capacity": 1},
                    "properties": {"publisherEmail": "bench@contoso.example", "publisherName": "Bench"},
                },
            ).raise_for_status()
        write = run_phase(
            server, token, base, args.entity, "write", args.seconds, args.concurrency, args.client_procs, []
        )
        with httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=server.ca),
            headers=headers,
            timeout=60,
        ) as c:
            listing = c.get(f"{base}/{args.entity}?api-version={API}&$top=1000").json()
        keys = [v["name"] for v in listing["value"]] or ["missing"]
        read = run_phase(
            server, token, base, args.entity, "read", args.seconds, args.concurrency, args.client_procs, keys
        )
        return [write, read]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    ap.add_argument(
        "--concurrency", type=int, default=16, help="concurrent requests (keep-alive connections)"
    )
    ap.add_argument("--client-procs", type=int, default=2, help="client processes sharing the connections")
    ap.add_argument("--entity", choices=["namedValues", "users"], default="namedValues")
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"Portico management API: {args.entity} PUT then GET, {args.concurrency} connections over HTTPS "
        f"({args.client_procs} client processes), {args.seconds:g} s per phase, {os.cpu_count()} CPUs shared by server and clients"
    )
    rows: list[tuple[str, Phase]] = []
    with tempfile.TemporaryDirectory(prefix="portico-bench-") as tmp:
        for db in backends:
            for phase in bench_backend(db, Path(tmp), args):
                rows.append((db, phase))
    print()
    print(
        f"{'backend':<10}{'op':<7}{'requests':>10}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'server CPU ms/req':>19}"
    )
    for db, p in rows:
        print(
            f"{db:<10}{p.name:<7}{len(p.latencies):>10}{p.rate:>10.0f}{p.pct(50):>9.1f}{p.pct(99):>9.1f}{p.errors:>8}{p.cpu_ms:>19.2f}"
        )
    print(
        "(server CPU ms/req: CPU time of the server process per request; 1000 / it = requests/s one core could serve)"
    )
    for db, p in rows:
        if db == "sqlite":
            target = TARGET_WRITES if p.name == "write" else TARGET_READS
            verdict = "meets" if p.rate >= target else "BELOW"
            print(
                f"sqlite {p.name}s: {p.rate:.0f}/s {verdict} the target of {target}/s "
                f"(mean {statistics.fmean(p.latencies) * 1000 if p.latencies else float('nan'):.1f} ms)"
            )


if __name__ == "__main__":
    main()
