"""How fast a gateway node serves a restored large service.

    .venv/bin/python bench/gateway_reload.py [--scale 1.0] [--db sqlite|postgres] [--rounds 3]
                                             [--fill restore|instant] [--workers N] [--gc during|after]

Seeds the BRIEF's large service into a Portico node's database (bench/large_service.py, as
bench/backup_restore.py does), then measures in the same run:
(a) in-process: a fresh ConfigStore (the class the gateway uses) loading the whole service, with
    the garbage collector set as a gateway worker sets it (portico/gateway/serving.py) — total, and
    the breakdown the load records (DB read, JSON parse, compile, key/user indexes); beside it the
    floor: the same rows read straight through the driver, no Portico logic;
(b) end to end, against a node (`portico serve`: management API + gateway workers): a restore's
    staging store is created (portico/dr/operations.py `_create_staging`), filled with the rows a
    restore of a backup of the service would insert (`--fill restore`: committed batches of
    INSERT_BATCH rows in key order through the restore's own bulk insert; `--fill instant`: one
    transaction, so the node cannot read anything ahead), switched in by operations.py's own
    `_switch` right away, and the old store deleted in the background (`gc_store`), as a restore
    does. A client then asks the gateway every 5 ms (a new connection each time: the kernel
    spreads them over the workers) with a subscription key that exists only in the new store,
    until it answers with the new store's policy body (which includes the key owner's e-mail:
    users must be loaded too): "time to first correct answer" after the switch committed; the
    workers' log lines tell when the last one had loaded the new store. Round 1 replaces the
    service the node loaded at start-up (nearly empty: a cold load, like a first restore onto a
    fresh standby); later rounds replace the large service by a copy of itself (a repeated
    restore). Meanwhile another client sends a request every 10 ms: its slowest answer is how
    long requests stalled while the node read ahead and reloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import orjson  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench.backup_restore import _db_url, _store_id  # noqa: E402
from bench.large_service import scaled, seed  # noqa: E402
from portico.dr.operations import INSERT_BATCH, _create_staging, _switch, gc_store  # noqa: E402
from portico.gateway.config import KINDS, ConfigStore  # noqa: E402
from portico.gateway.jwks import JwksCache  # noqa: E402
from portico.gateway.policies.limits import Counters  # noqa: E402
from portico.jobs import store as J  # noqa: E402
from portico.store import services as S  # noqa: E402
from portico.store.db import Database  # noqa: E402
from portico.store.entities import bulk_insert, stream_tuples  # noqa: E402
from portico.store.schema import services  # noqa: E402
from tests.e2e.dr_support import Rest  # noqa: E402
from tests.support.postgres import create_database, postgres_cluster  # noqa: E402
from tests.support.server import PorticoServer, free_port  # noqa: E402

DOMAIN = "gw.bench"
SERVICE = "large"
NODE = "bench-gateway-reload"
# A new connection per request: the kernel spreads them over the node's gateway worker processes.
FRESH = httpx.Limits(max_keepalive_connections=0)
STEADY_KEY = "steady0000000000000000000000000"
PROBE_POLICY = (
    '<policies><inbound><base /><return-response><set-status code="200" reason="OK" />'
    '<set-body>@("{marker} " + context.User.Email)</set-body></return-response></inbound>'
    "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
)


def probe_key(generation: int) -> str:
    return f"probe{generation:04d}".ljust(32, "0")


def probe_rows(store: int, generation: int) -> list[dict[str, Any]]:
    """What tells one generation of the service from another: a `probe` API whose policy answers
    with the generation (and the subscription owner's e-mail, so users must be loaded too), and a
    subscription key that exists in this generation only."""

    def row(kind: str, parent: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "store_id": store,
            "kind": kind,
            "parent": parent,
            "name": name,
            "display_name": None,
            "etag": f"{generation:016x}",
            "data": orjson.dumps(data).decode(),
        }

    def sub(name: str, key: str) -> dict[str, Any]:
        return row(
            "subscription",
            "",
            name,
            {
                "scope": "/apis/probe",
                "displayName": name,
                "ownerId": "/users/user-000000",
                "state": "active",
                "primaryKey": key,
                "secondaryKey": key[::-1],
            },
        )

    return [
        row("api", "", "probe", {"path": "probe", "protocols": ["http", "https"], "displayName": "Probe"}),
        row("operation", "apis/probe", "get", {"method": "GET", "urlTemplate": "/*", "displayName": "get"}),
        row("policy", "apis/probe", "policy", {"value": PROBE_POLICY.format(marker=f"gen-{generation}")}),
        sub("probe-steady", STEADY_KEY),
        sub(f"probe-{generation}", probe_key(generation)),
    ]


def expected_body(generation: int) -> str:
    return f"gen-{generation} user-000000@example.com"


# --- (a) in-process load ------------------------------------------------------------------------
async def inprocess_loads(url: str, rounds: int) -> list[dict[str, Any]]:
    # As a gateway worker runs (portico/gateway/serving.py `run_servers`).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    db = Database(url)
    out = []
    try:
        for _ in range(rounds):
            store = ConfigStore(db, DOMAIN, 0.25, Counters(), JwksCache())
            t = time.perf_counter()
            await store.poll()
            total = time.perf_counter() - t
            svc = next(s for s in store.services.values() if s.name == SERVICE)
            out.append({"total_s": total, **getattr(svc, "stats", {})})
            del store, svc
    finally:
        await db.close()
    return out


def floor_read(url: str, store: int) -> float:
    """The rows the gateway needs (its entity kinds; key, data), read by the driver alone."""
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    sql = f"SELECT kind, parent, name, data FROM entities WHERE store_id = {store} AND kind IN ({kinds})"
    t = time.perf_counter()
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.split(":///", 1)[1])
        con.execute(sql).fetchall()
        con.close()
    else:
        import asyncpg

        async def fetch() -> None:
            con = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await con.fetch(sql)
            finally:
                await con.close()

        asyncio.run(fetch())
    return time.perf_counter() - t


# --- (b) switch a restored store in, wait for the gateway's first correct answer ---------------
class Prober(threading.Thread):
    """Sends one request every 10 ms and records (sent at, latency)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Host": f"{SERVICE}.{DOMAIN}", "Ocp-Apim-Subscription-Key": STEADY_KEY}
        with httpx.Client(timeout=30, limits=FRESH) as http:
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    http.get(self.base + "/probe/steady", headers=headers)
                except httpx.HTTPError:
                    pass
                self.samples.append((t, time.perf_counter() - t))
                time.sleep(0.01)

    def worst(self, start: float, end: float) -> float:
        return max(
            (lat for t, lat in self.samples if start <= t <= end or t <= start <= t + lat), default=0.0
        )


async def begin_restore(db: Database, service_id: int) -> tuple[str, int]:
    """What a restore does before loading: mark the service busy with an operation record of this
    node (so that `_switch` accepts it) and create the staging store (`_create_staging`)."""
    rt: Any = SimpleNamespace(db=db, jobs=SimpleNamespace(node_id=NODE))
    op_id = J.new_id()
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, service_id)
        assert svc is not None
        assert await S.set_busy(conn, service_id, f"restore:{op_id}"), "service busy"
        await J.create(
            conn,
            op_id=op_id,
            kind="restore",
            service_id=service_id,
            service_path=svc.arm_id,
            params={},
            owner=NODE,
            lease=600,
        )
    return op_id, await _create_staging(rt, op_id, service_id)


async def restored_rows(
    db: Database, service_id: int, staging: int, generation: int
) -> list[tuple[Any, ...]]:
    """The rows a restore of a backup of the active store would insert (same keys, etags, JSON),
    with this generation's probe rows instead of the previous one's, in the backup's key order."""
    async with db.read() as conn:
        svc = await S.get_service_by_id(conn, service_id)
        assert svc is not None
        out: list[tuple[Any, ...]] = []
        async for batch in stream_tuples(conn, svc.active_store_id):
            for kind, parent, name, display, etag, data in batch:
                if (kind, parent, name) == ("api", "", "probe") or parent == "apis/probe":
                    continue
                if kind == "subscription" and name.startswith("probe-"):
                    continue
                out.append((staging, kind, parent, name, display, etag, bytes(data).decode()))
    for r in probe_rows(staging, generation):
        out.append(
            tuple(r[c] for c in ("store_id", "kind", "parent", "name", "display_name", "etag", "data"))
        )
    out.sort(key=lambda r: (r[1], r[2], r[3]))
    return out


async def fill(db: Database, rows: list[tuple[Any, ...]], how: str) -> float:
    """`restore`: committed batches of INSERT_BATCH rows in key order, through the restore's own
    bulk insert, one after the other (a real restore also downloads and decodes meanwhile, so
    it is slower: the gateway has more time to read ahead); `instant`: one transaction."""
    t = time.perf_counter()
    if how == "instant":
        await bulk_insert(db, rows)
    else:
        for i in range(0, len(rows), INSERT_BATCH):
            await bulk_insert(db, rows[i : i + INSERT_BATCH])
    return time.perf_counter() - t


async def switch(db: Database, service_id: int, op_id: str, staging: int) -> int:
    rt: Any = SimpleNamespace(db=db, jobs=SimpleNamespace(node_id=NODE))
    async with db.read() as conn:
        svc = await S.get_service_by_id(conn, service_id)
    assert svc is not None
    return await _switch(rt, op_id, service_id, staging, {"properties": dict(svc.properties)})


async def finish(db: Database, service_id: int, op_id: str, old_store: int) -> None:
    async with db.write() as conn:
        await J.finish(conn, op_id, NODE, "Succeeded")
        await S.set_busy(conn, service_id, None, expect=f"restore:{op_id}")
    rt: Any = SimpleNamespace(db=db, jobs=SimpleNamespace(node_id=NODE))
    await gc_store(rt, old_store)


def first_correct_answer(base: str, generation: int, timeout: float = 30) -> tuple[float, int]:
    """Seconds until the gateway answers with `generation`'s body (asking every 5 ms), requests sent."""
    headers = {"Host": f"{SERVICE}.{DOMAIN}", "Ocp-Apim-Subscription-Key": probe_key(generation)}
    want = expected_body(generation)
    t0 = time.perf_counter()
    n = 0
    with httpx.Client(timeout=30, limits=FRESH) as http:
        while time.perf_counter() - t0 < timeout:
            n += 1
            r = http.get(base + "/probe/x", headers=headers)
            if r.status_code == 200 and r.text == want:
                return time.perf_counter() - t0, n
            time.sleep(0.005)
    raise AssertionError(
        f"generation {generation} not served after {timeout}s: {r.status_code} {r.text[:200]}"
    )


def server_loads(node: PorticoServer, store: int) -> list[tuple[float, str]]:
    """The node's log lines for loading `store` (one per gateway worker): (epoch time, text)."""
    out = []
    for line in node.log_path.read_text(errors="replace").splitlines():
        if "loaded service" in line and f"(store {store}," in line:
            when = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((when, line.split("loaded service", 1)[1].strip()))
    return out


def rss_mb(pid: int) -> list[float]:
    """VmRSS of the node's gateway worker processes (its children), or of the node itself."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    out = []
    for p in children or [pid]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return out


async def _service_id(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            return int(
                (await conn.execute(select(services.c.id).where(services.c.name_key == SERVICE))).scalar_one()
            )
    finally:
        await db.close()


def switch_rounds(
    node: PorticoServer, url: str, rounds: int, gc_during: bool, how: str
) -> list[dict[str, Any]]:
    base = f"http://127.0.0.1:{node.env['PORTICO_GATEWAY_PORT']}"
    service_id = asyncio.run(_service_id(url))
    prober = Prober(base)
    prober.start()
    out = []
    try:
        for generation in range(1, rounds + 1):

            async def one(generation: int = generation) -> dict[str, Any]:
                db = Database(url)
                try:
                    op_id, staging = await begin_restore(db, service_id)
                    rows = await restored_rows(db, service_id, staging, generation)
                    fill_start = time.perf_counter()
                    fill_s = await fill(db, rows, how)
                    del rows
                    t_switch = time.perf_counter()  # right after the load, as a restore does
                    old = await switch(db, service_id, op_id, staging)
                    switched, switched_epoch = time.perf_counter(), time.time()
                    # As a restore does: the old store is deleted in the background right away.
                    done = finish(db, service_id, op_id, old)
                    cleanup = asyncio.get_running_loop().create_task(done) if gc_during else None
                    elapsed, asked = await asyncio.to_thread(first_correct_answer, base, generation)
                    answered = time.perf_counter()
                    await (cleanup if cleanup is not None else done)
                    return {
                        "generation": generation,
                        "store": staging,
                        "fill_s": fill_s,
                        "switch_tx_s": switched - t_switch,
                        "first_correct_s": elapsed,
                        "requests": asked,
                        "worst_stall_s": prober.worst(switched, answered + 0.2),
                        "worst_stall_fill_s": prober.worst(fill_start, t_switch),
                        "switched_epoch": switched_epoch,
                    }
                finally:
                    await db.close()

            r = asyncio.run(one())
            time.sleep(0.3)
            assert node.proc is not None
            r["node_rss_mb"] = rss_mb(node.proc.pid)
            loads = server_loads(node, r["store"])
            r["node_log"] = [text for _t, text in loads]
            r["all_workers_s"] = max((t for t, _text in loads), default=float("nan")) - r.pop(
                "switched_epoch"
            )
            out.append(r)
            print(
                f"  round {generation}: first correct answer {r['first_correct_s'] * 1000:.0f} ms after the switch"
                f" ({r['requests']} requests); worst stall of other requests {r['worst_stall_s'] * 1000:.0f} ms"
                f" (while the store filled in {r['fill_s']:.1f}s: {r['worst_stall_fill_s'] * 1000:.0f} ms);"
                f" all workers loaded {r['all_workers_s'] * 1000:.0f} ms after it; gateway RSS {'+'.join(f'{m:.0f}' for m in r['node_rss_mb'])} MB",
                flush=True,
            )
            for line in r["node_log"]:
                print(f"    node: loaded {line}", flush=True)
    finally:
        prober.stop.set()
        prober.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the large service (1.0 = BRIEF's)")
    ap.add_argument("--rounds", type=int, default=3, help="in-process loads, and store switches")
    ap.add_argument(
        "--workers",
        type=int,
        default=-1,
        help="gateway worker processes of the node (-1: one per CPU, the default)",
    )
    ap.add_argument(
        "--gc",
        choices=["during", "after"],
        default="during",
        help="delete the old store while the gateway reloads (as a restore does), or after it answered",
    )
    ap.add_argument(
        "--fill",
        choices=["restore", "instant"],
        default="restore",
        help="fill the staging store as a restore does (batches in key order), or in one transaction"
        " just before the switch (nothing to read ahead: the gateway's full load)",
    )
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="portico-bench-") as d:
        pg_ctx = postgres_cluster() if args.db == "postgres" else None
        pg = pg_ctx.__enter__() if pg_ctx else None
        env = {
            "PORTICO_GATEWAY_PORT": str(free_port()),
            "PORTICO_GATEWAY_HTTPS_PORT": "0",
            "PORTICO_GATEWAY_DOMAIN": DOMAIN,
            "PORTICO_GATEWAY_ANALYTICS": "false",
            "PORTICO_LOG_LEVEL": "info",
            "PORTICO_GATEWAY_WORKERS": str(args.workers),
        }
        if pg:
            env["PORTICO_DATABASE_URL"] = create_database(pg, f"bench_reload_{time.time_ns() % 10**6}")
        node = PorticoServer(Path(d) / "node", free_port(), env).start()
        try:
            Rest(node).service("rg", SERVICE)
            url = _db_url(node)
            t = time.perf_counter()
            count = asyncio.run(seed(url, SERVICE, scaled(args.scale)))
            print(f"seeded {count:,} entities in {time.perf_counter() - t:.1f}s ({args.db})", flush=True)
            store = _store_id(node, SERVICE)
            floor = [floor_read(url, store) for _ in range(args.rounds)]
            print(f"floor (driver read of the gateway's rows): {min(floor):.2f}s", flush=True)
            loads = asyncio.run(inprocess_loads(url, args.rounds))
            for i, r in enumerate(loads, 1):
                parts = ", ".join(
                    f"{k} {v * 1000:.0f} ms" for k, v in r.items() if k.endswith("_s") and k != "total_s"
                )
                print(f"  in-process load {i}: {r['total_s']:.2f}s ({parts})", flush=True)
            rounds = switch_rounds(node, url, args.rounds, args.gc == "during", args.fill)
        finally:
            node.stop()
            if pg_ctx:
                pg_ctx.__exit__(None, None, None)
    best = min(loads, key=lambda r: r["total_s"])
    print()
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores; database {args.db}"
    )
    print(f"service: {count:,} entities (scale {args.scale})")
    print(
        f"(a) full load, in-process: best {best['total_s']:.2f}s, median {statistics.median(r['total_s'] for r in loads):.2f}s;"
        f" floor (driver read only) {min(floor):.2f}s"
    )
    for k, v in best.items():
        if k.endswith("_s") and k != "total_s":
            print(f"      {k[:-2]:>12}: {v * 1000:6.0f} ms")
    print("(b) time to first correct answer after the store switch (poll interval 0.25 s included):")
    for r in rounds:
        kind = "cold (replaces a near-empty service)" if r["generation"] == 1 else "warm (same content)"
        print(
            f"      round {r['generation']} {kind}: {r['first_correct_s']:.2f}s; other requests stalled up to"
            f" {r['worst_stall_s'] * 1000:.0f} ms; gateway RSS {'+'.join(f'{m:.0f}' for m in r['node_rss_mb'])} MB"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "db": args.db,
                    "scale": args.scale,
                    "entities": count,
                    "floor_s": floor,
                    "loads": loads,
                    "rounds": rounds,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
